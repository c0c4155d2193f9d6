"""Chaum-Pedersen DLEQ proofs."""

from __future__ import annotations

import pytest

from mpc.dleq import (
    PROOF_SIZE,
    CompactDleqProof,
    DleqProof,
    EncodedDleqProof,
    is_valid_compact_dleq,
    is_valid_dleq,
    prove_compact_dleq,
    prove_dleq,
    verify_dleq,
)
from mpc.errors import EncodingError, InvalidProof
from mpc.group import G1, R, Scalar, hash_to_g1_point
from tests.mpc.dealer import seeded_rng

H = hash_to_g1_point(b"request", b"TEST-DST")


def make(x: int = 12345, context: bytes = b"ctx") -> tuple[DleqProof, G1, G1]:
    s = Scalar(x)
    vk, sigma = G1.base_mul(s), H * s
    return prove_dleq(s, H, vk=vk, sigma=sigma, context=context, rng=seeded_rng(1)), vk, sigma


def test_valid_proof_verifies() -> None:
    proof, vk, sigma = make()
    assert is_valid_dleq(proof, H, vk=vk, sigma=sigma, context=b"ctx")
    verify_dleq(proof, H, vk=vk, sigma=sigma, context=b"ctx")


def test_proof_fails_for_a_different_exponent() -> None:
    proof, vk, sigma = make()
    wrong_sigma = sigma + H
    assert not is_valid_dleq(proof, H, vk=vk, sigma=wrong_sigma, context=b"ctx")
    with pytest.raises(InvalidProof, match="does not verify"):
        verify_dleq(proof, H, vk=vk + G1.generator(), sigma=sigma, context=b"ctx")


def test_proof_is_bound_to_its_context_and_base() -> None:
    proof, vk, sigma = make()
    assert not is_valid_dleq(proof, H, vk=vk, sigma=sigma, context=b"other")
    other_h = hash_to_g1_point(b"other", b"TEST-DST")
    assert not is_valid_dleq(proof, other_h, vk=vk, sigma=other_h * 12345, context=b"ctx")


def test_a_prover_without_the_secret_cannot_forge() -> None:
    # Proving with x' != x for the honest (vk, sigma) yields an invalid proof.
    _, vk, sigma = make()
    forged = prove_dleq(Scalar(999), H, vk=vk, sigma=sigma, context=b"ctx", rng=seeded_rng(2))
    assert not is_valid_dleq(forged, H, vk=vk, sigma=sigma, context=b"ctx")


def test_proof_bytes_round_trip() -> None:
    proof, _, _ = make()
    data = proof.to_bytes()
    assert len(data) == PROOF_SIZE == 129
    assert data[0] == 2  # the version byte
    assert data[1:49] == proof.a1.to_bytes() and data[49:97] == proof.a2.to_bytes()
    assert data[97:] == proof.z.to_bytes()
    assert DleqProof.from_bytes(data) == proof


def _outside_subgroup() -> bytes:
    from tests.mpc.test_group import _point_outside_subgroup

    return _point_outside_subgroup()


def _off_curve() -> bytes:
    from tests.mpc.test_group import _x_not_on_curve

    return _x_not_on_curve()


IDENTITY = bytes([0xC0]) + bytes(47)


@pytest.mark.parametrize(
    ("start", "replacement", "error"),
    [
        (0, b"\x01", r"DLEQ proof version: expected 2, got 1"),
        (0, b"\x00", r"DLEQ proof version: expected 2, got 0"),
        (1, "off-curve", r"DLEQ proof A1: not a point on the curve"),
        (1, "outside", r"DLEQ proof A1: not in the prime-order subgroup"),
        (1, IDENTITY, r"DLEQ proof A1: the identity is not allowed"),
        (49, "off-curve", r"DLEQ proof A2: not a point on the curve"),
        (49, "outside", r"DLEQ proof A2: not in the prime-order subgroup"),
        (49, IDENTITY, r"DLEQ proof A2: the identity is not allowed"),
        (97, R.to_bytes(32, "big"), r"DLEQ proof z: not canonical"),
        (97, b"\xff" * 32, r"DLEQ proof z: not canonical"),
    ],
)
def test_malformed_proofs_are_refused_naming_the_field(
    start: int, replacement: bytes | str, error: str
) -> None:
    if replacement == "off-curve":
        replacement = _off_curve()
    elif replacement == "outside":
        replacement = _outside_subgroup()
    assert isinstance(replacement, bytes)
    data = bytearray(make()[0].to_bytes())
    data[start : start + len(replacement)] = replacement
    with pytest.raises(EncodingError, match=error):
        DleqProof.from_bytes(bytes(data))
    # Deferred decoding refuses the same bytes with the same error, at the latest in decode().
    with pytest.raises(EncodingError, match=error):
        EncodedDleqProof.from_bytes(bytes(data)).decode()


def test_deferred_decoding_checks_framing_at_once_and_points_on_decode() -> None:
    proof = make()[0]
    data = bytearray(proof.to_bytes())
    encoded = EncodedDleqProof.from_bytes(bytes(data))
    assert encoded.to_bytes() == bytes(data) and encoded.decode() == proof
    data[1:49] = _outside_subgroup()
    deferred = EncodedDleqProof.from_bytes(bytes(data), "partial proof")  # points not looked at
    with pytest.raises(EncodingError, match="partial proof A1: not in the prime-order subgroup"):
        deferred.decode()
    with pytest.raises(EncodingError, match="DLEQ proof version"):
        EncodedDleqProof.from_bytes(b"\x01" + bytes(data[1:]))
    with pytest.raises(EncodingError, match="DLEQ proof z: not canonical"):
        EncodedDleqProof.from_bytes(bytes(data[:97]) + R.to_bytes(32, "big"))


@pytest.mark.parametrize("size", [0, 64, 128, 130])
def test_proofs_of_the_wrong_size_are_refused(size: int) -> None:
    data = (make()[0].to_bytes() * 2)[:size]
    with pytest.raises(EncodingError, match=f"DLEQ proof: expected 129 bytes, got {size}"):
        DleqProof.from_bytes(data)


def test_compact_proof_verifies_and_decodes_strictly() -> None:
    s = Scalar(777)
    vk, sigma = G1.base_mul(s), H * s
    proof = prove_compact_dleq(s, H, vk=vk, sigma=sigma, context=b"c", rng=seeded_rng(3))
    assert is_valid_compact_dleq(proof, H, vk=vk, sigma=sigma, context=b"c")
    assert not is_valid_compact_dleq(proof, H, vk=vk, sigma=sigma + H, context=b"c")
    assert not is_valid_compact_dleq(proof, H, vk=vk, sigma=sigma, context=b"d")
    data = proof.to_bytes()
    assert len(data) == 64
    assert CompactDleqProof.from_bytes(data) == proof
    with pytest.raises(EncodingError, match="expected 64 bytes"):
        CompactDleqProof.from_bytes(data[:63])
    with pytest.raises(EncodingError, match="DLEQ proof z.*not canonical"):
        CompactDleqProof.from_bytes(data[:32] + R.to_bytes(32, "big"))
