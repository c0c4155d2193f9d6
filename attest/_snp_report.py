"""AMD SEV-SNP attestation reports: strict parsing of the 1184-byte ATTESTATION_REPORT.

Layout from AMD's SEV-SNP Firmware ABI specification (publication 56860, Table "ATTESTATION_REPORT
Structure"), report versions 2 to 5. All integers are little-endian. Offsets::

    0x000 VERSION u32        0x004 GUEST_SVN u32      0x008 POLICY u64
    0x010 FAMILY_ID 16       0x020 IMAGE_ID 16        0x030 VMPL u32
    0x034 SIGNATURE_ALGO u32 0x038 CURRENT_TCB 8      0x040 PLATFORM_INFO u64
    0x048 KEY_INFO u32       0x050 REPORT_DATA 64     0x090 MEASUREMENT 48
    0x0C0 HOST_DATA 32       0x0E0 ID_KEY_DIGEST 48   0x110 AUTHOR_KEY_DIGEST 48
    0x140 REPORT_ID 32       0x160 REPORT_ID_MA 32    0x180 REPORTED_TCB 8
    0x188 CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (v3+; reserved in v2)
    0x1A0 CHIP_ID 64         0x1E0 COMMITTED_TCB 8    0x1E8 CURRENT build/minor/major
    0x1EC COMMITTED build/minor/major                 0x1F0 LAUNCH_TCB 8
    0x1F8 LAUNCH_MIT_VECTOR u64, 0x200 CURRENT_MIT_VECTOR u64 (v5)
    0x2A0 SIGNATURE: R (72 bytes), S (72 bytes), both little-endian, then 368 reserved bytes

The signature (ECDSA P-384 with SHA-384, SIGNATURE_ALGO 1) covers bytes 0x000-0x29F. Nothing
signs the signature block itself, so the parser requires what P-384 leaves unused there to be
zero (the top 24 bytes of R and S, the reserved tail): then every bit of a report is either
signed or checked, and no two accepted byte strings mean the same report.

A TCB_VERSION is 8 bytes whose layout depends on the processor: Milan and Genoa put the boot
loader, TEE, SNP and microcode SPLs at bytes 0, 1, 6, 7; Turin has FMC, boot loader, TEE, SNP at
bytes 0-3 and microcode at byte 7. The product comes from CPUID (v3+) or, for v2 reports that
lack it, from the certificate chain (`attest._snp_certs`).

These are *unverified* values: only `verify_snp_report` (attest/_snp_verify.py) vouches for one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from attest.errors import QuoteParseError, UnsupportedQuoteError

__all__ = [
    "SNP_REPORT_SIZE",
    "SNP_SIGNED_SIZE",
    "SnpProduct",
    "SnpReport",
    "SnpReportError",
    "SnpTcb",
    "parse_snp_report",
    "product_from_cpuid",
]

SNP_REPORT_SIZE = 0x4A0  # 1184
SNP_SIGNED_SIZE = 0x2A0
SIG_ALGO_ECDSA_P384_SHA384 = 1
_SUPPORTED_VERSIONS = (2, 3, 4, 5)
_SCALAR = 72  # R and S fields; P-384 scalars use the low 48 bytes

# GUEST POLICY bits (ABI spec, "GUEST_POLICY Structure")
POLICY_SMT_ALLOWED = 1 << 16
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_RAPL_DIS = 1 << 23
POLICY_CIPHERTEXT_HIDING = 1 << 24
# PLATFORM_INFO bits
PLATFORM_SMT_ENABLED = 1 << 0
PLATFORM_RAPL_DISABLED = 1 << 3
PLATFORM_CIPHERTEXT_HIDING = 1 << 4
# KEY_INFO
KEY_INFO_MASK_CHIP_KEY = 1 << 1
SIGNING_KEY_VCEK = 0
SIGNING_KEY_VLEK = 1


class SnpReportError(QuoteParseError):
    """The bytes are not a well-formed SEV-SNP report; `offset` and `field` say where."""

    def diagnostics(self) -> str:
        return (
            f"malformed SEV-SNP report: {self} (field {self.field!r}, byte offset "
            f"0x{self.offset:x}); a report is exactly {SNP_REPORT_SIZE} bytes"
        )


class SnpProduct(enum.Enum):
    """AMD EPYC generations with their own key hierarchy (ARK/ASK) at AMD's KDS."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"


