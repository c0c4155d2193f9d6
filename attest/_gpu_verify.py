"""Verification of an NVIDIA Hopper (H100) attestation report with its device certificate chain.

`verify_gpu_report(report, cert_chain_pem, nonce=…, now=…)` checks, in order:

1. strict parse (`attest._gpu_report`);
2. the device certificate chain, leaf first: GSP FMC alias key ← GSP BROM (the chip's device
   identity) ← NVIDIA GH100 provisioner CA ← NVIDIA GH100 Identity ← "NVIDIA Device Identity
   CA". That root ships with tkms (``attest/roots/nvidia-device-identity-ca.pem``, as in
   NVIDIA's nvtrust verifier) and is pinned by its SHA-256 here: the chain must end in it (it
   is appended when the evidence leaves it out) and is five certificates long, as NVIDIA's
   verifier requires for Hopper. Every certificate is checked at `now` and signed by the next;
   the leaf's key is ECDSA P-384;
3. the FWID: the firmware id the leaf certificate was issued for (the SHA-384 FWID in its
   TCG DICE extension 2.23.133.5.4.1) equals the report's OpaqueData FWID, so the signing key
   belongs to the firmware the report describes (nvtrust's "cert-chain-fwid-match");
4. the signature: ECDSA P-384/SHA-384 by the leaf key over request ‖ response (without the
   96-byte signature, r ‖ s big-endian);
5. the nonce binding: the request nonce the GPU signed equals the caller's `nonce`, compared
   in constant time. Whoever chose the nonce knows the report is fresh.

Not checked here: the measurements against NVIDIA's reference values (RIMs), and certificate
revocation (NVIDIA's OCSP service); both need NVIDIA's online services (docs/attest-gpu.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from functools import cache
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attest._gpu_report import GpuEvidenceError, GpuReport, parse_gpu_report

__all__ = [
    "NVIDIA_DEVICE_ROOT_SHA256",
    "VerifiedGpuReport",
    "certificate_fwid",
    "nvidia_device_root",
    "verify_gpu_report",
]

NVIDIA_DEVICE_ROOT_SHA256 = bytes.fromhex(
    "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
)
HOPPER_CHAIN_LENGTH = 5
_DICE_TCB_INFO = {"2.23.133.5.4.1", "2.23.133.5.4.1.1"}
_SHA384_OID_DER = bytes.fromhex("0609608648016503040202")


@cache
def nvidia_device_root() -> x509.Certificate:
    """The pinned "NVIDIA Device Identity CA" (package data checked against its SHA-256)."""
    pem = resources.files("attest").joinpath("roots", "nvidia-device-identity-ca.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    if cert.fingerprint(hashes.SHA256()) != NVIDIA_DEVICE_ROOT_SHA256:
        raise RuntimeError("attest/roots/nvidia-device-identity-ca.pem is not the pinned root")
    return cert


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at `at`."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length, start = data[at], data[at + 1], at + 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 3 or start + n > len(data):
            raise ValueError("bad DER length")
        length, start = int.from_bytes(data[start : start + n], "big"), start + n
    if start + length > len(data):
        raise ValueError("DER element runs past its container")
    return tag, start, start + length


def _sha384_fwids(data: bytes) -> list[bytes]:
    """Every FWID ``SEQUENCE { OID sha384, OCTET STRING (48) }`` nested anywhere in `data`."""
    found: list[bytes] = []
    at = 0
    while at < len(data):
        tag, start, end = _tlv(data, at)
        value = data[start:end]
        if tag == 0x30 and value.startswith(_SHA384_OID_DER):
            inner_tag, s, e = _tlv(value, len(_SHA384_OID_DER))
            if inner_tag == 0x04 and e - s == 48 and e == len(value):
                found.append(value[s:e])
        elif tag & 0x20:  # constructed: look inside
            found += _sha384_fwids(value)
        at = end
    return found


def certificate_fwid(cert: x509.Certificate) -> bytes | None:
    """The SHA-384 FWID of a certificate's TCG DICE extension, or None without one."""
    for ext in cert.extensions:
        if ext.oid.dotted_string in _DICE_TCB_INFO and isinstance(
            ext.value, x509.UnrecognizedExtension
        ):
            try:
                fwids = _sha384_fwids(ext.value.value)
            except ValueError as exc:
                raise GpuEvidenceError(
                    f"the DICE extension is not DER: {exc}", field="cert_chain[0]"
                ) from None
            if len(fwids) == 1:
                return fwids[0]
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedGpuReport:
    """A report whose chain, FWID, signature and nonce verified."""

    report: GpuReport
    device: str  # the leaf's issuer: the GPU's device identity (GSP BROM), with its serial
    driver_version: str
    vbios_version: str


