"""Parsed TDX quote structures: frozen dataclasses holding the raw field bytes.

These types hold *unverified* data: a `Quote` says what the bytes claim, nothing more.
Only `verify_quote` (attest/_dcap.py) turns one into a `VerifiedQuote`.
Layouts follow Intel's "TDX DCAP Quote Generation Library and Quote Verification Library"
(quote format v4/v5) and the TDX module ABI for TDREPORT/TDATTRIBUTES.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from attest.errors import QuoteParseError

TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
ATT_KEY_TYPE_ECDSA_P256 = 2
CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6
BODY_TYPE_TD10 = 2
BODY_TYPE_TD15 = 3

# TDATTRIBUTES bits (TDX module ABI, little-endian 64-bit field)
TD_ATTR_DEBUG = 1 << 0
TD_ATTR_SEPT_VE_DISABLE = 1 << 28


@dataclass(frozen=True, slots=True, kw_only=True)
class QuoteHeader:
    """The 48-byte quote header."""

    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TdReport:
    """The TD report body (TD 1.0; TD 1.5 adds `tee_tcb_svn2` and `mr_service_td`)."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_service_td: bytes | None = None

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        """RTMR0..RTMR3 in index order."""
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)

    @property
    def td_attributes_int(self) -> int:
        """TDATTRIBUTES as the 64-bit little-endian integer the TDX ABI defines."""
        return int.from_bytes(self.td_attributes, "little")


@dataclass(frozen=True, slots=True, kw_only=True)
class QeReport:
    """The Quoting Enclave's SGX report (384 bytes), signed by the PCK key."""

    raw: bytes
    cpu_svn: bytes
    misc_select: int
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    report_data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class QuoteSignature:
    """Signature data: attestation-key signature plus the QE certification data (type 6)."""

    ecdsa_signature: bytes
    attestation_key: bytes
    qe_report: QeReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """A structurally valid TDX quote (v4 or v5). Nothing in it has been verified yet.

    `raw` is the quote up to the end of its signature data (trailing bytes dropped);
    `signed_length` is the length of the region the attestation key signs (header + body).
    """

    raw: bytes
    header: QuoteHeader
    body_type: int
    td_report: TdReport
    signed_length: int
    signature: QuoteSignature

    @property
    def version(self) -> int:
        """Quote format version (4 or 5)."""
        return self.header.version

    @property
    def signed_region(self) -> bytes:
        """The bytes the attestation key signs: header and body (v5: with type and size)."""
        return self.raw[: self.signed_length]

    @property
    def is_debug(self) -> bool:
        """TDATTRIBUTES bit 0: the TD runs in debug mode (its memory is readable by the host)."""
        return bool(self.td_report.td_attributes_int & TD_ATTR_DEBUG)

    @property
    def sept_ve_disabled(self) -> bool:
        """TDATTRIBUTES bit 28: EPT violations are not turned into #VE inside the TD."""
        return bool(self.td_report.td_attributes_int & TD_ATTR_SEPT_VE_DISABLE)

    @property
    def has_service_td(self) -> bool:
        """True when a TD 1.5 body binds a service TD (MR_SERVICETD is not all zero)."""
        mr = self.td_report.mr_service_td
        return mr is not None and any(mr)

    @property
    def pck_chain_pem(self) -> bytes:
        """The PEM PCK certificate chain from the certification data (leaf first)."""
        return self.signature.pck_chain_pem

    def pck_certificates(self) -> list[x509.Certificate]:
        """The PCK chain parsed with `cryptography` (leaf, intermediate, root). Unverified."""
        try:
            certs = x509.load_pem_x509_certificates(self.pck_chain_pem.rstrip(b"\0"))
        except (ValueError, x509.InvalidVersion) as exc:
            raise QuoteParseError(
                f"PCK certificate chain cannot be parsed as PEM X.509 certificates: {exc}",
                offset=self.signed_length,
                field="pck_cert_chain",
            ) from exc
        return certs

    def pck_leaf_certificate(self) -> x509.Certificate:
        """The PCK leaf certificate (the platform's key that signed the QE report). Unverified."""
        return self.pck_certificates()[0]
