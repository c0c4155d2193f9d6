"""Reading the certificate a TLS endpoint serves, to check it and then pin it (design §6.4).

grpcio has no custom certificate verifier. A client that must talk to one particular key (a
node's registered TLS key) therefore first reads the certificate the endpoint serves over a
throw-away TLS 1.3 connection (`fetch_certificate`), checks it (a node: the whole RA-TLS
check of `node.ratls`; a guest: `check_key_pin` against the key hash the node registered on
chain), and then opens its gRPC channel with that certificate as the only trust root and the
target name overridden to `NODE_TLS_NAME`, the fixed DNS name in every node certificate
(endpoints are IP addresses or arbitrary names; the name proves nothing, the pin does). A
server that does not hold the pinned key cannot complete that channel's handshake.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attest.errors import AttestError

__all__ = [
    "NODE_TLS_NAME",
    "CertificateFetchError",
    "KeyPinError",
    "check_key_pin",
    "fetch_certificate",
    "fetch_context",
    "load_pem_pair",
    "spki_hash",
]

#: The DNS name in every node certificate; clients override the target name to it.
NODE_TLS_NAME: Final = "tkms-node"


class CertificateFetchError(ConnectionError):
    """The endpoint could not be reached, or presented no certificate (names the endpoint)."""


class KeyPinError(AttestError):
    """The certificate is not for the pinned key (or is not a certificate at all)."""

    def diagnostics(self) -> str:
        return f"TLS key pin failed: {self}"


def spki_hash(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's SubjectPublicKeyInfo DER (the on-chain TLS key hash)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def check_key_pin(cert_pem: bytes, key_hash: bytes) -> x509.Certificate:
    """The certificate, if SHA-256 of its SubjectPublicKeyInfo is `key_hash`; else KeyPinError.

    Only the key is pinned, not the certificate: a node makes a new certificate for its
    sealed TLS key at every start.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        found = spki_hash(cert)
    except Exception as exc:  # whatever the parser trips on, it is not the pinned key
        raise KeyPinError(f"not a usable X.509 certificate ({type(exc).__name__}: {exc})") from None
    if found != key_hash:
        raise KeyPinError(
            f"the certificate is for TLS key {found.hex()}, not the registered {key_hash.hex()}"
        )
    return cert


def load_pem_pair(context: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """`context.load_cert_chain` from PEM bytes: Python's ssl reads keys only from files, so
    the chain and key go through an anonymous memfd (never a file system), closed at once.
    Raises OSError where there is no memfd (not Linux) and ssl.SSLError for a bad pair."""
    fd = os.memfd_create("tkms-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, chain_pem + b"\n" + key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def fetch_context(cert_pem: bytes | None = None, key_pem: bytes | None = None) -> ssl.SSLContext:
    """The TLS 1.3 client context `fetch_certificate` uses, presenting our certificate if given.

    Python's ssl loads keys only from files; the key goes through an anonymous memfd (never a
    file system) and the descriptor is closed at once. Presenting a certificate keeps servers
    that trust it from logging a failed handshake at every fetch. Without memfd (not Linux),
    or without a certificate, the context presents none: TLS 1.3 still delivers the server's
    certificate before the server looks at ours.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we only read the certificate; the pin verifies
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols(["h2"])
    if cert_pem is not None and key_pem is not None and hasattr(os, "memfd_create"):
        load_pem_pair(context, cert_pem, key_pem)
    return context


async def fetch_certificate(
    endpoint: str, *, timeout: float, context: ssl.SSLContext | None = None
) -> bytes:
    """The certificate (PEM) served at `endpoint` (host:port), NOT verified: check, then pin it.

    `context` comes from `fetch_context` (default: one that presents no certificate).
    """
    host, _, port = endpoint.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:port
    context = context or fetch_context()
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), ssl=context, server_hostname=NODE_TLS_NAME),
            timeout,
        )
    except (OSError, TimeoutError, ValueError) as exc:
        why = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)
        raise CertificateFetchError(f"cannot fetch the certificate of {endpoint}: {why}") from None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        # No TLS close_notify exchange: the peer may be slow to answer one, and we are done.
        writer.transport.abort()
    if not der:
        raise CertificateFetchError(f"{endpoint} presented no TLS certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode()
