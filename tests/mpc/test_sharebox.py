"""Sealed shares: round trip, binding, tampering, and publicly verifiable complaints."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.epochkey import EpochKeyPair
from mpc.errors import DecryptionError
from mpc.group import G1, R, Scalar
from mpc.sharebox import (
    KEM_CIPHERTEXT_SIZE,
    SEALED_SHARE_SIZE,
    DhReveal,
    SealedShare,
    is_valid_reveal,
    open_revealed,
    open_share,
    pair_context,
    reveal_dh,
    seal_share,
)
from tests.mpc.harness import make_context, seeded_rng

CTX = make_context(4, 2)
SID = CTX.session_id
DEALER, ALICE, BOB = (
    EpochKeyPair.generate(SID, CTX.members[k], member=True, rng=seeded_rng(k)) for k in range(3)
)
PAIR = pair_context(SID, 1, 2)
SHARE = Scalar(0x1234_5678_9ABC)


def seal(
    share: Scalar = SHARE, to: EpochKeyPair = ALICE, pair: bytes = PAIR
) -> tuple[SealedShare, bytes]:
    return seal_share(share, dealer=DEALER, recipient=to.public_key, recipient_index=2, pair=pair)


def test_a_share_opens_for_its_recipient_and_pair_only() -> None:
    sealed, secret = seal()
    assert len(sealed.to_bytes()) == SEALED_SHARE_SIZE and len(secret) == 32
    assert SealedShare.from_bytes(sealed.to_bytes()) == sealed
    assert open_share(sealed, me=ALICE, dealer=DEALER.public_key, pair=PAIR) == SHARE
    # ML-KEM is randomized: the same share seals differently each time.
    assert seal()[0] != sealed
    with pytest.raises(DecryptionError, match="sealed share does not open"):
        open_share(sealed, me=BOB, dealer=DEALER.public_key, pair=PAIR)
    for other in (pair_context(SID, 1, 3), pair_context(SID, 2, 2), pair_context(bytes(32), 1, 2)):
        with pytest.raises(DecryptionError, match="sealed share does not open"):
            open_share(sealed, me=ALICE, dealer=DEALER.public_key, pair=other)
    with pytest.raises(DecryptionError, match="sealed share does not open"):
        open_share(sealed, me=ALICE, dealer=BOB.public_key, pair=PAIR)


def test_every_tampered_byte_and_a_non_scalar_plaintext_fail_alike() -> None:
    sealed, _ = seal()
    raw = sealed.to_bytes()
    for position in (0, KEM_CIPHERTEXT_SIZE - 1, KEM_CIPHERTEXT_SIZE, len(raw) - 1):
        bent = bytearray(raw)
        bent[position] ^= 0x80
        with pytest.raises(DecryptionError, match="sealed share does not open"):
            open_share(
                SealedShare.from_bytes(bytes(bent)), me=ALICE, dealer=DEALER.public_key, pair=PAIR
            )
    # A dealer sealing 32 bytes that are no scalar (>= r) gets the same answer as any bad box.
    big = Scalar(0)
    object.__setattr__(big, "_v", R)  # bypass reduction: the encoding is then non-canonical
    sealed, _ = seal(big)
    with pytest.raises(DecryptionError, match="sealed share does not open"):
        open_share(sealed, me=ALICE, dealer=DEALER.public_key, pair=PAIR)


@settings(max_examples=20, deadline=None)
@given(value=st.integers(0, R - 1), dealer=st.integers(1, 64), recipient=st.integers(1, 64))
def test_seal_open_and_the_public_opening_agree_for_any_share(
    value: int, dealer: int, recipient: int
) -> None:
    pair = pair_context(SID, dealer, recipient)
    sealed, secret = seal(Scalar(value), pair=pair)
    assert open_share(sealed, me=ALICE, dealer=DEALER.public_key, pair=pair) == Scalar(value)
    reveal = reveal_dh(ALICE, DEALER.public_key, pair=pair, rng=seeded_rng(value))
    assert is_valid_reveal(reveal, dealer=DEALER.public_key, accuser=ALICE.public_key, pair=pair)
    opened = open_revealed(
        sealed,
        ss_dh=reveal.shared,
        kem_secret=secret,
        dealer=DEALER.public_key,
        recipient=ALICE.public_key,
        pair=pair,
    )
    assert opened == Scalar(value)


def test_a_reveal_proves_only_the_accusers_own_secret_of_that_pair() -> None:
    reveal = reveal_dh(ALICE, DEALER.public_key, pair=PAIR, rng=seeded_rng(1))
    assert DhReveal.from_bytes(reveal.to_bytes()) == reveal
    assert reveal.shared == DEALER.public_key.dh * ALICE.secret
    good = {"dealer": DEALER.public_key, "accuser": ALICE.public_key, "pair": PAIR}
    assert is_valid_reveal(reveal, **good)  # type: ignore[arg-type]
    assert not is_valid_reveal(reveal, **{**good, "pair": pair_context(SID, 1, 3)})  # type: ignore[arg-type]
    assert not is_valid_reveal(reveal, **{**good, "accuser": BOB.public_key})  # type: ignore[arg-type]
    assert not is_valid_reveal(reveal, **{**good, "dealer": BOB.public_key})  # type: ignore[arg-type]
    forged = DhReveal(reveal.shared + G1.generator(), reveal.proof)
    assert not is_valid_reveal(forged, **good)  # type: ignore[arg-type]


def test_a_wrong_kem_secret_opens_nothing() -> None:
    sealed, secret = seal()
    reveal = reveal_dh(ALICE, DEALER.public_key, pair=PAIR, rng=seeded_rng(1))
    for bad in (bytes(32), secret[:-1] + bytes([secret[-1] ^ 1]), secret[:31]):
        with pytest.raises(DecryptionError, match="sealed share does not open"):
            open_revealed(
                sealed,
                ss_dh=reveal.shared,
                kem_secret=bad,
                dealer=DEALER.public_key,
                recipient=ALICE.public_key,
                pair=PAIR,
            )


def test_a_dealer_copying_another_pairs_kem_ciphertext_learns_nothing_from_the_complaint() -> None:
    """The decapsulation-oracle attack: a cheating dealer puts an honest dealer's ct_kem for
    Alice into its own box. Alice cannot open it and complains, but her complaint reveals only
    her DH secret with the cheater, never the ML-KEM secret she decapsulated."""
    honest, honest_secret = seal()
    cheater = BOB  # any other dealer key
    copied = SealedShare(honest.kem_ciphertext, bytes(48))
    pair = pair_context(SID, 2, 2)
    with pytest.raises(DecryptionError):
        open_share(copied, me=ALICE, dealer=cheater.public_key, pair=pair)
    reveal = reveal_dh(ALICE, cheater.public_key, pair=pair, rng=seeded_rng(3))
    assert honest_secret not in reveal.to_bytes()
    assert reveal.shared != DEALER.public_key.dh * ALICE.secret  # not the honest pair's ss_dh


def test_the_production_kem_is_ml_kem_768() -> None:
    from mpc.sharebox import mlkem_encapsulate

    private = mlkem.MLKEM768PrivateKey.generate()
    secret, ciphertext = mlkem_encapsulate(1, private.public_key())
    assert len(ciphertext) == KEM_CIPHERTEXT_SIZE and private.decapsulate(ciphertext) == secret


def test_a_replayed_rng_never_repeats_a_complaint_nonce() -> None:
    """A node's dealing rng is replayed after a restart; two reveals drawn from the same rng
    state must still use different nonces, or (z1 - z2) / (c1 - c2) is the member's key."""

    def same(n: int) -> bytes:
        return b"\x07" * n

    first = reveal_dh(ALICE, DEALER.public_key, pair=pair_context(SID, 1, 2), rng=same)
    second = reveal_dh(ALICE, BOB.public_key, pair=pair_context(SID, 3, 2), rng=same)
    leaked = (first.proof.z - second.proof.z) * (first.proof.c - second.proof.c).inverse()
    assert leaked != ALICE.secret
    again = reveal_dh(ALICE, DEALER.public_key, pair=pair_context(SID, 1, 2), rng=same)
    assert again == first  # the same statement from the same state: the same proof
