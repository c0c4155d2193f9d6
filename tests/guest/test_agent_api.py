"""Every guest API endpoint through the real `dstack_sdk.DstackClient` over a unix socket.

The agent's network keys come from an in-process stand-in (`FakeKms`); the HTTP server,
the TEE simulator, key derivation and certificates are the real ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from dstack_sdk import DstackClient

from attest import (
    BindingLabel,
    compute_report_data,
    decode_versioned_attestation,
    parse_quote,
    read_ratls_certificate,
    verify_replay,
)
from guest import keys, verify
from guest.agent import Agent
from guest.measure import compose_hash
from mpc import G2, Scalar
from mpc.k256 import kms_issued_digest, purpose_digest, sign_recoverable
from tests.guest import dstack_verifier
from tests.guest.agent_harness import APP_ID, COMPOSE, NETWORK, boot, make_config, serving
from tests.guest.fake_kms import CONTRACT, fake_kms_root

SECRET = Scalar.from_bytes((123456789).to_bytes(32, "big"), "test secret")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    return boot(make_config(tmp_path_factory.mktemp("agent")), SECRET)


@pytest.fixture(scope="module")
def socket(agent: Agent, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("sock") / "dstack.sock"
    with serving(agent, path):
        yield str(path)


@pytest.fixture
def client(socket: str) -> DstackClient:
    return DstackClient(socket, timeout=30)


#: The fake network's KMS root, pinned as a dstack verifier would pin its KMS's key.
KMS_ROOT = fake_kms_root(SECRET)[1]


def check_chain(purpose: str, public_key: bytes, chain: list[bytes]) -> bytes:
    """dstack's verifier (independent of our code) accepts the chain; return the app key."""
    return dstack_verifier.verify_key_chain(
        public_key, chain, purpose=purpose, app_id=APP_ID, kms_root=KMS_ROOT
    )


def k256_public(private: bytes) -> bytes:
    key = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256K1())
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def test_get_key_secp256k1_has_a_chain_to_the_network(client: DstackClient) -> None:
    got = client.get_key("wallet/eth", "ethereum")
    private = got.decode_key()
    assert len(private) == 32
    chain = got.decode_signature_chain()
    root = check_chain("ethereum", k256_public(private), chain)
    # The chain signs the purpose: the same signature does not recover the root for another.
    assert keys.recover_app_key("other", k256_public(private), chain[0]) != root


def test_get_key_ed25519(client: DstackClient) -> None:
    got = client.get_key("ssh", "login", algorithm="ed25519")
    seed = got.decode_key()
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    check_chain(
        "login", public.public_bytes(Encoding.Raw, PublicFormat.Raw), got.decode_signature_chain()
    )
    assert seed != client.get_key("ssh", "login").decode_key()


def test_keys_are_stable_across_restarts_and_differ_by_path_and_app(
    client: DstackClient, agent: Agent, tmp_path: Path
) -> None:
    first = client.get_key("a").decode_key()
    assert client.get_key("a").decode_key() == first
    assert client.get_key("b").decode_key() != first
    again = boot(make_config(tmp_path), SECRET)  # another instance of the same app
    assert again.instance_id != agent.instance_id
    with serving(again, tmp_path / "s.sock"):
        assert DstackClient(str(tmp_path / "s.sock")).get_key("a").decode_key() == first
    other_app = boot(make_config(tmp_path, app_id=bytes.fromhex("33" * 20)), SECRET)
    with serving(other_app, tmp_path / "o.sock"):
        assert DstackClient(str(tmp_path / "o.sock")).get_key("a").decode_key() != first


def test_get_quote_binds_report_data_and_replays(client: DstackClient) -> None:
    got = client.get_quote(b"hello")
    report = parse_quote(got.decode_quote()).td_report
    assert report.report_data == b"hello".ljust(64, b"\0")
    assert got.report_data == report.report_data.hex()
    assert got.replay_rtmrs()[3] == report.rtmr3.hex()
    names = [e.event for e in got.decode_event_log() if e.imr == 3]
    assert names[:3] == ["system-preparing", "os-image-hash", "app-id"]
    assert json.loads(got.vm_config)["os_image_hash"]


