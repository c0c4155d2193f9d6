"""report_data binding: tie a quote to a public key (design §4.4).

``report_data = SHA-512(label || content)`` (64 bytes), the form dstack uses
(`dstack-attest`, `QuoteContentType::to_report_data`: ``sha512(tag || ":" || content)``).
Labels:

=================  ==============================================================
``ratls-cert:``     DER SubjectPublicKeyInfo of an RA-TLS certificate's key (dstack)
``tkms-kdf:v1:``    the 48-byte compressed G1 point E of a key-derivation request
``tkms-node:v1:``   a node's registration keys, framed as below
``tkms-sign:v1:``   an app public key to be certified by a threshold signature
``acme-account:``   a gateway's ACME account URI (dstack's `/.dstack/acme-info` account quote)
``zt-cert:``        DER SubjectPublicKeyInfo of a gateway certificate key (dstack's per-cert quote)
``tkms-zt-challenge:v1:``  a verifier's nonce, the live certificate's SPKI and the ACME account
                    URI, framed as below (the gateway's fresh challenge quote)
``app-data:``       dstack's app-defined data (read-only compatibility)
``kms-root-ca:``    dstack's KMS root CA key (read-only compatibility)
=================  ==============================================================

Node registration content (`node_binding_content`), every field length-prefixed so no two
different key sets can produce the same bytes::

    u32be(len(tls_spki_der)) || tls_spki_der
    u32be(len(deal_public_key)) || deal_public_key
    eth_address (exactly 20 bytes)

Challenge content (`zt_challenge_content`), each part length-prefixed the same way::

    u32be(len(nonce)) || nonce || u32be(len(spki_der)) || spki_der
    u32be(len(account_uri)) || account_uri (UTF-8)

The comparison of an expected and a quoted report_data is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

from attest.errors import AttestError

__all__ = [
    "BindingError",
    "BindingLabel",
    "compute_report_data",
    "node_binding_content",
    "verify_report_data",
    "zt_challenge_content",
]

G1_COMPRESSED_LEN = 48
ETH_ADDRESS_LEN = 20
#: A challenge nonce's bounds: enough to be unguessable, small enough to quote in a URL.
MIN_NONCE_LEN = 16
MAX_NONCE_LEN = 64


class BindingError(AttestError):
    """report_data does not bind the expected key, or the key material is malformed."""

    def diagnostics(self) -> str:
        return f"report_data binding failed: {self}; the evidence was made for another key"


class BindingLabel(Enum):
    """What a report_data binds; the value is the exact label prefix hashed."""

    RATLS_CERT = b"ratls-cert:"
    KDF_V1 = b"tkms-kdf:v1:"
    NODE_V1 = b"tkms-node:v1:"
    #: an app public key the network is asked to certify (threshold signature, design §3.5)
    SIGN_V1 = b"tkms-sign:v1:"
    #: a CVM's registration with a gateway (the registration payload's digest)
    GATEWAY_V1 = b"tkms-gateway:v1:"
    #: a gateway's ACME account URI (dstack `QuoteContentType::Custom("acme-account")`)
    ACME_ACCOUNT = b"acme-account:"
    #: a gateway certificate key's SPKI (dstack `QuoteContentType::Custom("zt-cert")`)
    ZT_CERT = b"zt-cert:"
    #: a verifier's challenge to a gateway: nonce, live certificate SPKI, account URI
    ZT_CHALLENGE_V1 = b"tkms-zt-challenge:v1:"
    #: dstack's other content types, for reading dstack evidence.
    DSTACK_APP_DATA = b"app-data:"
    DSTACK_KMS_ROOT_CA = b"kms-root-ca:"


def _check_content(label: BindingLabel, content: bytes) -> None:
    if label is BindingLabel.KDF_V1 and len(content) != G1_COMPRESSED_LEN:
        raise BindingError(
            f"tkms-kdf:v1 binds a 48-byte compressed G1 point, got {len(content)} bytes"
        )
    if not content:
        raise BindingError(f"{label.value.decode()} binding of empty key material")


def compute_report_data(label: BindingLabel, content: bytes) -> bytes:
    """``SHA-512(label || content)``: the 64-byte report_data for `content` under `label`."""
    _check_content(label, content)
    return hashlib.sha512(label.value + content).digest()


def node_binding_content(tls_spki_der: bytes, deal_public_key: bytes, eth_address: bytes) -> bytes:
    """The framed key set a node binds under ``tkms-node:v1:`` (see the module docstring)."""
    if len(eth_address) != ETH_ADDRESS_LEN:
        raise BindingError(f"Ethereum address must be 20 bytes, got {len(eth_address)}")
    if not tls_spki_der or not deal_public_key:
        raise BindingError("node binding needs a TLS key and a deal key")
    return (
        len(tls_spki_der).to_bytes(4, "big")
        + tls_spki_der
        + len(deal_public_key).to_bytes(4, "big")
        + deal_public_key
        + eth_address
    )


def zt_challenge_content(nonce: bytes, spki_der: bytes, account_uri: str) -> bytes:
    """The framed (nonce, certificate key, ACME account) a gateway binds under
    ``tkms-zt-challenge:v1:`` (see the module docstring)."""
    if not MIN_NONCE_LEN <= len(nonce) <= MAX_NONCE_LEN:
        raise BindingError(
            f"a challenge nonce has {MIN_NONCE_LEN}..{MAX_NONCE_LEN} bytes, got {len(nonce)}"
        )
    if not spki_der or not account_uri:
        raise BindingError("a challenge binds a certificate key and an ACME account URI")
    uri = account_uri.encode()
    return b"".join(len(part).to_bytes(4, "big") + part for part in (nonce, spki_der, uri))


def verify_report_data(report_data: bytes, label: BindingLabel, content: bytes) -> None:
    """Raise `BindingError` unless `report_data` == SHA-512(label || content).

    The message gives the label and the expected value but not a diff (constant-time compare).
    """
    expected = compute_report_data(label, content)
    if len(report_data) != len(expected) or not hmac.compare_digest(report_data, expected):
        raise BindingError(
            f"report_data {bytes(report_data).hex()} does not bind this key under "
            f"{label.value.decode()!r} (expected {expected.hex()})"
        )
