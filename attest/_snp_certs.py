"""AMD's key hierarchy for SEV-SNP: pinned ARK roots, the ARK -> ASK -> VCEK chain, VCEK claims.

AMD runs one hierarchy per product (Milan, Genoa, Turin; AMD's "Versioned Chip Endorsement Key
(VCEK) Certificate and KDS Interface Specification", publication 57230):

* ARK, the AMD Root Key: self-signed, RSA-4096, RSASSA-PSS with SHA-384, MGF1-SHA-384 and a
  48-byte salt. The three ARKs ship with tkms (``attest/roots/amd-ark-*.pem``, as published at
  ``https://kdsintf.amd.com/vcek/v1/<product>/cert_chain``) and are pinned by the SHA-256 of
  their DER here; a chain is only ever anchored in them, never in a root the evidence brings.
* ASK, the AMD SEV Key: RSA-4096, signed by the ARK with the same PSS parameters.
* VCEK: ECDSA P-384, signed by the ASK (same PSS parameters), one per chip and TCB. Its AMD
  extensions (OID arc 1.3.6.1.4.1.3704.1) name the product, the chip (``hwID``) and the TCB
  security patch levels (``blSPL``, ``teeSPL``, ``snpSPL``, ``ucodeSPL``, Turin: ``fmcSPL``)
  it was derived for; `read_vcek_claims` reads them so the report can be checked against them.

VCEKs from AMD's KDS carry serial number 0, which RFC 5280 forbids and `cryptography` warns
about; `load_certificate` accepts it (AMD's certificates are what they are) and nothing else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from dataclasses import dataclass
from functools import cache
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from attest._snp_report import SnpProduct
from attest.errors import VerificationError

__all__ = [
    "AMD_ARK_SHA256",
    "VcekClaims",
    "amd_ark",
    "load_certificate",
    "product_of_ask",
    "read_vcek_claims",
    "verify_amd_chain",
]

#: SHA-256 of each ARK's DER, the trust anchors of real SEV-SNP evidence.
AMD_ARK_SHA256 = {
    SnpProduct.MILAN: bytes.fromhex(
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"
    ),
    SnpProduct.GENOA: bytes.fromhex(
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"
    ),
    SnpProduct.TURIN: bytes.fromhex(
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"
    ),
}
_AMD_ARC = "1.3.6.1.4.1.3704.1"
_PRODUCT_NAME = f"{_AMD_ARC}.2"
_HW_ID = f"{_AMD_ARC}.4"
_SPL_OIDS = {
    f"{_AMD_ARC}.3.1": "blSPL",
    f"{_AMD_ARC}.3.2": "teeSPL",
    f"{_AMD_ARC}.3.3": "snpSPL",
    f"{_AMD_ARC}.3.8": "ucodeSPL",
    f"{_AMD_ARC}.3.9": "fmcSPL",
}


def _fail(message: str, reason: str) -> VerificationError:
    return VerificationError(message, reason=reason)


def load_certificate(blob: bytes, what: str) -> x509.Certificate:
    """A certificate from PEM or DER bytes; `VerificationError` names `what` when it is neither."""
    with warnings.catch_warnings():
        # AMD's VCEKs have serial number 0 (see the module docstring).
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            if blob.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificate(blob)
            return x509.load_der_x509_certificate(blob)
        except ValueError as exc:
            raise _fail(f"{what} is not an X.509 certificate: {exc}", "certificate parse") from None


@cache
def amd_ark(product: SnpProduct) -> x509.Certificate:
    """The pinned ARK of `product` (package data checked against `AMD_ARK_SHA256`)."""
    name = f"amd-ark-{product.value.lower()}.pem"
    pem = resources.files("attest").joinpath("roots", name).read_bytes()
    cert = load_certificate(pem, f"ARK-{product.value}")
    der = cert.public_bytes(serialization.Encoding.DER)
    if hashlib.sha256(der).digest() != AMD_ARK_SHA256[product]:
        raise RuntimeError(f"attest/roots/{name} is not the pinned ARK-{product.value}")
    return cert


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _check_pss(cert: x509.Certificate, what: str) -> None:
    """AMD signs every certificate with RSASSA-PSS, SHA-384, MGF1-SHA-384, 48-byte salt."""
    params = cert.signature_algorithm_parameters
    ok = (
        isinstance(params, padding.PSS)
        and isinstance(cert.signature_hash_algorithm, hashes.SHA384)
        and isinstance(params.mgf, padding.MGF1)
        and isinstance(getattr(params.mgf, "_algorithm", None), hashes.SHA384)
        and getattr(params, "_salt_length", None) == 48
    )
    if not ok:
        raise _fail(
            f"{what} is not signed with RSASSA-PSS/SHA-384/MGF1-SHA-384/salt 48 as AMD signs "
            f"(found {cert.signature_algorithm_oid.dotted_string})",
            "certificate signature algorithm",
        )


def _check_time(cert: x509.Certificate, what: str, now: int) -> None:
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise _fail(
            f"{what} is not valid at {at:%Y-%m-%dT%H:%M:%SZ} (valid "
            f"{cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to "
            f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})",
            "certificate expired",
        )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate, what: str, by: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        detail = str(exc) or type(exc).__name__
        raise _fail(f"{what} is not signed by {by}: {detail}", "certificate chain") from None


def product_of_ask(ask: x509.Certificate) -> SnpProduct:
    """The product whose ARK names itself as the ASK's issuer (``CN=ARK-Milan`` ...)."""
    issuer = _common_name(ask.issuer)
    for product in SnpProduct:
        if issuer == f"ARK-{product.value}":
            return product
    raise _fail(
        f"the ASK's issuer {issuer!r} is no AMD root (ARK-Milan, ARK-Genoa, ARK-Turin)",
        "certificate chain",
    )