def test_get_quote_refuses_oversized_report_data(socket: str) -> None:
    reply = raw(socket, "/GetQuote", json.dumps({"report_data": "00" * 65}).encode())
    assert reply.status_code == 400
    assert "at most 64 bytes" in reply.json()["error"]


def test_info_describes_the_app(client: DstackClient, agent: Agent) -> None:
    info = client.info()
    assert info.app_id == APP_ID.hex()
    assert info.instance_id == agent.instance_id.hex()
    assert info.compose_hash == compose_hash(COMPOSE).hex()
    assert info.app_name == "demo"
    assert info.tcb_info.app_compose == COMPOSE.decode()
    assert json.loads(info.key_provider_info) == {"name": "kms", "id": NETWORK.hex()}
    assert (
        x509.load_pem_x509_certificate(info.app_cert.encode())
        .extensions.get_extension_for_class(x509.BasicConstraints)
        .value.ca
    )


def test_emit_event_extends_rtmr3(client: DstackClient) -> None:
    before = client.info().tcb_info.rtmr3
    client.emit_event("app-ready", b"v1")
    quote = client.get_quote(b"x")
    assert quote.replay_rtmrs()[3] != before
    assert quote.replay_rtmrs()[3] == parse_quote(quote.decode_quote()).td_report.rtmr3.hex()
    last = quote.decode_event_log()[-1]
    assert (last.event, last.event_payload) == ("app-ready", b"v1".hex())


def test_get_tls_key_issues_an_ra_tls_certificate_under_the_app_ca(client: DstackClient) -> None:
    got = client.get_tls_key(
        subject="app.example", alt_names=["app.example", "www.app.example"], usage_ra_tls=True
    )
    key = load_pem_private_key(got.key.encode(), None)
    leaf, ca = (x509.load_pem_x509_certificate(c.encode()) for c in got.certificate_chain)
    leaf.verify_directly_issued_by(ca)
    assert leaf.public_key() == key.public_key()
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["app.example", "www.app.example"]
    evidence = read_ratls_certificate(leaf)
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    report = parse_quote(evidence.quote).td_report
    assert report.report_data == compute_report_data(BindingLabel.RATLS_CERT, spki)
    assert evidence.app_id == APP_ID
    second = client.get_tls_key()
    assert second.key != got.key  # a fresh key each time
    assert second.certificate_chain[1] == got.certificate_chain[1]


@pytest.mark.parametrize("algorithm", ["secp256k1", "secp256k1_prehashed", "ed25519"])
def test_sign_and_verify(client: DstackClient, algorithm: str) -> None:
    data = hashlib.sha256(b"message").digest()
    signed = client.sign(algorithm, data)
    chain = signed.decode_signature_chain()
    dstack_verifier.verify_sign_chain(
        algorithm, data, signed.decode_public_key(), chain, app_id=APP_ID, kms_root=KMS_ROOT
    )
    # dstack's Sign: the key is GetKey("vms") and the chain continues with its chain.
    base = "ed25519" if algorithm == "ed25519" else "secp256k1"
    vms = client.get_key("vms", "signing", algorithm=base)
    assert dstack_verifier.derived_public_key(vms.decode_key(), base) == signed.decode_public_key()
    assert chain[0] == signed.decode_signature() and chain[1:] == vms.decode_signature_chain()
    assert client.verify(
        algorithm, data, signed.decode_signature(), signed.decode_public_key()
    ).valid
    tampered = bytes([data[0] ^ 1]) + data[1:]
    assert not client.verify(
        algorithm, tampered, signed.decode_signature(), signed.decode_public_key()
    ).valid


