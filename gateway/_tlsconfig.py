"""The termination TLS context, built from PEM bytes without writing the key to disk.

`ssl.SSLContext.load_cert_chain` only reads files. The wildcard key must never be written
unsealed (design §8), so the chain and key go into anonymous memory files (`memfd_create`) that
OpenSSL reads through `/proc/self/fd/N` and that vanish when closed. The pair is checked with
`cryptography` first, so a bad input gets a clear message and no context is built.
"""

from __future__ import annotations

import datetime
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attest import load_pem_pair


def _check_pair(chain_pem: bytes, key_pem: bytes) -> dict[str, str]:
    """What the log may say about the certificate; `ValueError` if the pair is unusable."""
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise ValueError(f"the certificate chain is not PEM certificates: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        # No detail: the message must not echo anything derived from the key bytes.
        raise ValueError("the private key is not an unencrypted PEM private key") from None
    leaf = chain[0]
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*raw) != key.public_key().public_bytes(*raw):
        subject = leaf.subject.rfc4514_string()
        raise ValueError(f"the private key does not belong to the first certificate ({subject})")
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        raise ValueError(f"the certificate expired at {leaf.not_valid_after_utc.isoformat()}")
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = ",".join(names.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ""
    return {
        "subject": leaf.subject.rfc4514_string(),
        "dns_names": dns,
        "not_after": leaf.not_valid_after_utc.isoformat(),
        "chain_length": str(len(chain)),
    }


def server_context(chain_pem: bytes, key_pem: bytes) -> tuple[ssl.SSLContext, dict[str, str]]:
    """A TLS 1.2+ server context for the chain and key, and a loggable summary of the chain."""
    summary = _check_pair(chain_pem, key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A client's FIN without close_notify ends its direction as a clean EOF would: the backend
    # gets EOF either way, and the gateway can still send the backend's reply.
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_IGNORE_UNEXPECTED_EOF
    try:
        load_pem_pair(context, chain_pem, key_pem)
    except ssl.SSLError as exc:
        raise ValueError(f"OpenSSL refused the certificate and key: {exc.reason}") from None
    return context, summary
