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
    zt_challenge_content,
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


def test_gateway_labels_are_dstacks_acme_formulas() -> None:
    # dstack gateway (distributed_certbot.rs): sha512("acme-account:" || uri), and
    # ct_monitor's compute_expected_report_data: sha512("zt-cert:" || SPKI DER).
    uri = "https://acme.example/acme/acct/42"
    spki = _spki()
    assert (
        compute_report_data(BindingLabel.ACME_ACCOUNT, uri.encode())
        == hashlib.sha512(b"acme-account:" + uri.encode()).digest()
    )
    assert (
        compute_report_data(BindingLabel.ZT_CERT, spki)
        == hashlib.sha512(b"zt-cert:" + spki).digest()
    )


def test_challenge_content_is_framed_so_no_part_can_borrow_from_another() -> None:
    nonce, spki, uri = bytes(range(32)), _spki(), "https://acme.example/acct/1"
    content = zt_challenge_content(nonce, spki, uri)
    assert content == (
        (32).to_bytes(4, "big")
        + nonce
        + len(spki).to_bytes(4, "big")
        + spki
        + len(uri).to_bytes(4, "big")
        + uri.encode()
    )
    # The same bytes split differently between nonce and key frame differently.
    shifted = zt_challenge_content(nonce + spki[:1], spki[1:], uri)
    assert shifted != content
    rd = compute_report_data(BindingLabel.ZT_CHALLENGE_V1, content)
    with pytest.raises(BindingError, match="tkms-zt-challenge:v1:"):
        verify_report_data(
            rd, BindingLabel.ZT_CHALLENGE_V1, zt_challenge_content(nonce, spki, uri + "2")
        )


@pytest.mark.parametrize("size", [0, 15, 65])
def test_challenge_nonce_outside_16_to_64_bytes_is_refused(size: int) -> None:
    with pytest.raises(BindingError, match=f"16..64 bytes, got {size}"):
        zt_challenge_content(bytes(size), _spki(), "https://acme.example/acct/1")