def product_from_cpuid(family: int, model: int) -> SnpProduct:
    """The product of a v3+ report's CPUID_FAM_ID / CPUID_MOD_ID (Bergamo/Siena are Genoa)."""
    if family == 0x19 and model <= 0x0F:
        return SnpProduct.MILAN
    if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return SnpProduct.GENOA
    if family == 0x1A and model <= 0x11:
        return SnpProduct.TURIN
    raise UnsupportedQuoteError(
        f"CPUID family 0x{family:02x} model 0x{model:02x} is not an SEV-SNP product tkms knows "
        "(Milan, Genoa, Turin)",
        offset=0x188,
        field="cpuid",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpTcb:
    """One TCB_VERSION, decoded for a product (fmc is None before Turin)."""

    raw: bytes
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw: bytes, product: SnpProduct) -> SnpTcb:
        if product is SnpProduct.TURIN:
            return cls(
                raw=raw, fmc=raw[0], bootloader=raw[1], tee=raw[2], snp=raw[3], microcode=raw[7]
            )
        return cls(raw=raw, bootloader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7])

    def spls(self) -> dict[str, int]:
        """The security patch levels by AMD's VCEK extension names."""
        out = {"blSPL": self.bootloader, "teeSPL": self.tee, "snpSPL": self.snp}
        out["ucodeSPL"] = self.microcode
        if self.fmc is not None:
            out["fmcSPL"] = self.fmc
        return out

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.spls().items())


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpReport:
    """A parsed (unverified) SEV-SNP attestation report. TCBs are raw 8-byte fields."""

    raw: bytes
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: bytes
    platform_info: int
    key_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: bytes
    cpuid: tuple[int, int, int] | None  # (family, model, stepping), v3+
    chip_id: bytes
    committed_tcb: bytes
    launch_tcb: bytes
    signature_r: int
    signature_s: int

    @property
    def signed_region(self) -> bytes:
        """Bytes 0x000-0x29F, what the VCEK signs."""
        return self.raw[:SNP_SIGNED_SIZE]

    @property
    def signing_key(self) -> int:
        """KEY_INFO.SIGNING_KEY: 0 = VCEK, 1 = VLEK, 7 = none."""
        return (self.key_info >> 2) & 0x7

    @property
    def debug_allowed(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)

    @property
    def product(self) -> SnpProduct | None:
        """The product CPUID names (v3+), or None for a v2 report."""
        if self.cpuid is None:
            return None
        return product_from_cpuid(self.cpuid[0], self.cpuid[1])


def _u32(raw: bytes, offset: int) -> int:
    return int.from_bytes(raw[offset : offset + 4], "little")


def _u64(raw: bytes, offset: int) -> int:
    return int.from_bytes(raw[offset : offset + 8], "little")


def _scalar(raw: bytes, offset: int, name: str) -> int:
    field = raw[offset : offset + _SCALAR]
    if any(field[48:]):
        raise SnpReportError(
            f"signature {name} has non-zero bytes above the 48 a P-384 scalar uses",
            offset=offset + 48,
            field=f"signature.{name}",
        )
    return int.from_bytes(field, "little")


def parse_snp_report(raw: bytes) -> SnpReport:
    """Parse exactly one report; `SnpReportError` names the field and offset of any problem."""
    raw = bytes(raw)
    if len(raw) != SNP_REPORT_SIZE:
        raise SnpReportError(
            f"an SEV-SNP report is {SNP_REPORT_SIZE} bytes, got {len(raw)}",
            offset=min(len(raw), SNP_REPORT_SIZE),
            field="report",
        )
    version = _u32(raw, 0)
    if version not in _SUPPORTED_VERSIONS:
        raise UnsupportedQuoteError(
            f"SEV-SNP report version {version} is not supported (2 to 5 are)",
            offset=0,
            field="version",
        )
    algo = _u32(raw, 0x34)
    if algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise UnsupportedQuoteError(
            f"SEV-SNP signature algorithm {algo} is not ECDSA P-384 with SHA-384 (1)",
            offset=0x34,
            field="signature_algo",
        )
    r = _scalar(raw, 0x2A0, "r")
    s = _scalar(raw, 0x2A0 + _SCALAR, "s")
    tail = 0x2A0 + 2 * _SCALAR
    if any(raw[tail:]):
        first = next(i for i in range(tail, SNP_REPORT_SIZE) if raw[i])
        raise SnpReportError(
            "the reserved bytes after the signature must be zero", offset=first, field="signature"
        )
    cpuid = (raw[0x188], raw[0x189], raw[0x18A]) if version >= 3 else None
    report = SnpReport(
        raw=raw,
        version=version,
        guest_svn=_u32(raw, 0x04),
        policy=_u64(raw, 0x08),
        family_id=raw[0x10:0x20],
        image_id=raw[0x20:0x30],
        vmpl=_u32(raw, 0x30),
        signature_algo=algo,
        current_tcb=raw[0x38:0x40],
        platform_info=_u64(raw, 0x40),
        key_info=_u32(raw, 0x48),
        report_data=raw[0x50:0x90],
        measurement=raw[0x90:0xC0],
        host_data=raw[0xC0:0xE0],
        id_key_digest=raw[0xE0:0x110],
        author_key_digest=raw[0x110:0x140],
        report_id=raw[0x140:0x160],
        report_id_ma=raw[0x160:0x180],
        reported_tcb=raw[0x180:0x188],
        cpuid=cpuid,
        chip_id=raw[0x1A0:0x1E0],
        committed_tcb=raw[0x1E0:0x1E8],
        launch_tcb=raw[0x1F0:0x1F8],
        signature_r=r,
        signature_s=s,
    )
    if cpuid is not None:
        product_from_cpuid(cpuid[0], cpuid[1])  # a v3 report must name a known product
    return report
