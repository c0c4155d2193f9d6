"""Partial key derivation: proofs, encryption to the requester, verification, combination."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.derive import (
    EncryptedPartial,
    EphemeralKey,
    KeyRequest,
    NetworkContext,
    VerifiedPartial,
    combine_partials,
    derive_partial,
    is_consistent_with_group_key,
    open_partial,
)
from mpc.errors import EncodingError, InvalidPartial, NotEnoughShares, ProtocolMisuse
from mpc.group import G1
from mpc.types import Epoch, Generation, MemberIndex
from tests.mpc.dealer import DealtKeys, deal, seeded_rng

NET = NetworkContext(
    chain_id=31337, contract=b"\x42" * 20, generation=Generation(1), epoch=Epoch(4)
)
APP = b"\xaa" * 20


def partials_for(
    keys: DealtKeys, request: KeyRequest, eph: EphemeralKey, seed: int = 0
) -> list[EncryptedPartial]:
    rng = seeded_rng(seed)
    return [
        derive_partial(s, request, requester=eph.public, network=NET, rng=rng) for s in keys.shares
    ]


def open_all(
    keys: DealtKeys, request: KeyRequest, eph: EphemeralKey, partials: list[EncryptedPartial]
) -> list[VerifiedPartial]:
    return [
        open_partial(
            p,
            request,
            ephemeral=eph,
            verification_key=keys.public.verification_key(p.member),
            network=NET,
        )
        for p in partials
    ]


@settings(max_examples=10)
@given(n=st.integers(1, 7), data=st.data())
def test_any_t_partials_give_the_same_sigma(n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n))
    keys = deal(n, t, seed=data.draw(st.integers(0, 1000)))
    eph = EphemeralKey.generate(seeded_rng(7))
    request = KeyRequest.app_key(APP, b"disk")
    verified = open_all(keys, request, eph, partials_for(keys, request, eph))
    subset = data.draw(st.permutations(verified))[:t]
    sigma = combine_partials(subset, t)
    assert sigma == request.point() * keys.secret_poly.secret
    assert is_consistent_with_group_key(sigma, request, keys.group_key_g2)


def test_different_requests_and_apps_give_different_sigmas() -> None:
    keys = deal(3, 2)
    eph = EphemeralKey.generate(seeded_rng(1))
    sigmas = set()
    for request in (
        KeyRequest.app_key(APP, b"disk"),
        KeyRequest.app_key(APP, b"tls"),
        KeyRequest.app_key(b"\xbb" * 20, b"disk"),
        KeyRequest.ibe_key(APP),
    ):
        sigmas.add(
            combine_partials(open_all(keys, request, eph, partials_for(keys, request, eph)), 2)
        )
    assert len(sigmas) == 4


def test_a_wrong_partial_is_rejected_and_names_its_member() -> None:
    keys = deal(5, 3)
    eph = EphemeralKey.generate(seeded_rng(2))
    request = KeyRequest.app_key(APP, b"disk")
    partials = partials_for(keys, request, eph)
    lying = dataclasses.replace(partials[3], z=partials[3].z + G1.generator())
    with pytest.raises(InvalidPartial, match="member 4") as err:
        open_partial(
            lying,
            request,
            ephemeral=eph,
            verification_key=keys.public.verification_key(MemberIndex(4)),
            network=NET,
        )
    assert err.value.member == 4


def test_a_partial_checked_against_another_members_key_fails() -> None:
    keys = deal(3, 2)
    eph = EphemeralKey.generate(seeded_rng(3))
    request = KeyRequest.app_key(APP, b"disk")
    partial = partials_for(keys, request, eph)[0]
    with pytest.raises(InvalidPartial, match="member 1"):
        open_partial(
            partial,
            request,
            ephemeral=eph,
            verification_key=keys.public.verification_key(MemberIndex(2)),
            network=NET,
        )


def test_a_partial_for_another_requester_or_request_does_not_open() -> None:
    keys = deal(3, 2)
    alice, mallory = EphemeralKey.generate(seeded_rng(4)), EphemeralKey.generate(seeded_rng(5))
    request = KeyRequest.app_key(APP, b"disk")
    partial = partials_for(keys, request, alice)[0]
    vk = keys.public.verification_key(partial.member)
    with pytest.raises(InvalidPartial):
        open_partial(partial, request, ephemeral=mallory, verification_key=vk, network=NET)
    with pytest.raises(InvalidPartial):
        open_partial(
            partial,
            KeyRequest.app_key(APP, b"tls"),
            ephemeral=alice,
            verification_key=vk,
            network=NET,
        )


def test_a_partial_from_another_epoch_is_rejected() -> None:
    keys = deal(3, 2)
    eph = EphemeralKey.generate(seeded_rng(6))
    request = KeyRequest.app_key(APP, b"disk")
    partial = partials_for(keys, request, eph)[0]
    later = dataclasses.replace(NET, epoch=Epoch(5))
    with pytest.raises(InvalidPartial, match="epoch 4, expected generation 1 epoch 5"):
        open_partial(
            partial,
            request,
            ephemeral=eph,
            verification_key=keys.public.verification_key(partial.member),
            network=later,
        )


def test_the_encrypted_partial_does_not_reveal_sigma() -> None:
    keys = deal(3, 2)
    eph = EphemeralKey.generate(seeded_rng(8))
    request = KeyRequest.app_key(APP, b"disk")
    partial = partials_for(keys, request, eph)[0]
    sigma_i = request.point() * keys.shares[0].value
    assert sigma_i.to_bytes() not in partial.to_bytes()


def test_combine_needs_t_distinct_members() -> None:
    keys = deal(3, 2)
    eph = EphemeralKey.generate(seeded_rng(9))
    request = KeyRequest.app_key(APP, b"disk")
    verified = open_all(keys, request, eph, partials_for(keys, request, eph))
    with pytest.raises(NotEnoughShares, match="only 1 of 2"):
        combine_partials([verified[0], verified[0]], 2)


def test_encrypted_partial_bytes_round_trip_and_strictness() -> None:
    keys = deal(2, 2)
    eph = EphemeralKey.generate(seeded_rng(10))
    partial = partials_for(keys, KeyRequest.app_key(APP, b"x"), eph)[1]
    data = partial.to_bytes()
    assert EncryptedPartial.from_bytes(data) == partial
    with pytest.raises(EncodingError, match="partial: expected"):
        EncryptedPartial.from_bytes(data + b"\x00")
    with pytest.raises(EncodingError, match="member index 0"):
        EncryptedPartial.from_bytes(data[:16] + bytes(4) + data[20:])
    bad_y = data[:20] + bytes([0x80]) + bytes(47) + data[68:]
    with pytest.raises(EncodingError, match="partial Y"):
        EncryptedPartial.from_bytes(bad_y)


def test_identity_requester_key_is_refused() -> None:
    keys = deal(1, 1)
    with pytest.raises(ProtocolMisuse, match="identity"):
        derive_partial(
            keys.shares[0],
            KeyRequest.app_key(APP, b"x"),
            requester=G1.identity(),
            network=NET,
            rng=seeded_rng(0),
        )


def test_ephemeral_key_repr_hides_the_secret() -> None:
    eph = EphemeralKey.generate(seeded_rng(11))
    assert "redacted" in repr(eph) and str(int(eph.secret)) not in repr(eph)