def verify_amd_chain(
    ask: x509.Certificate,
    vcek: x509.Certificate,
    *,
    product: SnpProduct | None,
    now: int,
) -> SnpProduct:
    """Check ARK -> ASK -> VCEK for `product` (None: the one the ASK names) and return it.

    Every signature, the PSS parameters, the pinned ARK, validity at `now` and the VCEK's key
    (P-384) are checked; a failure is a `VerificationError` naming the certificate.
    """
    named = product_of_ask(ask)
    if product is not None and named is not product:
        raise _fail(
            f"the report is from a {product.value} processor but its ASK is ARK-{named.value}'s",
            "certificate chain",
        )
    ark = amd_ark(named)
    for cert, what in ((ark, f"ARK-{named.value}"), (ask, "the ASK"), (vcek, "the VCEK")):
        _check_pss(cert, what)
        _check_time(cert, what, now)
    _issued_by(ask, ark, "the ASK", f"ARK-{named.value}")
    _issued_by(vcek, ask, "the VCEK", "the ASK")
    key = vcek.public_key()
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)):
        raise _fail("the VCEK's key is not ECDSA P-384", "certificate key")
    ask_key = ask.public_key()
    if not isinstance(ask_key, rsa.RSAPublicKey):
        raise _fail("the ASK's key is not RSA", "certificate key")
    return named


@dataclass(frozen=True, slots=True, kw_only=True)
class VcekClaims:
    """What a VCEK says it was derived for."""

    product_name: str
    hw_id: bytes
    spls: dict[str, int]


def _der_integer(value: bytes, name: str) -> int:
    # DER INTEGER: 0x02, a short length, big-endian two's complement (AMD's are non-negative)
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2 or value[2] & 0x80:
        raise _fail(f"VCEK extension {name} is not a non-negative DER INTEGER", "vcek extension")
    return int.from_bytes(value[2:], "big")


def read_vcek_claims(vcek: x509.Certificate) -> VcekClaims:
    """The product name, hwID and SPLs of a VCEK's AMD extensions."""
    found: dict[str, bytes] = {}
    for ext in vcek.extensions:
        if isinstance(ext.value, x509.UnrecognizedExtension):
            found[ext.oid.dotted_string] = ext.value.value
    if _HW_ID not in found:
        raise _fail("the VCEK has no hwID extension (1.3.6.1.4.1.3704.1.4)", "vcek extension")
    product = found.get(_PRODUCT_NAME, b"")
    # productName is an IA5String (tag 0x16), e.g. "Milan-B0"
    name = product[2:].decode("ascii", "replace") if product[:1] == b"\x16" else ""
    spls = {
        label: _der_integer(found[oid], label) for oid, label in _SPL_OIDS.items() if oid in found
    }
    return VcekClaims(product_name=name, hw_id=found[_HW_ID], spls=spls)