def test_secp256k1_signatures_are_low_s(client: DstackClient) -> None:
    """dstack's k256 signs low-S and its verifiers refuse high-S: so do we (half of all ECDSA
    signatures come out high-S before normalizing)."""
    for i in range(16):
        for algorithm in ("secp256k1", "secp256k1_prehashed"):
            signature = client.sign(
                algorithm, hashlib.sha256(b"%d" % i).digest()
            ).decode_signature()
            assert 2 * int.from_bytes(signature[32:], "big") <= dstack_verifier.N


def get_key_reply(socket: str, path: str, purpose: str) -> dict[str, Any]:
    """The raw reply: `DstackClient` drops the extra `tkms` field, as it should."""
    reply = raw(socket, "/GetKey", json.dumps({"path": path, "purpose": purpose}).encode())
    assert reply.status_code == 200
    doc: dict[str, Any] = reply.json()
    return doc


def test_the_tkms_field_ties_the_chain_to_pk2(socket: str) -> None:
    doc = get_key_reply(socket, "wallet", "eth")
    chain = [bytes.fromhex(c) for c in doc["signature_chain"]]
    public = dstack_verifier.derived_public_key(bytes.fromhex(doc["key"]))
    certificates = verify.Certificates.from_json(doc["tkms"])
    assert certificates.kms_root == KMS_ROOT and certificates.generation == 1

    def tkms_check(secret: Scalar) -> bytes:
        return verify.verify_tkms_key_chain(
            "eth",
            public,
            chain,
            certificates,
            app_id=APP_ID,
            chain_id=31337,
            governance=CONTRACT,
            group_key=G2.base_mul(secret),
        )

    app = tkms_check(SECRET)
    assert app == certificates.app_public_key
    assert verify.verify_key_chain("eth", public, chain, app_id=APP_ID, kms_root=KMS_ROOT) == app
    with pytest.raises(verify.ChainError, match="not certified by generation 1"):
        tkms_check(Scalar(7))


@pytest.mark.parametrize("algorithm", ["secp256k1", "secp256k1_prehashed", "ed25519"])
def test_guest_verify_checks_sign_chains_both_ways(socket: str, algorithm: str) -> None:
    data = hashlib.sha256(b"payload").digest()
    body = json.dumps({"algorithm": algorithm, "data": data.hex()}).encode()
    doc = raw(socket, "/Sign", body).json()
    public = bytes.fromhex(doc["public_key"])
    chain = [bytes.fromhex(c) for c in doc["signature_chain"]]
    certificates = verify.Certificates.from_json(doc["tkms"])

    def both(data: bytes, chain: list[bytes]) -> None:
        verify.verify_sign_chain(algorithm, data, public, chain, app_id=APP_ID, kms_root=KMS_ROOT)
        verify.verify_tkms_sign_chain(
            algorithm,
            data,
            public,
            chain,
            certificates,
            app_id=APP_ID,
            chain_id=31337,
            governance=CONTRACT,
            group_key=G2.base_mul(SECRET),
        )

    both(data, chain)
    with pytest.raises(verify.ChainError, match="does not verify"):
        both(bytes([data[0] ^ 1]) + data[1:], chain)
    with pytest.raises(verify.ChainError, match="a Sign chain has 3 signatures, got 2"):
        both(data, chain[1:])
    if algorithm != "ed25519":
        s = int.from_bytes(chain[0][32:], "big")
        twin = chain[0][:32] + (dstack_verifier.N - s).to_bytes(32, "big")  # valid ECDSA too
        with pytest.raises(verify.ChainError, match="high-S"):
            both(data, [twin, *chain[1:]])
        with pytest.raises(dstack_verifier.Rejected, match="low-S"):
            dstack_verifier.verify_sign_chain(
                algorithm, data, public, [twin, *chain[1:]], app_id=APP_ID, kms_root=KMS_ROOT
            )


