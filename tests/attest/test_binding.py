"""report_data binding (design §4.4): labels, framing, and rejection of other keys."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest._binding import (
    BindingError,
    BindingLabel,
    compute_report_data,
    node_binding_content,
    verify_report_data,
)


def _spki() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_dstack_vector() -> None:
    # dstack-attest's unit test: QuoteContentType::AppData over b"test content".
    assert compute_report_data(BindingLabel.DSTACK_APP_DATA, b"test content").hex() == (
        "7ea0b744ed5e9c0c83ff9f575668e1697652cd349f2027cdf26f918d4c53e8cd"
        "50b5ea9b449b4c3d50e20ae00ec29688d5a214e8daff8a10041f5d624dae8a01"
    )


def test_ratls_binding_accepts_own_key_and_rejects_another() -> None:
    spki = _spki()
    rd = compute_report_data(BindingLabel.RATLS_CERT, spki)
    assert rd == hashlib.sha512(b"ratls-cert:" + spki).digest()
    verify_report_data(rd, BindingLabel.RATLS_CERT, spki)
    with pytest.raises(BindingError, match="does not bind this key under 'ratls-cert:'"):
        verify_report_data(rd, BindingLabel.RATLS_CERT, _spki())


def test_label_separates_uses() -> None:
    point = bytes([0xA0]) + bytes(47)
    rd = compute_report_data(BindingLabel.KDF_V1, point)
    with pytest.raises(BindingError, match="under 'tkms-node:v1:'"):
        verify_report_data(rd, BindingLabel.NODE_V1, point)


def test_kdf_binding_requires_a_g1_point() -> None:
    with pytest.raises(BindingError, match="48-byte compressed G1 point, got 47 bytes"):
        compute_report_data(BindingLabel.KDF_V1, bytes(47))


def test_short_report_data_is_rejected() -> None:
    with pytest.raises(BindingError, match="does not bind"):
        verify_report_data(b"\x00" * 32, BindingLabel.RATLS_CERT, _spki())


def test_node_framing_is_unambiguous() -> None:
    addr = bytes(range(20))
    a = node_binding_content(b"\x01\x02", b"\x03", addr)
    b = node_binding_content(b"\x01", b"\x02\x03", addr)
    assert a != b  # a naive concatenation would make these equal
    assert a == b"\x00\x00\x00\x02\x01\x02\x00\x00\x00\x01\x03" + addr
    with pytest.raises(BindingError, match="Ethereum address must be 20 bytes, got 19"):
        node_binding_content(b"\x01", b"\x02", addr[:19])
    with pytest.raises(BindingError, match="needs a TLS key and a deal key"):
        node_binding_content(b"", b"\x02", addr)
