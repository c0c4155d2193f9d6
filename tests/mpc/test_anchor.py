"""Network fingerprints and generation links: what chains a rotated key to the first one."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.anchor import (
    AnchorMismatch,
    generation_statement,
    network_fingerprint,
    verify_key_chain,
)
from mpc.errors import ProtocolMisuse
from mpc.group import G2, Scalar
from mpc.tsig import app_env_statement, combine_signatures, message_point, sign_partial
from tests.mpc.dealer import deal, seeded_rng

GOV = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")


def sign(secret: Scalar, message: bytes) -> bytes:
    return (message_point(message) * secret).to_bytes()


def test_fingerprint_is_sha256_of_the_framed_chain_governance_and_genesis_key() -> None:
    key = G2.base_mul(Scalar.from_bytes((7).to_bytes(32, "big"), "k"))
    parts = [b"tkms-network:v1", (31337).to_bytes(32, "big"), GOV, key.to_bytes()]
    framed = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    assert network_fingerprint(31337, GOV, key) == hashlib.sha256(framed).digest()
    # Another chain id, another governance or another key: another network.
    assert network_fingerprint(1, GOV, key) != network_fingerprint(31337, GOV, key)
    assert network_fingerprint(31337, b"\x01" * 20, key) != network_fingerprint(31337, GOV, key)
    assert network_fingerprint(31337, GOV, key + G2.generator()) != network_fingerprint(
        31337, GOV, key
    )


def test_a_threshold_signature_links_a_rotated_key() -> None:
    first, second, third = deal(3, 2, seed=11), deal(3, 2, seed=12), deal(4, 3, seed=13)
    keys = [first.group_key_g2, second.group_key_g2, third.group_key_g2]
    rng = seeded_rng(5)

    def link(dealt: object, generation: int, key: G2, t: int) -> bytes:
        statement = generation_statement(31337, GOV, generation, key)
        shares = dealt.shares[:t]  # type: ignore[attr-defined]
        return combine_signatures([sign_partial(s, statement, rng=rng) for s in shares], t)

    links = [link(first, 2, keys[1], 2), link(second, 3, keys[2], 2)]
    fingerprint = network_fingerprint(31337, GOV, keys[0])
    verify_key_chain(fingerprint, chain_id=31337, governance=GOV, keys=keys, links=links)
    verify_key_chain(fingerprint, chain_id=31337, governance=GOV, keys=keys[:1], links=[])
    # A generation-2 key the attacker chose, with a link signed by its own key: refused.
    fake = deal(3, 2, seed=99)
    forged = link(fake, 2, fake.group_key_g2, 2)
    with pytest.raises(AnchorMismatch, match="generation 2 is not signed by generation 1"):
        verify_key_chain(
            fingerprint,
            chain_id=31337,
            governance=GOV,
            keys=[keys[0], fake.group_key_g2],
            links=[forged],
        )
    # Links swapped, or the link of generation 3 replayed as generation 2's: refused.
    with pytest.raises(AnchorMismatch, match="generation 2"):
        verify_key_chain(fingerprint, chain_id=31337, governance=GOV, keys=keys, links=links[::-1])
    with pytest.raises(AnchorMismatch, match="generation 3"):
        verify_key_chain(
            fingerprint, chain_id=31337, governance=GOV, keys=keys, links=[links[0], b"\x00" * 48]
        )


def test_a_copy_of_the_chain_with_its_own_key_has_another_fingerprint() -> None:
    honest, attacker = deal(3, 2, seed=1).group_key_g2, deal(3, 2, seed=2).group_key_g2
    fingerprint = network_fingerprint(31337, GOV, honest)
    with pytest.raises(AnchorMismatch, match=f"not the expected {fingerprint.hex()}"):
        verify_key_chain(fingerprint, chain_id=31337, governance=GOV, keys=[attacker], links=[])
    with pytest.raises(AnchorMismatch, match="make network"):
        verify_key_chain(fingerprint, chain_id=1, governance=GOV, keys=[honest], links=[])


@settings(max_examples=10, deadline=None)
@given(
    chain_id=st.integers(min_value=0, max_value=2**64),
    secrets=st.lists(st.integers(min_value=1, max_value=2**200), min_size=1, max_size=4),
    broken=st.integers(min_value=0, max_value=3),
)
def test_a_chain_verifies_exactly_when_every_link_is_right(
    chain_id: int, secrets: list[int], broken: int
) -> None:
    scalars = [Scalar.from_bytes(s.to_bytes(32, "big"), "s") for s in secrets]
    keys = [G2.base_mul(s) for s in scalars]
    links = [
        sign(scalars[i], generation_statement(chain_id, GOV, i + 2, keys[i + 1]))
        for i in range(len(keys) - 1)
    ]
    fingerprint = network_fingerprint(chain_id, GOV, keys[0])
    verify_key_chain(fingerprint, chain_id=chain_id, governance=GOV, keys=keys, links=links)
    if broken < len(links):
        links[broken] = sign(scalars[broken], b"something else")
        with pytest.raises(AnchorMismatch, match=f"generation {broken + 2} is not signed"):
            verify_key_chain(fingerprint, chain_id=chain_id, governance=GOV, keys=keys, links=links)


def test_misuse_is_refused() -> None:
    key = G2.generator()
    with pytest.raises(ProtocolMisuse, match="generations >= 2"):
        generation_statement(1, GOV, 1, key)
    with pytest.raises(ProtocolMisuse, match="20 bytes"):
        network_fingerprint(1, GOV[:19], key)
    with pytest.raises(ProtocolMisuse, match="need 1 links"):
        verify_key_chain(bytes(32), chain_id=1, governance=GOV, keys=[key, key], links=[])
    with pytest.raises(AnchorMismatch, match="32 bytes"):
        verify_key_chain(bytes(31), chain_id=1, governance=GOV, keys=[key], links=[])


def test_env_statements_differ_in_every_field() -> None:
    base = (31337, GOV, b"\xaa" * 20, b"\xbb" * 20, 3, b"\x01" * 32)
    statement = app_env_statement(*base)
    for i, other in enumerate([1, b"\x01" * 20, b"\xab" * 20, b"\xbc" * 20, 4, b"\x02" * 32]):
        changed = list(base)
        changed[i] = other
        assert app_env_statement(*changed) != statement  # type: ignore[arg-type]
    with pytest.raises(ProtocolMisuse, match="20-byte"):
        app_env_statement(1, GOV, b"\xaa" * 20, b"\xbb" * 19, 1, b"")
