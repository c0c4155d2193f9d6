"""The gateway-to-CVM hop of terminated connections: TLS, accepted only with the registered key.

Termination ends the client's TLS in the gateway's TEE; what the gateway then sends towards the
CVM crosses networks nobody trusts (the CVM's own host forwards its ports). So the gateway
speaks TLS to the backend too, and accepts exactly one key there: the one the CVM named in its
registration (`Registration.tls_key_sha256`, SHA-256 of the key's DER SubjectPublicKeyInfo).
The registration bytes are covered by the CVM's quote, so the key comes from inside the
attested, approved CVM; nobody else can present it.

Rules:
* The certificate chain, its names and dates are not checked (`CERT_NONE`): the pin replaces
  them. The TLS handshake itself proves the backend holds the key's private half (TLS 1.3
  CertificateVerify, TLS 1.2 ECDHE signatures), whatever the verify mode.
* The pin is compared (constant time) after the handshake and before any byte of the client's
  plaintext is written; a backend with another key, or one that does not speak TLS, gets none.
* TLS 1.2 or later, no renegotiation. A backend's TCP FIN without close_notify is its EOF, as
  for clients (`OP_IGNORE_UNEXPECTED_EOF`).
"""

from __future__ import annotations

import hashlib
import hmac
import ssl

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_HASH_BYTES = 32


class BackendKeyMismatch(Exception):
    """The backend's TLS key is not the one its registration named; the message says both."""


def spki_sha256(certificate: bytes | x509.Certificate) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo of a certificate (DER, PEM or parsed; for PEM,
    the first certificate: the leaf of a chain). `ValueError` if it is not a certificate."""
    if isinstance(certificate, bytes):
        try:
            if certificate.lstrip().startswith(b"-----BEGIN"):
                certificate = x509.load_pem_x509_certificates(certificate)[0]
            else:
                certificate = x509.load_der_x509_certificate(certificate)
        except ValueError as exc:
            raise ValueError(f"not an X.509 certificate: {exc}") from None
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def backend_context() -> ssl.SSLContext:
    """The client context for backends: TLS 1.2+, no chain or name check (the key is pinned)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_IGNORE_UNEXPECTED_EOF
    return context


def check_pinned_key(certificate: bytes | None, expected: bytes) -> None:
    """Return if `certificate` (DER, from the handshake) has the key `expected` names, else
    `BackendKeyMismatch`."""
    if certificate is None:
        raise BackendKeyMismatch("the backend presented no certificate")
    try:
        presented = spki_sha256(certificate)
    except ValueError as exc:
        raise BackendKeyMismatch(f"the backend's certificate does not parse: {exc}") from None
    if not hmac.compare_digest(presented, expected):
        raise BackendKeyMismatch(
            f"the backend's TLS key has SHA-256 {presented.hex()[:16]}..., its registration "
            f"names {expected.hex()[:16]}..."
        )
