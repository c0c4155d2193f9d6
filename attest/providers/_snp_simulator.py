"""An INSECURE SEV-SNP simulator: real-format reports under a public key, for dev chains only.

.. warning::
   The simulator's "ASK" key is derived from a public seed
   (``SHA-384("tkms SEV-SNP simulator ASK v1 -- INSECURE, PUBLIC SEED")`` reduced to a P-384
   scalar), exactly like the TDX simulator's root CA: anyone can mint simulator reports for any
   measurement. They are accepted only by a policy with ``allow_simulator`` (`SnpPolicy`), which
   tkms nodes set only where simulators are allowed at all (a development chain whose
   governance says ``simulatorAllowed``; `node.tee.simulator_refusal`).

What is simulated is only the signer. The reports are byte-for-byte AMD's v3 layout (Milan
CPUID), the VCEK carries AMD's extensions (hwID, SPLs), and `verify_simulator_snp_report` runs
the very checks real reports get (`attest._snp_verify.check_snp_report`: VCEK claims,
signature, invariants, debug, TCB status) after checking the chain ends in the simulator ASK.
A real chain never verifies here, and a simulator chain never verifies against AMD's ARKs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attest._snp_certs import load_certificate
from attest._snp_identity import snp_host_data
from attest._snp_report import SNP_REPORT_SIZE, SNP_SIGNED_SIZE, SnpProduct, parse_snp_report
from attest._snp_verify import SnpPolicy, VerifiedSnpReport, check_snp_report, split_cert_chain
from attest._versioned_snp import SnpAttestation, encode_snp_attestation
from attest.errors import PolicyError, VerificationError
from attest.providers._simulator_ca import der_integer, insecure_ca_certificate, simulator_name

__all__ = [
    "SIMULATED_SNP_MEASUREMENT",
    "SIMULATED_SNP_POLICY",
    "SNP_SIMULATOR_SEED",
    "SnpSimulator",
    "is_simulator_snp_chain",
    "simulator_ask",
    "verify_simulator_snp_report",
]

SNP_SIMULATOR_SEED = b"tkms SEV-SNP simulator ASK v1 -- INSECURE, PUBLIC SEED"
#: The launch MEASUREMENT simulated guests report unless told otherwise.
SIMULATED_SNP_MEASUREMENT = hashlib.sha384(b"tkms simulated SEV-SNP guest image v1").digest()
_P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
    "581a0db248b0a77aecec196accc52973",
    16,
)
_NOT_BEFORE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_NOT_AFTER = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
_AMD_ARC = "1.3.6.1.4.1.3704.1"
_MILAN_CPUID = bytes([0x19, 0x01, 0x01])  # family 19h, model 01h: Milan
#: The guest POLICY simulated guests launch with: SMT allowed, reserved bit 17 (QEMU's default).
SIMULATED_SNP_POLICY = 0x30000


@cache
def _ask_key() -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(hashlib.sha384(SNP_SIMULATOR_SEED).digest(), "big")
    return ec.derive_private_key(scalar % (_P384_ORDER - 1) + 1, ec.SECP384R1())


@cache
def simulator_ask() -> x509.Certificate:
    """The deterministic, self-signed simulator ASK (its key is public, see the warning)."""
    return insecure_ca_certificate(
        _ask_key(), "tkms SEV-SNP simulator ASK (INSECURE)", hashes.SHA384()
    )


def _spki(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def is_simulator_snp_chain(cert_chain: Sequence[bytes]) -> bool:
    """True when cert_chain[0] carries the simulator ASK's key (unverified: it only routes)."""
    if len(cert_chain) != 2:
        return False
    try:
        key = load_certificate(cert_chain[0], "ASK").public_key()
    except VerificationError:
        return False
    return isinstance(key, ec.EllipticCurvePublicKey) and _spki(key) == _spki(
        _ask_key().public_key()
    )


def _vcek(key: ec.EllipticCurvePublicKey, chip_id: bytes, tcb: bytes) -> x509.Certificate:
    spls = {"1": tcb[0], "2": tcb[1], "3": tcb[6], "8": tcb[7]}
    builder = (
        x509.CertificateBuilder()
        .subject_name(simulator_name("tkms SEV-SNP simulator VCEK"))
        .issuer_name(simulator_ask().subject)
        .public_key(key)
        .serial_number(int.from_bytes(hashlib.sha256(chip_id).digest()[:16], "big") >> 1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(f"{_AMD_ARC}.2"), b"\x16\x08Milan-B0"),
            critical=False,
        )
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(f"{_AMD_ARC}.4"), chip_id),
            critical=False,
        )
    )
    for arc, value in spls.items():
        builder = builder.add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(f"{_AMD_ARC}.3.{arc}"), der_integer(value)
            ),
            critical=False,
        )
    return builder.sign(_ask_key(), hashes.SHA384(), ecdsa_deterministic=True)


