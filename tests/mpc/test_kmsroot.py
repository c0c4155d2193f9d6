"""The KMS root of a generation: t partials give one secp256k1 key, under its own DST, and
the network's certificate of its public key verifies only for that key and generation."""

from __future__ import annotations

import pytest

from mpc import EphemeralKey, KeyKind, KeyRequest, NetworkContext, derive_partial, open_partial
from mpc.derive import combine_partials, is_consistent_with_group_key
from mpc.dst import DST_KDF, DST_KMS_ROOT
from mpc.errors import EncodingError, InvalidSignature, ProtocolMisuse
from mpc.group import G1, G2, hash_to_g1_point
from mpc.k256 import ORDER, public_key
from mpc.kmsroot import derive_kms_root, kms_root_request, kms_root_statement, verify_kms_root
from mpc.tsig import combine_signatures, sign_partial
from mpc.types import Epoch, Generation
from tests.mpc.dealer import deal, seeded_rng

GOV = b"\x42" * 20
NET = NetworkContext(chain_id=31337, contract=GOV, generation=Generation(1), epoch=Epoch(3))


def _root(keys_seed: int, members: list[int]) -> bytes:
    keys = deal(5, 3, seed=keys_seed)
    rng = seeded_rng(9)
    eph = EphemeralKey.generate(rng)
    request = kms_root_request(31337, GOV, 1)
    opened = []
    for m in members:
        partial = derive_partial(
            keys.shares[m - 1], request, requester=eph.public, network=NET, rng=rng
        )
        opened.append(
            open_partial(
                partial,
                request,
                ephemeral=eph,
                verification_key=keys.public.verification_key(keys.shares[m - 1].member),
                network=NET,
            )
        )
    sigma = combine_partials(opened, 3)
    assert is_consistent_with_group_key(sigma, request, keys.group_key_g2)
    assert sigma == request.point() * keys.secret_poly.secret
    return derive_kms_root(sigma, 31337, GOV, 1)


def test_any_t_members_give_the_same_root_and_it_is_a_valid_key() -> None:
    first = _root(1, [1, 2, 3])
    assert first == _root(1, [5, 3, 2]) == _root(1, [4, 1, 5])
    assert 0 < int.from_bytes(first, "big") < ORDER
    assert first != _root(2, [1, 2, 3])  # another group secret, another root


def test_the_root_request_has_its_own_dst_and_binds_the_generation() -> None:
    request = kms_root_request(31337, GOV, 1)
    assert request.kind is KeyKind.KMS_ROOT and request.kind.dst == DST_KMS_ROOT
    # The same message bytes under the app KDF's tag hash elsewhere: no app request reaches it.
    assert hash_to_g1_point(request.message, DST_KDF) != request.point()
    assert KeyRequest.app_key(GOV, request.message).point() != request.point()
    assert kms_root_request(31337, GOV, 2).point() != request.point()
    assert kms_root_request(1, GOV, 1).point() != request.point()
    sigma = G1.generator()
    assert derive_kms_root(sigma, 31337, GOV, 1) != derive_kms_root(sigma, 31337, GOV, 2)
    with pytest.raises(ProtocolMisuse, match="generations start at 1"):
        kms_root_request(31337, GOV, 0)
    with pytest.raises(ProtocolMisuse, match="identity"):
        derive_kms_root(G1.identity(), 31337, GOV, 1)


def test_the_certificate_verifies_only_for_its_key_and_generation() -> None:
    keys = deal(3, 2, seed=4)
    root = public_key(b"\x11" * 32)
    statement = kms_root_statement(31337, GOV, 2, root)
    assert statement.startswith(b"\x00\x00\x00\x11tkms-k256-root:v1")
    rng = seeded_rng(5)
    certificate = combine_signatures(
        [sign_partial(s, statement, rng=rng) for s in keys.shares[:2]], 2
    )

    def check(key: G2, public: bytes, generation: int = 2) -> None:
        verify_kms_root(
            key,
            chain_id=31337,
            governance=GOV,
            generation=generation,
            public=public,
            certificate=certificate,
        )

    check(keys.group_key_g2, root)
    with pytest.raises(InvalidSignature, match="not certified by generation 2"):
        check(keys.group_key_g2, public_key(b"\x12" * 32))
    with pytest.raises(InvalidSignature, match="not certified by generation 3"):
        check(keys.group_key_g2, root, generation=3)
    with pytest.raises(InvalidSignature):
        check(deal(3, 2, seed=5).group_key_g2, root)
    with pytest.raises(EncodingError, match="KMS root public key"):
        kms_root_statement(31337, GOV, 2, b"\x04" + root[1:])