def _load_chain(chain_pem: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise GpuEvidenceError(f"not a PEM certificate chain: {exc}", field="cert_chain") from None
    der = serialization.Encoding.DER
    if hashlib.sha256(certs[-1].public_bytes(der)).digest() != NVIDIA_DEVICE_ROOT_SHA256:
        certs.append(nvidia_device_root())
    if len(certs) != HOPPER_CHAIN_LENGTH:
        raise GpuEvidenceError(
            f"a Hopper device chain is {HOPPER_CHAIN_LENGTH} certificates up to NVIDIA's root, "
            f"got {len(certs)}",
            field="cert_chain",
        )
    return certs


def _check_chain(certs: list[x509.Certificate], now: int) -> None:
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    for i, cert in enumerate(certs):
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise GpuEvidenceError(
                f"certificate {cert.subject.rfc4514_string()} is not valid at "
                f"{at:%Y-%m-%dT%H:%M:%SZ}",
                field=f"cert_chain[{i}]",
            )
        issuer = certs[min(i + 1, len(certs) - 1)]
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
            detail = str(exc) or type(exc).__name__
            raise GpuEvidenceError(
                f"certificate {cert.subject.rfc4514_string()} is not signed by "
                f"{issuer.subject.rfc4514_string()}: {detail}",
                field=f"cert_chain[{i}]",
            ) from None
        if i > 0:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            if not constraints.ca:
                raise GpuEvidenceError(
                    f"certificate {cert.subject.rfc4514_string()} signs others but is no CA",
                    field=f"cert_chain[{i}]",
                )


def verify_gpu_report(
    raw: bytes, cert_chain_pem: bytes, *, nonce: bytes, now: int
) -> VerifiedGpuReport:
    """Steps 1-5 of the module docstring; `GpuEvidenceError` names what failed."""
    report = parse_gpu_report(raw)
    certs = _load_chain(cert_chain_pem)
    try:
        _check_chain(certs, now)
    except x509.ExtensionNotFound:
        raise GpuEvidenceError(
            "a CA certificate has no basic constraints", field="cert_chain"
        ) from None
    leaf = certs[0]
    key = leaf.public_key()
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)):
        raise GpuEvidenceError("the attestation key is not ECDSA P-384", field="cert_chain[0]")
    fwid, cert_fwid = report.fwid, certificate_fwid(leaf)
    if fwid is None or cert_fwid is None or not hmac.compare_digest(fwid, cert_fwid):
        raise GpuEvidenceError(
            f"the report's FWID {fwid.hex() if fwid else 'none'} is not the attestation "
            f"certificate's {cert_fwid.hex() if cert_fwid else 'none'}",
            field="response.opaque_data.fwid",
        )
    r = int.from_bytes(report.signature[:48], "big")
    s = int.from_bytes(report.signature[48:], "big")
    try:
        key.verify(encode_dss_signature(r, s), report.signed_region, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise GpuEvidenceError(
            "the report's signature does not verify with the attestation key over request and "
            "response: the report was modified or comes from another GPU",
            field="response.signature",
            offset=len(raw) - 96,
        ) from None
    if len(nonce) != 32 or not hmac.compare_digest(report.nonce, nonce):
        raise GpuEvidenceError(
            f"the report answers nonce {report.nonce.hex()}, not {nonce.hex()}",
            field="request.nonce",
            offset=4,
        )
    return VerifiedGpuReport(
        report=report,
        device=leaf.issuer.rfc4514_string(),
        driver_version=report.driver_version,
        vbios_version=report.vbios_version,
    )
