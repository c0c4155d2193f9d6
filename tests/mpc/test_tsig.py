"""Threshold BLS signatures: partials with proofs, combination, standard verification."""

from __future__ import annotations

import dataclasses
import hashlib

import py_ecc.optimized_bls12_381 as ref
import pytest
from py_ecc.bls.hash_to_curve import hash_to_G1 as ref_hash_to_g1
from py_ecc.bls.point_compression import decompress_G1, decompress_G2

from mpc.dst import DST_SIG
from mpc.errors import InvalidPartial, ProtocolMisuse
from mpc.group import G1, G2
from mpc.tsig import (
    app_pubkey_statement,
    combine_signatures,
    sign_partial,
    verify_partial_signature,
    verify_signature,
)
from mpc.types import MemberIndex
from tests.mpc.dealer import deal, seeded_rng

MESSAGE = app_pubkey_statement(31337, b"\x42" * 20, b"\xaa" * 20, b"\x02" + b"\x11" * 32)


def test_combined_signature_verifies_with_a_standard_reference_verifier() -> None:
    keys = deal(5, 3, seed=3)
    rng = seeded_rng(1)
    partials = [sign_partial(s, MESSAGE, rng=rng) for s in keys.shares]
    for p in partials:
        verify_partial_signature(p, MESSAGE, keys.public.verification_key(p.member))
    signature = combine_signatures([partials[4], partials[0], partials[2]], 3)
    assert signature == combine_signatures(partials[1:4], 3)
    assert verify_signature(keys.group_key_g2, MESSAGE, signature)

    # py_ecc as an independent min-sig verifier: e(G2, sig) == e(PK2, H(m)).
    sig_point = decompress_G1(int.from_bytes(signature, "big"))
    pk_bytes = keys.group_key_g2.to_bytes()
    pk_point = decompress_G2(
        (int.from_bytes(pk_bytes[:48], "big"), int.from_bytes(pk_bytes[48:], "big"))
    )
    h = ref_hash_to_g1(MESSAGE, DST_SIG, hashlib.sha256)
    assert ref.pairing(ref.G2, sig_point) == ref.pairing(pk_point, h)


def test_signature_does_not_verify_for_another_message_or_key() -> None:
    keys = deal(3, 2, seed=4)
    rng = seeded_rng(2)
    signature = combine_signatures([sign_partial(s, MESSAGE, rng=rng) for s in keys.shares[:2]], 2)
    assert not verify_signature(keys.group_key_g2, MESSAGE + b"x", signature)
    assert not verify_signature(keys.group_key_g2 + G2.generator(), MESSAGE, signature)
    assert not verify_signature(keys.group_key_g2, MESSAGE, signature[:-1])
    assert not verify_signature(keys.group_key_g2, MESSAGE, G1.identity().to_bytes())
    assert not verify_signature(G2.identity(), MESSAGE, signature)


def test_a_wrong_signature_share_names_its_member() -> None:
    keys = deal(3, 2, seed=5)
    partial = sign_partial(keys.shares[1], MESSAGE, rng=seeded_rng(3))
    bad = dataclasses.replace(partial, sigma=partial.sigma + G1.generator())
    with pytest.raises(InvalidPartial, match="member 2"):
        verify_partial_signature(bad, MESSAGE, keys.public.verification_key(MemberIndex(2)))
    with pytest.raises(InvalidPartial, match="member 2"):
        verify_partial_signature(
            partial, MESSAGE + b"!", keys.public.verification_key(MemberIndex(2))
        )


def test_statement_format_is_framed_and_checked() -> None:
    a = app_pubkey_statement(1, b"\x00" * 20, b"ab", b"c")
    b = app_pubkey_statement(1, b"\x00" * 20, b"a", b"bc")
    assert a != b and a.startswith(b"\x00\x00\x00\x12tkms-app-pubkey:v1")
    with pytest.raises(ProtocolMisuse, match="20 bytes"):
        app_pubkey_statement(1, b"\x00" * 19, b"a", b"b")
