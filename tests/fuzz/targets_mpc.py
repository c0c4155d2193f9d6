"""Fuzz targets for mpc/ decoding: G1, G2, scalars, proofs, protocol messages, ciphertexts.

Documented errors: every `from_bytes` raises only `EncodingError` (design §3: non-canonical
encodings, points off the curve or outside the subgroup, the identity where a key is
expected); IBE decryption also `DecryptionError`. Whatever decodes must re-encode to exactly
the input bytes (strictness: one encoding per value). GT has no decoder in mpc (it is only
ever computed, never received), so it is not a target.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from hypothesis import strategies as st

from mpc import (
    G1,
    G2,
    CompactDleqProof,
    Complaint,
    Confirmation,
    DealPublic,
    DecryptionError,
    DhReveal,
    DleqProof,
    EncodingError,
    EncryptedPartial,
    EpochPublicKey,
    Justification,
    SchnorrProof,
    SealedShare,
    ShareBundle,
)
from mpc.group import G1_SIZE, G2_SIZE, SCALAR_SIZE, P, Scalar
from mpc.ibe import decrypt, encrypt, identity_point
from mpc.sharing import PublicPolynomial
from mpc.tsig import verify_signature
from mpc.types import Epoch, Generation, MemberIndex
from tests.fuzz.mutate import random_edits, rich_mutants, seeded
from tests.fuzz.runner import Prepared, Target

R = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001


class _Codec(Protocol):
    def to_bytes(self) -> bytes: ...


def _byte_cases(seeds: list[bytes], size: int, specials: list[bytes]) -> st.SearchStrategy[bytes]:
    """Valid encodings with edits, flag-byte variants, boundary values and random bytes."""

    def make(rng: random.Random) -> bytes:
        kind = rng.randrange(6)
        if kind == 0:
            return rng.choice(specials)
        if kind == 1:  # any flags on random coordinates: off-curve and non-subgroup points
            return bytes([rng.randrange(256)]) + rng.randbytes(size - 1)
        if kind == 2:  # a valid encoding with its flag bits rewritten
            s = rng.choice(seeds)
            return bytes([(s[0] & 0x1F) | (rng.randrange(8) << 5)]) + s[1:]
        if kind == 3:
            return rng.randbytes(rng.choice((0, 1, size - 1, size + 1, 2 * size)))
        return random_edits(rng, rng.choice(seeds), max_edits=2)

    return seeded(make)


def _round_trip(decode: Callable[[bytes], _Codec]) -> Callable[[bytes], None]:
    def check(data: bytes) -> None:
        value = decode(data)
        if value.to_bytes() != bytes(data):
            raise AssertionError(f"decoded value re-encodes as {value.to_bytes().hex()}")

    return check


def _point_target(cls: type[G1] | type[G2], size: int) -> Callable[[], Prepared]:
    def prepare() -> Prepared:
        seeds = [cls.base_mul(k).to_bytes() for k in (1, 2, 3, 7, R - 1, 2**128 + 5)]
        modulus = P.to_bytes(48, "big")
        specials = [
            bytes([0xC0]) + bytes(size - 1),  # the identity: refused unless allowed
            bytes([0xE0]) + bytes(size - 1),
            bytes([0xC0]) + bytes(size - 2) + b"\x01",
            bytes([0x80 | modulus[0]]) + modulus[1:] + bytes(size - 48),  # x = p
            bytes([0x9F]) + b"\xff" * (size - 1),
            bytes(size),
        ]

        def check(data: bytes) -> None:
            allow = len(data) > 0 and data[-1] & 1 == 1  # exercise both modes
            point = cls.from_bytes(data, allow_identity=allow)
            if point.to_bytes() != bytes(data):
                raise AssertionError(f"decoded point re-encodes as {point.to_bytes().hex()}")

        return Prepared(
            strategy=_byte_cases(seeds, size, specials),
            check=check,
            allowed=(EncodingError,),
            rich=rich_mutants(seeds, max_raw=2 * size),
        )

    return prepare


def _scalar() -> Prepared:
    seeds = [k.to_bytes(32, "big") for k in (0, 1, 2, R - 1, R // 2)]
    specials = [R.to_bytes(32, "big"), (R + 1).to_bytes(32, "big"), b"\xff" * 32, bytes(32)]

    def check(data: bytes) -> None:
        allow = len(data) > 0 and data[-1] & 1 == 1
        value = Scalar.from_bytes(data, allow_zero=allow)
        if value.to_bytes() != bytes(data):
            raise AssertionError(f"decoded scalar re-encodes as {value.to_bytes().hex()}")

    return Prepared(
        strategy=_byte_cases(seeds, SCALAR_SIZE, specials),
        check=check,
        allowed=(EncodingError,),
        rich=rich_mutants(seeds, max_raw=64),
    )


def _proofs() -> Prepared:
    proof = (Scalar(5).to_bytes() + Scalar(R - 1).to_bytes(), bytes(64))
    decoders: list[Callable[[bytes], _Codec]] = [
        CompactDleqProof.from_bytes,
        SchnorrProof.from_bytes,
    ]
    bad = [R.to_bytes(32, "big") * 2, b"\xff" * 64]
    strategy = st.tuples(st.sampled_from([0, 1]), _byte_cases(list(proof), 2 * SCALAR_SIZE, bad))
    return Prepared(
        strategy=strategy,
        check=lambda case: _round_trip(decoders[case[0]])(case[1]),
        allowed=(EncodingError,),
        describe=lambda case: f"{['CompactDleqProof', 'SchnorrProof'][case[0]]} {case[1].hex()}",
    )


def _message_seeds() -> list[tuple[str, bytes]]:
    session = bytes(range(32))
    g1, g2 = G1.base_mul(11), G2.base_mul(13)
    proof = SchnorrProof(c=Scalar(3), z=Scalar(4))
    deal = DealPublic(
        session_id=session,
        dealer=MemberIndex(2),
        commitments=PublicPolynomial((g1, G1.base_mul(12), G1.base_mul(14))),
        p=g2,
        proof=proof,
    )
    partial = EncryptedPartial(
        generation=Generation(1),
        epoch=Epoch(2),
        member=MemberIndex(3),
        y=g1,
        z=G1.base_mul(99),
        proof=DleqProof(a1=G1.base_mul(7), a2=G1.base_mul(8), z=Scalar(2)),
    )
    return [
        ("DealPublic", deal.to_bytes()),
        (
            "ShareBundle",
            ShareBundle(
                session_id=session,
                dealer=MemberIndex(1),
                entries=(None, SealedShare(bytes(1088), bytes(48)), None),
            ).to_bytes(),
        ),
        (
            "Complaint",
            Complaint(
                session_id=session,
                accuser=MemberIndex(1),
                dealer=MemberIndex(2),
                reveal=DhReveal(g1, CompactDleqProof(c=Scalar(5), z=Scalar(6))),
            ).to_bytes(),
        ),
        (
            "Justification",
            Justification(
                session_id=session,
                dealer=MemberIndex(2),
                accuser=MemberIndex(1),
                kem_secret=bytes(range(32)),
            ).to_bytes(),
        ),
        ("EpochPublicKey", epoch_key_seed()),
        (
            "Confirmation",
            Confirmation(session_id=session, member=MemberIndex(1), digest=bytes(32)).to_bytes(),
        ),
        ("EncryptedPartial", partial.to_bytes()),
        ("DleqProof", partial.proof.to_bytes()),
    ]


def epoch_key_seed() -> bytes:
    """A member's posted epoch key (X, proof, ML-KEM key), built without the key-pair API."""
    from cryptography.hazmat.primitives.asymmetric import mlkem

    kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes(64)).public_key().public_bytes_raw()
    return G1.base_mul(17).to_bytes() + SchnorrProof(c=Scalar(1), z=Scalar(2)).to_bytes() + kem


