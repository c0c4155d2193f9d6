"""dstack's legacy Tappd API through the official SDK's `TappdClient` and raw HTTP.

The agent's network keys come from `FakeKms`; the server, the simulated TD and every key and
certificate are the real ones. dstack's shapes: `Tappd` in the dstack agent's
`agent_rpc.proto` and `rpc_service.rs` (`InternalRpcHandlerV0`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from dstack_sdk import DstackClient, TappdClient
from eth_hash.auto import keccak as eth_keccak
from hypothesis import given
from hypothesis import strategies as st

from attest import BindingLabel, compute_report_data, parse_quote, read_ratls_certificate
from guest.agent import Agent
from guest.agent_server import TAPPD_ROUTES
from guest.report_data import HASHES, app_report_data, sponge
from mpc import Scalar
from tests.guest.agent_harness import APP_ID, boot, make_config, serving

SECRET = Scalar.from_bytes((987654321).to_bytes(32, "big"), "test secret")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    return boot(make_config(tmp_path_factory.mktemp("agent")), SECRET)


@pytest.fixture(scope="module")
def sockets(agent: Agent, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    where = tmp_path_factory.mktemp("sock")
    with serving(agent, where / "dstack.sock"), serving(agent, where / "tappd.sock", TAPPD_ROUTES):
        yield str(where / "dstack.sock"), str(where / "tappd.sock")


@pytest.fixture
def tappd(sockets: tuple[str, str]) -> TappdClient:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return TappdClient(sockets[1], timeout=30)


def post(socket: str, path: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=socket), base_url="http://x") as c:
        return c.post(path, json=body)


def test_derive_key_is_a_stable_p256_key_certified_by_the_app_ca(tappd: TappdClient) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        first = tappd.derive_key("/db", "db.internal", ["db.internal"])
        again = tappd.derive_key("/db", "db.internal")
        other = tappd.derive_key("/other", "x")
    assert first.key == again.key != other.key
    key = load_pem_private_key(first.key.encode(), None)
    leaf, ca = (x509.load_pem_x509_certificate(c.encode()) for c in first.certificate_chain)
    leaf.verify_directly_issued_by(ca)
    assert leaf.public_key() == key.public_key()
    assert leaf.subject.rfc4514_string() == "CN=db.internal"
    evidence = read_ratls_certificate(leaf)
    assert evidence.app_id == APP_ID
    report = parse_quote(evidence.quote).td_report
    assert report.report_data == compute_report_data(
        BindingLabel.RATLS_CERT, evidence.public_key_der
    )
    assert first.certificate_chain[1] == other.certificate_chain[1]


def test_derive_key_with_random_seed_is_fresh(sockets: tuple[str, str]) -> None:
    body = {"path": "/db", "subject": "db", "random_seed": True}
    one, two = (post(sockets[1], "/prpc/Tappd.DeriveKey", body).json() for _ in range(2))
    stable = post(sockets[1], "/prpc/Tappd.DeriveKey", {"path": "/db", "subject": "db"}).json()
    assert len({one["key"], two["key"], stable["key"]}) == 3


def test_derive_k256_key_is_get_key_under_dstacks_old_names(sockets: tuple[str, str]) -> None:
    body = {"path": "wallet", "purpose": "eth", "algorithm": "secp256k1"}
    old = post(sockets[1], "/prpc/DeriveK256Key", body).json()
    new = DstackClient(sockets[0], timeout=30).get_key("wallet", "eth")
    assert set(old) == {"k256_key", "k256_signature_chain"}
    assert old["k256_key"] == new.key and old["k256_signature_chain"] == new.signature_chain


def quoted(reply: dict[str, Any]) -> bytes:
    return parse_quote(bytes.fromhex(reply["quote"])).td_report.report_data


@pytest.mark.parametrize(
    ("body", "expected", "algorithm", "prefix"),
    [
        (
            {"report_data": b"hi".hex()},
            hashlib.sha512(b"app-data:hi").digest(),
            "sha512",
            "app-data",
        ),
        (
            {"report_data": b"hi".hex(), "hash_algorithm": "sha256"},
            hashlib.sha256(b"app-data:hi").digest().ljust(64, b"\0"),
            "sha256",
            "app-data",
        ),
        (
            {"report_data": b"hi".hex(), "hash_algorithm": "keccak256", "prefix": "mine"},
            eth_keccak(b"mine:hi").ljust(64, b"\0"),
            "keccak256",
            "mine",
        ),
        ({"report_data": "ab" * 64, "hash_algorithm": "raw"}, b"\xab" * 64, "raw", ""),
    ],
)
def test_tdx_quote_hashes_tag_and_content_as_dstack_does(
    sockets: tuple[str, str], body: dict[str, Any], expected: bytes, algorithm: str, prefix: str
) -> None:
    reply = post(sockets[1], "/prpc/Tappd.TdxQuote", body).json()
    assert quoted(reply) == expected
    assert (reply["hash_algorithm"], reply["prefix"]) == (algorithm, prefix)
    assert '"event":"app-id"' in reply["event_log"]


def test_the_sdk_tdx_quote_and_raw_quote(tappd: TappdClient, sockets: tuple[str, str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        got = tappd.tdx_quote("test data", "raw")  # the SDK left-pads raw data to 64 bytes
    assert quoted(got.model_dump()) == b"test data".rjust(64, b"\0")
    raw = post(sockets[1], "/prpc/RawQuote", {"report_data": "01" * 64}).json()
    assert quoted(raw) == b"\x01" * 64


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/prpc/RawQuote",
            {"report_data": "01"},
            "raw report_data must be exactly 64 bytes, got 1",
        ),
        (
            "/prpc/TdxQuote",
            {"report_data": "01", "hash_algorithm": "md5"},
            "unknown hash_algorithm",
        ),
        ("/prpc/TdxQuote", {"report_data": "zz"}, "field 'report_data' is not hex"),
        ("/prpc/DeriveKey", {"path": 1}, "field 'path' must be a string"),
        ("/prpc/DeriveKey", {"random_seed": "yes"}, "field 'random_seed' must be true or false"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    sockets: tuple[str, str], path: str, body: dict[str, Any], message: str
) -> None:
    reply = post(sockets[1], path, body)
    assert reply.status_code == 400 and message in reply.json()["error"]


def test_info_and_version_and_the_routes_of_each_socket(
    tappd: TappdClient, sockets: tuple[str, str]
) -> None:
    info = tappd.info()
    assert info.app_id == APP_ID.hex() and info.tcb_info.rtmr3
    assert post(sockets[1], "/prpc/Version", {}).json()["rev"] == "tkms"
    assert post(sockets[1], "/GetKey", {}).status_code == 404  # dstack's tappd socket: Tappd only
    assert post(sockets[0], "/prpc/Tappd.Info", {}).json()["app_id"] == APP_ID.hex()
    assert post(sockets[0], "/prpc/Info", {}).status_code == 404
    assert tappd.is_reachable()


@given(st.binary(max_size=400))
def test_the_keccak_sponge_is_sha3_with_keccak_padding(data: bytes) -> None:
    for bits in (256, 384, 512):
        assert sponge(bits, data, 0x06) == hashlib.new(f"sha3_{bits}", data).digest()
    assert HASHES["keccak256"](data) == eth_keccak(data)


def test_keccak_published_vectors_for_the_empty_string() -> None:
    assert HASHES["keccak384"](b"").hex() == (
        "2c23146a63a29acf99e73b88f8c24eaa7dc60aa771780ccc006afbfa8fe2479b"
        "2dd2b21362337441ac12b515911957ff"
    )
    assert HASHES["keccak512"](b"").hex() == (
        "0eab42de4c3ceb9235fc91acffe746b29c29a8c366b7c60e4e67c466f36a4304"
        "c00fa9caf9d87976ba469bcbe06713b435f091ef2769fb160cdab33d3670680e"
    )
    assert app_report_data(b"x", "keccak512", "app-data") == HASHES["keccak512"](b"app-data:x")


def test_socket_paths_in_config_and_cli(tmp_path: Path) -> None:
    from guest.config import load_config

    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "agent.toml").write_text(
        'rpc = "http://127.0.0.1:1"\ngovernance = "0x' + "22" * 20 + '"\n'
        'network_fingerprint = "' + "f0" * 32 + '"\napp_id = "' + "11" * 20 + '"\n'
        'compose = "c.json"\ntappd_socket = "run/tappd.sock"\n'
    )
    assert load_config(tmp_path / "agent.toml").tappd_socket == tmp_path / "run" / "tappd.sock"