@dataclass
class SnpSimulator:
    """Makes SEV-SNP reports as a guest with this launch state would get them (INSECURE)."""

    measurement: bytes = SIMULATED_SNP_MEASUREMENT
    policy: int = SIMULATED_SNP_POLICY
    chip_id: bytes = field(default_factory=lambda: os.urandom(64))
    #: Milan TCB_VERSION bytes: boot loader, TEE, 4 reserved, SNP, microcode.
    tcb: bytes = bytes([4, 0, 0, 0, 0, 0, 24, 213])
    _key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1()), repr=False
    )

    def __post_init__(self) -> None:
        if len(self.measurement) != 48 or len(self.chip_id) != 64 or len(self.tcb) != 8:
            raise ValueError("measurement, chip_id and tcb must be 48, 64 and 8 bytes")
        self.vcek = _vcek(self._key.public_key(), self.chip_id, self.tcb)

    @property
    def cert_chain(self) -> tuple[bytes, bytes]:
        """[ASK, VCEK] in DER, what an extended report carries."""
        der = serialization.Encoding.DER
        return simulator_ask().public_bytes(der), self.vcek.public_bytes(der)

    def report(self, report_data: bytes, host_data: bytes) -> bytes:
        """A signed v3 report binding `report_data` (64 bytes) and `host_data` (32 bytes)."""
        if len(report_data) != 64 or len(host_data) != 32:
            raise ValueError("report_data and host_data must be 64 and 32 bytes")
        raw = bytearray(SNP_REPORT_SIZE)
        raw[0:4] = (3).to_bytes(4, "little")
        raw[0x08:0x10] = self.policy.to_bytes(8, "little")
        raw[0x34:0x38] = (1).to_bytes(4, "little")  # ECDSA P-384 with SHA-384
        raw[0x40:0x48] = (1).to_bytes(8, "little")  # PLATFORM_INFO: SMT enabled
        raw[0x50:0x90] = report_data
        raw[0x90:0xC0] = self.measurement
        raw[0xC0:0xE0] = host_data
        for offset in (0x38, 0x180, 0x1E0, 0x1F0):  # current, reported, committed, launch
            raw[offset : offset + 8] = self.tcb
        raw[0x188:0x18B] = _MILAN_CPUID
        raw[0x1A0:0x1E0] = self.chip_id
        return self.sign(bytes(raw))

    def sign(self, report: bytes) -> bytes:
        """`report` with its signature block replaced by this VCEK's signature of 0x000-0x29F
        (for reports with fields a guest cannot choose: VMPL, policy, TCB, ...)."""
        if len(report) != SNP_REPORT_SIZE:
            raise ValueError(f"a report is {SNP_REPORT_SIZE} bytes, got {len(report)}")
        signature = self._key.sign(report[:SNP_SIGNED_SIZE], ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(signature)
        block = r.to_bytes(72, "little") + s.to_bytes(72, "little")
        return report[:SNP_SIGNED_SIZE] + block + bytes(SNP_REPORT_SIZE - SNP_SIGNED_SIZE - 144)

    def attest(self, report_data: bytes, mr_config: str, config: str = "") -> bytes:
        """dstack's VersionedAttestation (V0, SEV-SNP) for a guest launched with `mr_config`."""
        return encode_snp_attestation(
            SnpAttestation(
                report=self.report(report_data, snp_host_data(mr_config)),
                cert_chain=self.cert_chain,
                mr_config=mr_config,
                runtime_events=(),
                report_data=report_data,
                config=config,
            )
        )


def verify_simulator_snp_report(
    raw: bytes, cert_chain: Sequence[bytes], *, now: int, policy: SnpPolicy
) -> VerifiedSnpReport:
    """Verify a simulator report: refused unless `policy.allow_simulator` (module docstring)."""
    if not policy.allow_simulator:
        raise PolicyError(
            "simulator SEV-SNP report refused: its chain ends in the public simulator ASK and "
            "the policy does not allow simulators",
            check="snp-simulator",
            found="simulator",
            expected="AMD ARK",
        )
    report = parse_snp_report(raw)
    ask, vcek = split_cert_chain(cert_chain)
    if ask != simulator_ask():
        raise VerificationError(
            "cert_chain[0] is not the simulator ASK", reason="certificate chain"
        )
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    try:
        vcek.verify_directly_issued_by(ask)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise VerificationError(
            f"the VCEK is not signed by the simulator ASK: {exc}", reason="certificate chain"
        ) from None
    if not vcek.not_valid_before_utc <= at <= vcek.not_valid_after_utc:
        raise VerificationError("the simulator VCEK is not valid at `now`", reason="expired")
    return check_snp_report(report, vcek, SnpProduct.MILAN, policy=policy, source="simulator")