def forged_chains(
    chain: list[bytes], app: bytes, public: bytes, app_id: bytes = APP_ID, purpose: str = "eth"
) -> dict[str, list[bytes]]:
    """Chains a dstack verifier must refuse, made from a genuine GetKey chain of `app_id`
    for `purpose`."""
    impostor = b"\x42" * 32  # a KMS root the anchor does not name
    s = int.from_bytes(chain[0][32:64], "big")
    high_s = chain[0][:32] + (dstack_verifier.N - s).to_bytes(32, "big") + bytes([chain[0][64] ^ 1])
    other_app = sign_recoverable(b"\x43" * 32, purpose_digest(purpose, public))
    other_app_key = k256_public(b"\x43" * 32)
    return {
        "KMS signature by another root": [
            chain[0],
            sign_recoverable(impostor, kms_issued_digest(app_id, app)),
        ],
        "KMS signature for another app": [
            chain[0],
            sign_recoverable(b"\x42" * 32, kms_issued_digest(b"\x99" * 20, app)),
        ],
        "app signature by another key": [other_app, chain[1]],
        "KMS signature over another app key": [
            other_app,
            sign_recoverable(impostor, kms_issued_digest(app_id, other_app_key)),
        ],
        "high-S app signature": [high_s, chain[1]],
        "the old BLS element": [chain[0], b"\x8a" * 48],
        "an extra element": [*chain, b"\x8a" * 48],
        "recovery id 27": [chain[0][:64] + b"\x1b", chain[1]],
    }


def test_forged_chains_are_refused_by_dstacks_verifier_and_ours(client: DstackClient) -> None:
    got = client.get_key("wallet", "eth")
    public = k256_public(got.decode_key())
    chain = got.decode_signature_chain()
    app = check_chain("eth", public, chain)
    for name, forged in forged_chains(chain, app, public).items():
        with pytest.raises(dstack_verifier.Rejected):
            check_chain("eth", public, forged)
            pytest.fail(f"dstack's verifier accepted: {name}")
        with pytest.raises(verify.ChainError):
            verify.verify_key_chain("eth", public, forged, app_id=APP_ID, kms_root=KMS_ROOT)
            pytest.fail(f"guest.verify accepted: {name}")
    # The genuine chain, for another purpose, key or app, is refused too.
    with pytest.raises(dstack_verifier.Rejected):
        check_chain("other", public, chain)
    with pytest.raises(dstack_verifier.Rejected):
        dstack_verifier.verify_key_chain(
            public, chain, purpose="eth", app_id=b"\x33" * 20, kms_root=KMS_ROOT
        )


def test_version(client: DstackClient) -> None:
    assert client.version().rev == "tkms"
    assert client.version().version


def test_attest_is_dstacks_versioned_attestation_of_the_report_data(
    client: DstackClient, agent: Agent
) -> None:
    att = decode_versioned_attestation(client.attest(b"nonce").decode_attestation())
    assert att.report_data == b"nonce".ljust(64, b"\0")
    report = parse_quote(att.quote).td_report
    assert report.report_data == att.report_data
    verify_replay(att.event_log, report.rtmrs)
    assert [name for name, _ in att.runtime_events][:3] == [
        "system-preparing",
        "os-image-hash",
        "app-id",
    ]
    assert dict(att.runtime_events)["app-id"] == APP_ID
    assert att.vm_config == client.info().vm_config == agent.vm_config


def test_gpu_info_is_dstacks_answer_for_a_vm_without_gpus(socket: str) -> None:
    reply = raw(socket, "/GpuInfo", b"{}")
    assert reply.status_code == 200 and reply.json() == {"attestation": ""}


def test_info_carries_cloud_names_and_the_vm_config(client: DstackClient, agent: Agent) -> None:
    info = client.info()
    assert (info.cloud_vendor, info.cloud_product) == ("", "")  # a simulated TD has no cloud
    assert info.vm_config == agent.vm_config == client.get_quote(b"x").vm_config
    assert json.loads(info.vm_config)["os_image_hash"] == info.os_image_hash


