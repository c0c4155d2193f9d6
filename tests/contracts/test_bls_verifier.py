"""BlsVerifier on a real anvil with the Prague hardfork (EIP-2537 precompiles).

The network's threshold signatures and drand's quicknet beacons (tests/data/bls/vectors.json)
verify on chain; forged ones give false or a revert naming the bad input; the on-chain
hash-to-G1 matches RFC 9380's vectors, our backend and py_ecc; a chain without the precompiles
refuses rather than answers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_ecc.bls.hash_to_curve import hash_to_G1 as ref_hash_to_g1
from py_ecc.optimized_bls12_381 import normalize

from contracts import (
    Anvil,
    BlsVerifierClient,
    CallReverted,
    InvalidInput,
    Transactor,
    anvil_account,
    deploy_bls_verifier,
)
from mpc.dst import DST_SIG
from mpc.group import G1
from mpc.tsig import app_pubkey_statement, message_point
from tests.contracts.bls_vectors import VECTOR_FILE, main
from tests.mpc.vectors import load_vectors

DOCUMENT: dict[str, Any] = json.loads(VECTOR_FILE.read_text())
VECTORS: list[dict[str, Any]] = DOCUMENT["vectors"]
VALID = [v for v in VECTORS if v["result"] is True]
WELL_FORMED = [v for v in VECTORS if isinstance(v["result"], bool)]
REVERTING = [v for v in VECTORS if isinstance(v["result"], str)]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


@pytest.fixture(scope="module")
def prague() -> Iterator[Anvil]:
    with Anvil(hardfork="prague") as chain:
        yield chain


@pytest.fixture(scope="module")
def verifier(prague: Anvil) -> BlsVerifierClient:
    w3 = prague.web3()
    assert w3.eth.chain_id == DOCUMENT["chain_id"]
    address = deploy_bls_verifier(Transactor(w3, anvil_account(0)), DOCUMENT["governance"])
    return BlsVerifierClient(w3, address)


def _points(vector: dict[str, Any]) -> tuple[bytes, bytes]:
    return bytes.fromhex(vector["public_key_eip2537"]), bytes.fromhex(vector["signature_eip2537"])


def _app_id(vector: dict[str, Any]) -> str:
    return "0x" + str(vector["app_id"])


def test_the_vectors_are_reproducible_from_their_seed() -> None:
    assert main(["--check"]) == 0


def test_the_vendor_vectors_are_real_drand_beacons_and_pass_off_chain() -> None:
    """The drand vectors are the published beacons: randomness = SHA-256(signature)."""
    drand = [v for v in VALID if v["name"].startswith("drand")]
    assert len(drand) == 2
    for vector in drand:
        signature = bytes.fromhex(vector["signature"])
        assert G1.from_bytes(signature).to_eip2537().hex() == vector["signature_eip2537"]
        assert vector["source"].endswith(f"/public/{vector['name'].rsplit(' ', 1)[1]}")


@pytest.mark.parametrize("vector", WELL_FORMED, ids=_ids(WELL_FORMED))
def test_well_formed_signatures_verify_on_chain_exactly_when_genuine(
    verifier: BlsVerifierClient, vector: dict[str, Any]
) -> None:
    pk, sig = _points(vector)
    expected = vector["result"]
    assert verifier.verify(pk, bytes.fromhex(vector["message"]), sig) is expected
    if "app_id" in vector:
        key = bytes.fromhex(vector["key"])
        assert verifier.verify_app_key(pk, _app_id(vector), key, sig) is expected


@pytest.mark.parametrize("vector", REVERTING, ids=_ids(REVERTING))
def test_malformed_points_revert_naming_the_input(
    verifier: BlsVerifierClient, vector: dict[str, Any]
) -> None:
    """Called as another contract would (no client-side checks): a named revert, not false."""
    pk, sig = _points(vector)
    message = bytes.fromhex(vector["message"])
    error, _, argument = vector["result"].partition("(")
    for name, args in (
        ("verify", (pk, message, sig)),
        ("verifyAppKey", (pk, _app_id(vector), bytes.fromhex(vector["key"]), sig)),
    ):
        with pytest.raises(CallReverted) as caught:
            verifier._read(name, *args, block="latest")
        revert = caught.value.revert
        assert revert is not None, caught.value
        assert revert.name == error, f"{name}: {caught.value}"
        assert revert.args["input"] == argument.rstrip(")"), f"{name}: {caught.value}"


def test_the_statement_built_on_chain_is_the_one_the_network_signs(
    verifier: BlsVerifierClient,
) -> None:
    governance = bytes.fromhex(DOCUMENT["governance"][2:])
    for app_id, key in ((b"\x01" * 20, b"\x02"), (bytes(range(20)), bytes(range(200)))):
        expected = app_pubkey_statement(DOCUMENT["chain_id"], governance, app_id, key)
        assert verifier.get_app_key_statement("0x" + app_id.hex(), key) == expected
    with pytest.raises(CallReverted, match="EmptyKey"):
        verifier._read("appKeyStatement", "0x" + "01" * 20, b"", block="latest")


def test_hash_to_g1_on_chain_matches_rfc9380(verifier: BlsVerifierClient) -> None:
    vectors = load_vectors("rfc9380_g1_ro")
    assert len(vectors) == 5
    for vector in vectors:
        point = verifier.hash_to_g1(vector["msg"].encode(), vector["dst"].encode())
        expected = bytes(16) + bytes.fromhex(vector["x"]) + bytes(16) + bytes.fromhex(vector["y"])
        assert point == expected, vector["msg"][:20]


def test_expand_message_xmd_on_chain_matches_rfc9380(verifier: BlsVerifierClient) -> None:
    vectors = [
        v for v in load_vectors("rfc9380_expand_message_xmd_sha256") if v["len_in_bytes"] == 128
    ]
    assert len(vectors) == 5
    for vector in vectors:
        uniform = verifier.expand_message_xmd(vector["msg"].encode(), vector["dst"].encode())
        assert uniform.hex() == vector["uniform_bytes"], vector["msg"][:20]


@settings(max_examples=10, deadline=None)
@given(message=st.binary(max_size=300))
def test_hash_to_g1_on_chain_matches_the_backend(
    verifier: BlsVerifierClient, message: bytes
) -> None:
    assert verifier.hash_to_g1(message, DST_SIG) == message_point(message).to_eip2537()


def test_hash_to_g1_on_chain_matches_py_ecc(verifier: BlsVerifierClient) -> None:
    for message in (b"", b"tkms", hashlib.sha256(b"py_ecc").digest() * 5):
        x, y = normalize(ref_hash_to_g1(message, DST_SIG, hashlib.sha256))
        expected = int(x).to_bytes(64, "big") + int(y).to_bytes(64, "big")
        assert verifier.hash_to_g1(message, DST_SIG) == expected


def test_a_bad_dst_is_refused(verifier: BlsVerifierClient) -> None:
    for dst in (b"", b"d" * 256):
        with pytest.raises(CallReverted, match=f"InvalidDst\\(length={len(dst)}\\)"):
            verifier.hash_to_g1(b"m", dst)


def test_the_client_checks_lengths_before_calling(verifier: BlsVerifierClient) -> None:
    pk, sig = _points(VALID[0])
    with pytest.raises(InvalidInput, match="signature: expected 128 bytes .* got 48"):
        verifier.verify(pk, b"m", sig[:48])
    with pytest.raises(InvalidInput, match="public_key: expected 256 bytes .* got 96"):
        verifier.verify(pk[:96], b"m", sig)
    with pytest.raises(InvalidInput, match="key: .* empty"):
        verifier.verify_app_key(pk, "0x" + "01" * 20, b"", sig)


def test_gas_of_one_verification(verifier: BlsVerifierClient) -> None:
    """About 0.16 M gas a transaction (docs/contracts.md); the pairing alone is 102,900."""
    app = VALID[0]
    pk, sig = _points(app)
    generic = verifier.estimate_verify_gas(pk, bytes.fromhex(app["message"]), sig)
    by_app = verifier.estimate_verify_app_key_gas(pk, _app_id(app), bytes.fromhex(app["key"]), sig)
    print(f"\nverify: {generic} gas, verifyAppKey: {by_app} gas (transactions)")
    assert 102_900 + 2 * 5_500 + 21_000 < generic < 200_000
    assert by_app < generic  # fewer calldata bytes than the whole statement


def test_a_chain_without_the_precompiles_refuses_instead_of_answering() -> None:
    with Anvil(hardfork="cancun") as chain:
        w3 = chain.web3()
        address = deploy_bls_verifier(Transactor(w3, anvil_account(0)), DOCUMENT["governance"])
        verifier = BlsVerifierClient(w3, address)
        pk, sig = _points(VALID[0])
        with pytest.raises(CallReverted, match="PrecompileUnavailable"):
            verifier.verify(pk, bytes.fromhex(VALID[0]["message"]), sig)
