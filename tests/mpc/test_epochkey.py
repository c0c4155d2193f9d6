"""Per-epoch keys: encodings, the proof of possession, and what the board makes of posted keys."""

from __future__ import annotations

import pytest

from mpc.epochkey import (
    DEALER_KEY_SIZE,
    MEMBER_KEY_SIZE,
    EpochKeyPair,
    EpochKeys,
    EpochPublicKey,
)
from mpc.errors import EncodingError, ProtocolMisuse
from mpc.group import G1
from mpc.session import SessionKind
from tests.mpc.harness import address, make_context, run_dkg, seeded_rng

CTX = make_context(4, 2)
SID = CTX.session_id
A1, A2 = CTX.members[0], CTX.members[1]


def key(addr: bytes = A1, *, member: bool = True, seed: int = 1) -> EpochKeyPair:
    return EpochKeyPair.generate(SID, addr, member=member, rng=seeded_rng(seed))


def test_keys_serialize_both_halves_and_hide_the_secret() -> None:
    for member, size in ((True, MEMBER_KEY_SIZE), (False, DEALER_KEY_SIZE)):
        pair = key(member=member)
        raw = pair.public_key.to_bytes()
        assert len(raw) == size
        assert EpochPublicKey.from_bytes(raw) == pair.public_key
        again = EpochKeyPair.from_private_bytes(pair.private_bytes())
        assert again.public_key == pair.public_key  # the same proof: the same bytes to post
        assert (again.kem is not None) == member
        assert pair.private_bytes().hex() not in repr(pair) and "redacted" in repr(pair)
    assert key(seed=1).public_key == key(seed=1).public_key
    assert key(seed=1).public_key != key(seed=2).public_key


def test_the_proof_binds_the_key_to_its_session_and_poster() -> None:
    posted = key().public_key
    assert posted.proves_possession(SID, A1)
    assert not posted.proves_possession(SID, A2)  # copying someone's key and proof fails
    other = make_context(4, 2, epoch=2).session_id
    assert not posted.proves_possession(other, A1)  # replaying it into another epoch fails


def test_public_key_decoding_is_strict() -> None:
    raw = key().public_key.to_bytes()
    with pytest.raises(EncodingError, match="expected 112 or 1296 bytes, got 1295"):
        EpochPublicKey.from_bytes(raw[:-1])
    identity = G1.identity().to_bytes()
    with pytest.raises(EncodingError, match="X: the identity is not allowed"):
        EpochPublicKey.from_bytes(identity + raw[48:])
    # ML-KEM coefficients are 12-bit values < q = 3329; 0xFFF is out of range.
    with pytest.raises(EncodingError, match="ML-KEM-768 part is not a valid encapsulation key"):
        EpochPublicKey.from_bytes(raw[:DEALER_KEY_SIZE] + b"\xff" * 1184)
    with pytest.raises(EncodingError, match="epoch private key: expected 96 or 160 bytes"):
        EpochKeyPair.from_private_bytes(bytes(95))
    with pytest.raises(EncodingError, match="zero is not allowed"):
        EpochKeyPair.from_private_bytes(bytes(96))


def test_the_board_keeps_usable_keys_and_says_why_it_refused_the_others() -> None:
    k1, k2, k3 = key(A1), key(A2, seed=2), key(CTX.members[2], member=False, seed=3)
    posted = {
        A1: k1.public_key.to_bytes(),
        A2: key(A1, seed=9).public_key.to_bytes(),  # a key proved for another address
        CTX.members[2]: k3.public_key.to_bytes(),  # no ML-KEM part: unusable as a member
        CTX.members[3]: b"\x01",  # does not decode; nothing posted would be the same
    }
    keys = EpochKeys.from_posted(CTX, posted)
    assert keys.members == (k1.public_key, None, None, None)
    assert keys.dealers == (k1.public_key, None, k3.public_key, None)
    assert len(keys.problems) == 3
    assert any("proof of knowledge fails" in p for p in keys.problems)
    assert any("has no ML-KEM key" in p for p in keys.problems)
    assert k2.public_key not in keys.members
    with pytest.raises(ProtocolMisuse, match="need keys for 4 dealers and 4 members"):
        EpochKeys(dealers=(), members=()).check(CTX)


def test_in_a_reshare_dealers_and_members_are_keyed_by_their_own_lists() -> None:
    before = run_dkg(3, 2, rng_seed=1)
    from tests.mpc.harness import previous_committee

    prev, _ = previous_committee(before)
    members = (address(2), address(3), address(4))
    ctx = make_context(3, 2, epoch=2, kind=SessionKind.RESHARE, members=members, previous=prev)
    pairs = {
        a: EpochKeyPair.generate(ctx.session_id, a, member=a in members, rng=seeded_rng(k))
        for k, a in enumerate((address(1), *members))
    }
    keys = EpochKeys.from_posted(ctx, {a: p.public_key.to_bytes() for a, p in pairs.items()})
    assert keys.dealer(1) == pairs[address(1)].public_key  # dealer-only: X and proof suffice
    assert keys.dealer(2) == keys.member(1) == pairs[address(2)].public_key
    assert keys.member(3) == pairs[address(4)].public_key and keys.dealer(3) is not None
    assert keys.dealer(4) is None and keys.member(0) is None