def raw(socket: str, path: str, body: bytes, method: str = "POST") -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=socket), base_url="http://x") as c:
        return c.request(method, path, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/GetKey", b"{not json", "body is not JSON"),
        ("/GetKey", b"[1, 2]", "body must be a JSON object"),
        ("/GetKey", b'{"path": 5}', "field 'path' must be a string"),
        ("/GetKey", b'{"algorithm": "rsa"}', "unsupported algorithm 'rsa'"),
        ("/GetQuote", b'{"report_data": "zz"}', "field 'report_data' is not hex"),
        ("/GetQuote", b"{}", "field 'report_data' must be a hex string"),
        ("/EmitEvent", b'{"event": "", "payload": ""}', "field 'event' must not be empty"),
        ("/GetTlsKey", b'{"alt_names": "x"}', "field 'alt_names' must be a list of strings"),
        ("/GetTlsKey", b'{"not_after": -1}', "field 'not_after' must be seconds"),
        ("/Sign", b'{"algorithm": "secp256k1_prehashed", "data": "00"}', "32-byte digest"),
        (
            "/Verify",
            b'{"algorithm": "secp256k1", "data": "", "signature": "00", "public_key": "02"}',
            "signature must be 64 or 65 bytes",
        ),
    ],
)
def test_malformed_requests_get_400_and_the_agent_keeps_serving(
    socket: str, client: DstackClient, path: str, body: bytes, message: str
) -> None:
    reply = raw(socket, path, body)
    assert reply.status_code == 400
    assert message in reply.json()["error"]
    assert len(client.get_key("still-up").decode_key()) == 32


def test_unknown_path_is_404_and_get_works(socket: str) -> None:
    reply = raw(socket, "/Nope", b"{}")
    assert reply.status_code == 404
    assert "no such endpoint" in reply.json()["error"]
    version = raw(socket, "/Version", b"", method="GET")
    assert version.status_code == 200 and version.json()["rev"] == "tkms"


def test_a_refused_derivation_stops_start_up(tmp_path: Path) -> None:
    from guest.kms_client import DerivationError

    with pytest.raises(DerivationError, match="compose hash not allowed"):
        boot(make_config(tmp_path), SECRET, refuse="permission_denied: compose hash not allowed")


def test_socket_is_not_world_accessible(socket: str) -> None:
    assert os.stat(socket).st_mode & 0o007 == 0


def test_broken_http_gets_a_json_400_and_the_agent_keeps_serving(
    socket: str, client: DstackClient
) -> None:
    import socket as sockets

    for request in (
        b"GARBAGE\r\n\r\n",
        b"POST /GetKey HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST /GetKey HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ):
        with sockets.socket(sockets.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(socket)
            s.sendall(request)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0]
        assert json.loads(body)["error"]
    assert len(client.get_key("after-garbage").decode_key()) == 32


def test_tls_key_with_validity_and_app_info(client: DstackClient) -> None:
    got = client.get_tls_key(not_before=1_700_000_000, not_after=1_800_000_000, with_app_info=True)
    leaf = x509.load_pem_x509_certificate(got.certificate_chain[0].encode())
    assert int(leaf.not_valid_before_utc.timestamp()) == 1_700_000_000
    assert int(leaf.not_valid_after_utc.timestamp()) == 1_800_000_000
    info = read_ratls_certificate(leaf).app_info
    assert info is not None and info["app_id"] == APP_ID


def test_async_client_sees_the_same_keys(socket: str, client: DstackClient) -> None:
    import asyncio

    from dstack_sdk import AsyncDstackClient

    async def go() -> tuple[bytes, str]:
        async with AsyncDstackClient(socket, timeout=30) as c:
            key = (await c.get_key("async", "p", algorithm="ed25519")).decode_key()
            return key, (await c.info()).app_id

    key, app_id = asyncio.run(go())
    assert key == client.get_key("async", "p", algorithm="ed25519").decode_key()
    assert app_id == APP_ID.hex()