DECODERS: dict[str, Callable[[bytes], _Codec]] = {
    "DealPublic": DealPublic.from_bytes,
    "ShareBundle": ShareBundle.from_bytes,
    "EpochPublicKey": EpochPublicKey.from_bytes,
    "Complaint": Complaint.from_bytes,
    "Justification": Justification.from_bytes,
    "Confirmation": Confirmation.from_bytes,
    "EncryptedPartial": EncryptedPartial.from_bytes,
    "DleqProof": DleqProof.from_bytes,
}


def _messages() -> Prepared:
    seeds = _message_seeds()
    # Field boundaries of the layouts: type byte, session id, indices, counts, points.
    hot = [
        0,
        1,
        2,
        33,
        34,
        35,
        36,
        37,
        38,
        37 + G1_SIZE,
        37 + 3 * G1_SIZE,
        37 + 3 * G1_SIZE + G2_SIZE,
    ]

    def make(rng: random.Random) -> tuple[str, bytes]:
        name, data = rng.choice(seeds)
        if rng.random() < 0.2:  # another message's bytes under this decoder
            data = rng.choice(seeds)[1]
        return name, random_edits(rng, data, hot, max_edits=3)

    def rich_case(pair: tuple[tuple[str, bytes], bytes]) -> tuple[str, bytes]:
        return pair[0][0], pair[1]

    return Prepared(
        strategy=seeded(make),
        check=lambda case: _round_trip(DECODERS[case[0]])(case[1]),
        allowed=(EncodingError,),
        describe=lambda case: f"{case[0]} {case[1].hex()}",
        rich=st.tuples(st.sampled_from(seeds), st.binary(max_size=700)).map(rich_case),
    )


def _ciphertexts() -> Prepared:
    """IBE ciphertexts and BLS signatures from bytes: decoding errors or a refusal, no crash."""
    secret = Scalar(123456789)
    app_id = b"\x11" * 20
    group_key = G2.base_mul(secret)
    identity_key = identity_point(app_id) * secret
    ciphertext = encrypt(group_key, app_id, b"secret env", rng=random.Random(1).randbytes)
    signature = G1.base_mul(5).to_bytes()

    def make(rng: random.Random) -> tuple[int, bytes]:
        which = rng.randrange(2)
        seed = ciphertext if which == 0 else signature
        return which, random_edits(rng, seed, [0, 1, 2, 3, 4, 5, 98, 99, 100], max_edits=3)

    def check(case: tuple[int, bytes]) -> None:
        which, data = case
        if which == 0:
            if decrypt(identity_key, app_id, data) != b"secret env":
                raise AssertionError("a changed ciphertext decrypted to something else")
        else:
            verify_signature(group_key, b"statement", data)

    return Prepared(
        strategy=seeded(make),
        check=check,
        allowed=(EncodingError, DecryptionError),
        describe=lambda case: f"{['ibe', 'signature'][case[0]]} {case[1].hex()}",
    )


TARGETS = (
    Target("g1", "mpc.G1.from_bytes: strict compressed G1 decoding", _point_target(G1, G1_SIZE)),
    Target("g2", "mpc.G2.from_bytes: strict compressed G2 decoding", _point_target(G2, G2_SIZE)),
    Target("scalar", "mpc.Scalar.from_bytes: canonical 32-byte scalars", _scalar),
    Target("proofs", "mpc CompactDleqProof/SchnorrProof.from_bytes", _proofs),
    Target("mpc-messages", "mpc DKG messages, epoch keys, EncryptedPartial, DleqProof", _messages),
    Target("mpc-ciphertexts", "mpc IBE decrypt and BLS verify_signature on bytes", _ciphertexts),
)
