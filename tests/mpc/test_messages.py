"""Message and session encodings: round trips, and strict decoding that names the field."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc.dealing import DealOutput
from mpc.dkg import DkgMember
from mpc.epochkey import EpochKeys
from mpc.errors import EncodingError, ProtocolMisuse
from mpc.group import G1, G2, P, R
from mpc.messages import (
    Complaint,
    Confirmation,
    DealPublic,
    Justification,
    ShareBundle,
)
from mpc.session import PreviousCommittee, SessionContext, SessionKind, compute_session_id
from mpc.sharebox import DhReveal, pair_context, reveal_dh
from mpc.sharing import Polynomial
from mpc.types import Epoch, Generation, MemberIndex
from tests.mpc.harness import address, epoch_key, make_context, seeded_rng

CTX = make_context(4, 3)
SID = CTX.session_id


KEYS = EpochKeys.from_posted(CTX, {a: epoch_key(CTX, a).public_key.to_bytes() for a in CTX.members})
REVEAL = reveal_dh(
    epoch_key(CTX, CTX.members[2]),
    epoch_key(CTX, CTX.members[0]).public_key,
    pair=pair_context(SID, 1, 3),
    rng=seeded_rng(2),
)


@pytest.fixture(scope="module")
def output() -> DealOutput:
    member = DkgMember(CTX, MemberIndex(2), epoch_key(CTX, CTX.members[1]), seeded_rng(1))
    return member.deal(KEYS)


def small_messages() -> list[Complaint | Justification | Confirmation]:
    return [
        Complaint(session_id=SID, accuser=MemberIndex(3), dealer=MemberIndex(1), reveal=REVEAL),
        Justification(
            session_id=SID, dealer=MemberIndex(1), accuser=MemberIndex(3), kem_secret=bytes(32)
        ),
        Confirmation(session_id=SID, member=MemberIndex(2), digest=bytes(range(32))),
    ]


def test_every_message_round_trips(output: DealOutput) -> None:
    messages = [output.public, output.bundle, *small_messages()]
    for m in messages:
        data = m.to_bytes()
        assert data[:2] == bytes([1, data[1]]) and data[2:34] == SID
        again = type(m).from_bytes(data)
        assert again == m
        assert again.to_bytes() == data
    assert len(output.public.to_bytes()) == 2 + 32 + 2 + 2 + 3 * 48 + 96 + 64
    # no share to the dealer itself: an empty slot is one byte, a sealed share 1 + 1136
    assert [e is not None for e in output.bundle.entries] == [True, False, True, True]
    assert len(output.bundle.to_bytes()) == 2 + 32 + 2 + 2 + 1 + 3 * 1137
    assert [len(m.to_bytes()) for m in small_messages()] == [150, 70, 68]


def test_decoders_refuse_another_message_type_and_version(output: DealOutput) -> None:
    data = output.public.to_bytes()
    with pytest.raises(EncodingError, match=r"invalid Complaint.type: expected type 3, got 1"):
        Complaint.from_bytes(data)
    with pytest.raises(EncodingError, match=r"invalid DealPublic.version: unsupported version 2"):
        DealPublic.from_bytes(b"\x02" + data[1:])
    with pytest.raises(EncodingError, match="shorter than the header"):
        Confirmation.from_bytes(b"\x01\x05")


def test_truncation_and_trailing_bytes_name_the_field(output: DealOutput) -> None:
    data = output.public.to_bytes()
    with pytest.raises(EncodingError, match=r"DealPublic.proof: message is truncated"):
        DealPublic.from_bytes(data[:-1])
    with pytest.raises(EncodingError, match=r"DealPublic: 1 trailing bytes"):
        DealPublic.from_bytes(data + b"\x00")
    bundle = output.bundle.to_bytes()
    with pytest.raises(EncodingError, match=r"ShareBundle.entries\[1\]: message is truncated"):
        ShareBundle.from_bytes(bundle[:100])
    with pytest.raises(
        EncodingError, match=r"ShareBundle.entries\[2\].flag: must be 0 or 1, got 2"
    ):
        ShareBundle.from_bytes(bundle[: 38 + 1137] + b"\x02" + bundle[38 + 1138 :])


def test_bad_points_scalars_and_indices_name_the_field(output: DealOutput) -> None:
    data = bytearray(output.public.to_bytes())
    c2 = 2 + 32 + 4 + 2 * 48
    bent = bytearray(data)
    bent[c2 : c2 + 48] = bytes([0x80 | 0x1F]) + b"\xff" * 47  # x >= p
    with pytest.raises(
        EncodingError, match=r"DealPublic.commitments\[2\]: coordinate not canonical"
    ):
        DealPublic.from_bytes(bytes(bent))
    bent = bytearray(data)
    bent[c2 : c2 + 48] = bytes([0xC0]) + bytes(47)  # the identity
    with pytest.raises(EncodingError, match=r"DealPublic.commitments\[2\]: the identity"):
        DealPublic.from_bytes(bytes(bent))
    p_at = 2 + 32 + 4 + 3 * 48
    bent = bytearray(data)
    bent[p_at] &= 0x7F  # uncompressed flag
    with pytest.raises(EncodingError, match=r"DealPublic.p: not in compressed form"):
        DealPublic.from_bytes(bytes(bent))
    bent = bytearray(data)
    bent[34:36] = b"\x00\x00"
    with pytest.raises(EncodingError, match=r"DealPublic.dealer: member index 0 is not allowed"):
        DealPublic.from_bytes(bytes(bent))
    bent = bytearray(data)
    bent[36:38] = b"\x00\x00"
    with pytest.raises(EncodingError, match=r"DealPublic.count: a deal needs at least one"):
        DealPublic.from_bytes(bytes(bent))
    complaint = small_messages()[0].to_bytes()
    with pytest.raises(EncodingError, match=r"Complaint.reveal: shared secret: the identity"):
        Complaint.from_bytes(complaint[:38] + bytes([0xC0]) + bytes(47) + complaint[86:])
    with pytest.raises(EncodingError, match=r"Complaint.reveal: proof c: not canonical"):
        Complaint.from_bytes(complaint[:86] + R.to_bytes(32, "big") + complaint[118:])
    with pytest.raises(EncodingError, match=r"Complaint.accuser: member index 0"):
        Complaint.from_bytes(complaint[:34] + b"\x00\x00" + complaint[36:])
    assert DhReveal.from_bytes(REVEAL.to_bytes()) == REVEAL
    assert P > R  # sanity: field elements and scalars have different bounds


def test_a_wrong_commitment_count_decodes_and_is_left_to_the_protocol(output: DealOutput) -> None:
    longer = dataclasses.replace(
        output.public,
        commitments=type(output.public.commitments)(
            (*output.public.commitments.commitments, G1.generator())
        ),
    )
    assert DealPublic.from_bytes(longer.to_bytes()).commitments.threshold == 4


def test_constructors_check_their_fields() -> None:
    with pytest.raises(ProtocolMisuse, match="session_id must be 32 bytes, got 31"):
        Complaint(
            session_id=bytes(31), accuser=MemberIndex(1), dealer=MemberIndex(2), reveal=REVEAL
        )
    with pytest.raises(ProtocolMisuse, match="accuser must be a member index in 1..65535, got 0"):
        Complaint(session_id=SID, accuser=MemberIndex(0), dealer=MemberIndex(2), reveal=REVEAL)
    with pytest.raises(ProtocolMisuse, match="a bundle has 1..65535 slots, got 0"):
        ShareBundle(session_id=SID, dealer=MemberIndex(1), entries=())
    with pytest.raises(ProtocolMisuse, match="kem_secret must be 32 bytes"):
        Justification(session_id=SID, dealer=MemberIndex(1), accuser=MemberIndex(2), kem_secret=b"")
    assert "redacted" in repr(small_messages()[1])
    with pytest.raises(ProtocolMisuse, match="digest must be 32 bytes"):
        Confirmation(session_id=SID, member=MemberIndex(1), digest=b"")
    with pytest.raises(TypeError):
        Complaint(SID, MemberIndex(1), MemberIndex(2))  # type: ignore[call-arg]


# --- session contexts ----------------------------------------------------------------------


def reshare_context() -> SessionContext:
    poly = Polynomial.random(2, seeded_rng(3))
    prev = PreviousCommittee(
        members=CTX.members, threshold=3, public=poly.commitments(), pk2=G2.base_mul(poly.secret)
    )
    return make_context(5, 4, epoch=2, kind=SessionKind.RESHARE, previous=prev)


def test_session_contexts_round_trip_and_every_field_changes_the_id() -> None:
    for ctx in (CTX, reshare_context()):
        assert SessionContext.from_bytes(ctx.to_bytes()) == ctx
        assert compute_session_id(ctx) == ctx.session_id and len(ctx.session_id) == 32
    variants = [
        dataclasses.replace(CTX, chain_id=2),
        dataclasses.replace(CTX, contract=bytes(20)),
        dataclasses.replace(CTX, epoch=Epoch(CTX.epoch + 1)),
        dataclasses.replace(CTX, generation=Generation(CTX.generation + 1)),
        dataclasses.replace(CTX, threshold=2),
        dataclasses.replace(CTX, members=(*CTX.members[:3], address(9))),
        dataclasses.replace(CTX, members=CTX.members[::-1]),
        reshare_context(),
    ]
    ids = {v.session_id for v in variants} | {CTX.session_id}
    assert len(ids) == len(variants) + 1


def test_a_reshare_context_binds_the_old_threshold_and_polynomial() -> None:
    ctx = reshare_context()
    assert ctx.previous is not None
    other = Polynomial.random(2, seeded_rng(4))
    changed = dataclasses.replace(
        ctx,
        previous=dataclasses.replace(
            ctx.previous, public=other.commitments(), pk2=G2.base_mul(other.secret)
        ),
    )
    assert changed.session_id != ctx.session_id
    with pytest.raises(ProtocolMisuse, match="threshold 2 but the public polynomial has 3"):
        dataclasses.replace(ctx.previous, threshold=2)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"contract": b"\x00" * 19}, "contract must be a 20-byte address"),
        ({"threshold": 0}, r"threshold 0 outside 1..4 for members"),
        ({"threshold": 5}, r"threshold 5 outside 1..4 for members"),
        ({"members": ()}, "members: the member list is empty"),
        ({"members": (address(1), address(1))}, "members: duplicate member addresses"),
        ({"members": (b"\x01" * 19,)}, r"members\[1\] must be a 20-byte address"),
        ({"chain_id": -1}, "chain id must fit in 64 bits"),
        ({"epoch": 2**64}, "epoch must fit in 64 bits"),
        ({"kind": SessionKind.RESHARE}, "a RESHARE needs the previous committee"),
    ],
)
def test_invalid_contexts_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ProtocolMisuse, match=message):
        dataclasses.replace(CTX, **changes)  # type: ignore[arg-type]


def test_a_refresh_must_keep_committee_and_threshold() -> None:
    ctx = reshare_context()
    with pytest.raises(ProtocolMisuse, match="a REFRESH keeps the committee and threshold"):
        dataclasses.replace(ctx, kind=SessionKind.REFRESH)
    assert ctx.previous is not None
    with pytest.raises(ProtocolMisuse, match="a DKG has no previous committee"):
        dataclasses.replace(CTX, previous=ctx.previous)


def test_session_context_decoding_is_strict() -> None:
    data = CTX.to_bytes()
    with pytest.raises(EncodingError, match="runs past the end"):
        SessionContext.from_bytes(data[:-1])
    with pytest.raises(EncodingError, match="expected 7 or 11 parts, got 8"):
        SessionContext.from_bytes(data + bytes(4))
    kind_at = 4 + 8 + 4 + 20 + 4 + 8 + 4
    bent = bytearray(data)
    bent[kind_at] = 9
    with pytest.raises(EncodingError, match="session context kind: unknown kind 9"):
        SessionContext.from_bytes(bytes(bent))
    bent[kind_at] = SessionKind.RESHARE
    with pytest.raises(EncodingError, match="a RESHARE needs the previous committee"):
        SessionContext.from_bytes(bytes(bent))


@given(which=st.integers(0, 4), position=st.integers(0, 4000), value=st.integers(0, 255))
def test_a_mutated_message_is_rejected_or_is_its_own_canonical_encoding(
    output: DealOutput, which: int, position: int, value: int
) -> None:
    original = [output.public, output.bundle, *small_messages()][which]
    data = bytearray(original.to_bytes())
    data[position % len(data)] = value
    try:
        decoded = type(original).from_bytes(bytes(data))
    except EncodingError:
        return
    assert decoded.to_bytes() == bytes(data)  # one message, one encoding


@given(st.binary(max_size=200))
def test_random_bodies_are_rejected_or_canonical(data: bytes) -> None:
    classes: list[type[DealPublic | ShareBundle | Complaint | Justification | Confirmation]]
    classes = [DealPublic, ShareBundle, Complaint, Justification, Confirmation]
    for kind, cls in enumerate(classes, start=1):
        blob = bytes([1, kind]) + SID + data
        try:
            decoded = cls.from_bytes(blob)
        except EncodingError:
            continue
        assert decoded.to_bytes() == blob
    try:
        ctx = SessionContext.from_bytes(data)
    except EncodingError:
        return
    assert ctx.to_bytes() == data


def test_a_previous_committee_whose_pk2_contradicts_its_key_is_refused() -> None:
    poly = Polynomial.random(1, seeded_rng(6))
    with pytest.raises(ProtocolMisuse, match="previous committee: PK2 does not match A_0"):
        PreviousCommittee(
            members=CTX.members[:2],
            threshold=2,
            public=poly.commitments(),
            pk2=G2.base_mul(poly.secret + 1),
        )
