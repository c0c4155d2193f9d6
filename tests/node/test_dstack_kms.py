"""dstack's KMS RPCs on a real network: anvil, the contracts, 3 `tkms node run` processes
(threshold 2) that also serve the dstack-compatible endpoint (docs/dstack-kms.md).

A simulated dstack CVM (tests/node/dstack_guest.py) speaks what dstack-util sends at boot:
pRPC JSON over HTTPS, GetTempCaCert with no verification, then GetAppKey over mTLS with an
RA-TLS client certificate signed by the temporary CA. The keys it gets must be the ones the
tkms agent derives for the same app from t partials; the KMS root in GetMeta and behind
`k256_signature` must be the one governance stores; every certificate must chain to the CA
the guest measures as its key provider. Refusals (no opt-in, unapproved compose, a quote that
binds another key, malformed bodies) are 400s that say why, and release nothing: no node logs
a release or lends a partial for them.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest import (
    CertConfig,
    CertSigningRequest,
    compute_report_data,
    encode_csr,
    event_log_to_json,
    fetch_certificate,
    make_quote_verifier,
    sign_csr_bytes,
    verify_ratls_certificate,
)
from attest._binding import BindingLabel
from attest._ratls import OID_APP_ID, decode_attestation, encode_attestation, unwrap_octet_string
from attest.providers import SimulatorAllowed, SimulatorProvider
from contracts import EpochKind
from guest.agent import fetch_keys
from guest.keyring import GenerationKeys
from guest.kms_client import KmsClient
from guest.measure import compose_hash, measure_app_boot
from mpc.derive import EphemeralKey
from mpc.dstack_keys import app_k256_secret, disk_crypt_key, env_crypt_key
from mpc.k256 import kms_issued_digest, public_key, recover_signer
from node.chainview import ChainWatcher
from node.dstack_ca import bootstrap_report_data
from node.errors import NodeError
from node.identity import load_identity
from node.peer_client import PeerClient
from node.sealing import open_sealer
from node.tee import SIMULATED_OS_IMAGE
from protos.tkms.v1 import dstack_kms_rpc_pb2 as dstack
from testnet.cluster import Cluster, NodeProcess
from tests.node.dstack_guest import (
    DstackGuest,
    PrpcError,
    key_provider_id,
    server_usage,
    unhex,
)

pytestmark = pytest.mark.timeout(600)

MAX_HEAD_AGE = 10.0
COMPOSE = b'{"services": {"web": {"image": "nginx@sha256:d5"}}}'
OTHER_COMPOSE = b'{"services": {"web": {"image": "evil@sha256:66"}}}'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("dstack-kms")
    # a short head-age bound, so the stale-chain test below waits seconds, not minutes
    with Cluster(root, dstack_kms=True, max_head_age=MAX_HEAD_AGE) as c:
        c.start_chain()
        nodes = c.create_nodes(3, start=True)
        c.wait_healthy(nodes, timeout=90, accept=("DOWN", "DEGRADED", "NORMAL"))
        epoch = c.propose(EpochKind.DKG, nodes, 2)
        c.wait_epoch(epoch, timeout=180)
        c.wait_healthy(nodes, timeout=60, epoch=epoch)
        yield c


@pytest.fixture(scope="module")
def app_id(cluster: Cluster) -> bytes:
    """An app approved for COMPOSE whose owner opted in to the dstack endpoint."""
    app = cluster.register_app([compose_hash(COMPOSE)])
    receipt = cluster.app(app).send_set_dstack_kms_release(True)
    cluster.wait_seen(receipt.block)
    return bytes.fromhex(app[2:])


def guest(node: NodeProcess, app_id: bytes, compose: bytes = COMPOSE) -> DstackGuest:
    host, _, port = node.dstack_kms.rpartition(":")
    return DstackGuest(host, int(port), app_id, compose)


def node_log(node: NodeProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in node.log_path.read_text().splitlines() if line.strip()]


def events(cluster: Cluster, name: str, **match: object) -> list[dict[str, Any]]:
    return [
        e
        for n in cluster.nodes
        for e in node_log(n)
        if e.get("event") == name and all(e.get(k) == v for k, v in match.items())
    ]


_AGENT: dict[bytes, GenerationKeys] = {}


def tkms_agent(cluster: Cluster, app_id: bytes) -> GenerationKeys:
    """What the tkms guest agent gets for the app from t partials (guest.agent.fetch_keys):
    its seed, and the KMS root checked against the network's certificate under PK2."""
    if app_id in _AGENT:
        return _AGENT[app_id]
    provider = SimulatorProvider()
    measure_app_boot(
        provider,
        app_id=app_id,
        compose=COMPOSE,
        instance_id=os.urandom(20),
        kms_id=cluster.network_fingerprint().hex(),
        os_image=SIMULATED_OS_IMAGE,
    )

    def evidence(report_data: bytes) -> tuple[bytes, str]:
        return provider.get_quote(report_data), event_log_to_json(provider.event_log())

    async def go() -> GenerationKeys:
        client = KmsClient(cluster.committee(), evidence, timeout=20)
        try:
            return await fetch_keys(client, app_id)
        finally:
            await client.close()

    _AGENT[app_id] = keys = asyncio.run(go())
    return keys


# -- the metadata and the CA --------------------------------------------------------------


def test_get_meta_names_the_kms_root_the_network_certified(cluster: Cluster, app_id: bytes) -> None:
    metas = [guest(n, b"\0" * 20).call_json("GetMeta", None) for n in cluster.nodes]
    root = tkms_agent(cluster, app_id).issued.root  # checked against PK2 by the agent
    for meta in metas:
        assert unhex(meta["k256_pubkey"]) == root
        assert meta["kms_contract_address"].lower() == cluster.deployment.governance.lower()  # type: ignore[union-attr]
        assert meta["chain_id"] == cluster.w3().eth.chain_id
        assert meta["is_dev"] is True and meta["allow_any_upgrade"] is True  # simulator TEEs
    # one CA for the network: every node derived it from the same KMS root
    assert len({m["ca_cert"] for m in metas}) == 1
    # ... and each node's TEE vouches for the pair (CA, root), as dstack's bootstrap does
    spki = bytes.fromhex(key_provider_id(metas[0]["ca_cert"]))
    verify = make_quote_verifier(now=int(time.time()), policy=SimulatorAllowed())
    quotes = set()
    for meta in metas:
        info = meta["bootstrap_info"]
        assert unhex(info["ca_pubkey"]) == spki and unhex(info["k256_pubkey"]) == root
        att = decode_attestation(unhex(info["attestation"]))
        expected = bootstrap_report_data(spki, root)
        assert att.report_data == expected
        assert verify(att.quote).quote.td_report.report_data == expected
        quotes.add(att.quote)
    assert len(quotes) == len(metas)  # one per node, each its own TD


def test_every_node_gives_the_same_ca_and_a_public_temp_ca(cluster: Cluster) -> None:
    temps = [guest(n, b"\0" * 20).temp_ca() for n in cluster.nodes]
    assert len({json.dumps(t, sort_keys=True) for t in temps}) == 1
    temp = temps[0]
    ca = x509.load_pem_x509_certificate(temp["ca_cert"].encode())
    temp_cert = x509.load_pem_x509_certificate(temp["temp_ca_cert"].encode())
    temp_key = serialization.load_pem_private_key(temp["temp_ca_key"].encode(), None)
    assert isinstance(temp_key, ec.EllipticCurvePrivateKey)
    assert temp_key.public_key() == temp_cert.public_key()
    assert ca.public_key() != temp_cert.public_key()
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


# -- GetAppKey ------------------------------------------------------------------------------


def test_an_opted_in_app_gets_the_keys_the_tkms_agent_derives(
    cluster: Cluster, app_id: bytes
) -> None:
    g = guest(cluster.nodes[0], app_id)
    temp = g.temp_ca()
    keys = g.get_app_key(temp)

    agent = tkms_agent(cluster, app_id)
    seed = agent.seed
    assert all(keys[f].startswith("0x") for f in ("k256_key", "k256_signature", "os_image_hash"))
    k256 = unhex(keys["k256_key"])
    assert k256 == app_k256_secret(seed, app_id)
    assert unhex(keys["env_crypt_key"]) == env_crypt_key(seed)
    assert unhex(keys["disk_crypt_key"]) == disk_crypt_key(seed, g.instance_id)
    # the KMS root the network certified signed the app key, as dstack's KMS signs it, and
    # it is the signature the agent holds for its own app key
    signature = unhex(keys["k256_signature"])
    assert (
        recover_signer(kms_issued_digest(app_id, public_key(k256)), signature) == agent.issued.root
    )
    assert signature == agent.issued.signature
    assert keys["ca_cert"] == temp["ca_cert"]
    assert unhex(keys["os_image_hash"]) == SIMULATED_OS_IMAGE
    assert keys["gateway_app_id"] == keys["tproxy_app_id"] == ""

    # The server certificate chains to the CA (the TLS handshake checked it against ca_cert
    # only), says kms:rpc, and carries the node's attestation bound to its key.
    assert server_usage(g.server_cert) == "kms:rpc"
    ca = x509.load_pem_x509_certificate(temp["ca_cert"].encode())
    server = x509.load_der_x509_certificate(g.server_cert)
    server.verify_directly_issued_by(ca)
    verify = make_quote_verifier(now=int(time.time()), policy=SimulatorAllowed())
    verify_ratls_certificate(g.server_cert, verify_quote=verify)

    # Another node, another instance of the same app: the app's keys again, its own disk key.
    other = guest(cluster.nodes[2], app_id)
    again = other.get_app_key()
    assert again["k256_key"] == keys["k256_key"] and again["env_crypt_key"] == keys["env_crypt_key"]
    assert unhex(again["disk_crypt_key"]) == disk_crypt_key(seed, other.instance_id)
    assert len(events(cluster, "dstack_app_keys_released", app=f"0x{app_id.hex()}")) == 2


def test_the_protobuf_form_answers_the_same_keys(cluster: Cluster, app_id: bytes) -> None:
    g = guest(cluster.nodes[1], app_id)
    temp = g.temp_ca()
    context = g.mtls_context(temp["ca_cert"], *g.client_certificate(temp))
    body = dstack.GetAppKeyRequest(api_version=1, vm_config=g.vm_config).SerializeToString()
    status, data = g.call_proto("GetAppKey", body, context)
    assert status == 200, data
    reply = dstack.AppKeyResponse.FromString(data)
    assert reply.k256_key == app_k256_secret(tkms_agent(cluster, app_id).seed, app_id)
    assert reply.ca_cert == temp["ca_cert"]


# -- SignCert -------------------------------------------------------------------------------


def _csr(g: DstackGuest, key: ec.EllipticCurvePrivateKey, version: int = 2) -> dict[str, Any]:
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    report_data = compute_report_data(BindingLabel.RATLS_CERT, spki)
    quote, log = g.provider.get_quote(report_data), g.provider.event_log()
    att = decode_attestation(encode_attestation(quote, log, report_data, g.vm_config))
    request = CertSigningRequest(
        version=version,
        confirm="please sign cert:",
        pubkey=spki,
        config=CertConfig(
            subject="app.example",
            subject_alt_names=("app.example",),
            usage_server_auth=True,
            ext_quote=True,
        ),
        quote=quote,
        event_log=log,
    )
    data = encode_csr(request, att)
    return {
        "api_version": version,
        "csr": "0x" + data.hex(),  # prpc's bytes_as_hex_str, as dstack's client writes it
        "signature": "0x" + sign_csr_bytes(data, key).hex(),
        "vm_config": g.vm_config,
    }


def test_sign_cert_issues_a_chain_to_the_ca_the_guest_measured(
    cluster: Cluster, app_id: bytes
) -> None:
    g = guest(cluster.nodes[0], app_id)
    keys = g.get_app_key()
    g.finish_boot(unhex(keys["os_image_hash"]), key_provider_id(keys["ca_cert"]))
    key = ec.generate_private_key(ec.SECP256R1())
    chain = g.call_json("SignCert", _csr(g, key))["certificate_chain"]
    leaf, app_ca, root = (x509.load_pem_x509_certificate(c.encode()) for c in chain)
    assert chain[2] == keys["ca_cert"]
    leaf.verify_directly_issued_by(app_ca)
    app_ca.verify_directly_issued_by(root)
    assert leaf.public_key() == key.public_key()
    for cert, usage in ((leaf, "app:custom"), (app_ca, "app:ca")):
        assert server_usage(cert.public_bytes(serialization.Encoding.DER)) == usage
        ext = cert.extensions.get_extension_for_oid(OID_APP_ID).value
        assert isinstance(ext, x509.UnrecognizedExtension)
        assert unwrap_octet_string(ext.value) == app_id
    # the app CA is the same on every node (derived from the CA as dstack derives it)
    other = guest(cluster.nodes[1], app_id)
    other.provider = g.provider
    other.instance_id = g.instance_id
    chain2 = other.call_json("SignCert", _csr(other, ec.generate_private_key(ec.SECP256R1())))
    assert chain2["certificate_chain"][1] == chain[1]
    # a CSR whose signature is not its key's is refused before anything is checked
    bad = _csr(g, key)
    bad["signature"] = sign_csr_bytes(
        unhex(bad["csr"]), ec.generate_private_key(ec.SECP256R1())
    ).hex()
    with pytest.raises(PrpcError) as refused:
        g.call_json("SignCert", bad)
    assert refused.value.status == 400 and "signature" in refused.value.message


def test_a_td_that_measured_another_key_provider_is_refused(
    cluster: Cluster, app_id: bytes
) -> None:
    g = guest(cluster.nodes[0], app_id)
    g.finish_boot(SIMULATED_OS_IMAGE, "ab" * 91)
    with pytest.raises(PrpcError) as refused:
        g.call_json("SignCert", _csr(g, ec.generate_private_key(ec.SECP256R1())))
    assert refused.value.status == 400
    assert "not this network's dstack CA" in refused.value.message


# -- refusals: nothing released --------------------------------------------------------------


def _nothing_released(cluster: Cluster, app: bytes) -> None:
    assert events(cluster, "dstack_app_keys_released", app=f"0x{app.hex()}") == []


def test_an_app_that_did_not_opt_in_is_refused_and_no_node_lends_a_partial(
    cluster: Cluster,
) -> None:
    app = bytes.fromhex(cluster.register_app([compose_hash(COMPOSE)])[2:])
    lent = len(events(cluster, "dstack_app_partial_sent"))
    with pytest.raises(PrpcError) as refused:
        guest(cluster.nodes[0], app).get_app_key()
    assert refused.value.status == 400
    assert "has not opted in" in refused.value.message
    _nothing_released(cluster, app)
    assert len(events(cluster, "dstack_app_partial_sent")) == lent


def test_opting_out_stops_the_release_from_the_next_block(cluster: Cluster) -> None:
    app_hex = cluster.register_app([compose_hash(COMPOSE)])
    app = bytes.fromhex(app_hex[2:])
    cluster.wait_seen(cluster.app(app_hex).send_set_dstack_kms_release(True).block)
    guest(cluster.nodes[1], app).get_app_key()
    cluster.wait_seen(cluster.app(app_hex).send_set_dstack_kms_release(False).block)
    with pytest.raises(PrpcError) as refused:
        guest(cluster.nodes[1], app).get_app_key()
    assert "has not opted in" in refused.value.message


def test_an_unapproved_compose_is_refused(cluster: Cluster, app_id: bytes) -> None:
    before = len(events(cluster, "dstack_app_keys_released", app=f"0x{app_id.hex()}"))
    with pytest.raises(PrpcError) as refused:
        guest(cluster.nodes[0], app_id, OTHER_COMPOSE).get_app_key()
    assert refused.value.status == 400
    assert "compose" in refused.value.message.lower()
    after = len(events(cluster, "dstack_app_keys_released", app=f"0x{app_id.hex()}"))
    assert after == before


def test_a_quote_that_binds_another_key_is_refused(cluster: Cluster, app_id: bytes) -> None:
    """The certificate of one key with the attestation of another (a replayed quote)."""
    g = guest(cluster.nodes[0], app_id)
    temp = g.temp_ca()
    honest, _ = g.client_certificate(temp)
    ca_cert = x509.load_pem_x509_certificate(temp["temp_ca_cert"].encode())
    ca_key = serialization.load_pem_private_key(temp["temp_ca_key"].encode(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    stolen = x509.load_pem_x509_certificate(honest)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(stolen.subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(stolen.not_valid_before_utc)
        .not_valid_after(stolen.not_valid_after_utc)
    )
    for ext in stolen.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    forged = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    before = len(events(cluster, "dstack_app_keys_released", app=f"0x{app_id.hex()}"))
    with pytest.raises(PrpcError) as refused:
        g.get_app_key(temp, (forged, key_pem))
    assert refused.value.status == 400 and "binding" in refused.value.message
    after = len(events(cluster, "dstack_app_keys_released", app=f"0x{app_id.hex()}"))
    assert after == before


class _TamperedQuotes:
    """The guest's TEE, but every quote has one byte of its TD report flipped after signing."""

    def __init__(self, inner: SimulatorProvider) -> None:
        self.inner = inner

    def get_quote(self, report_data: bytes) -> bytes:
        quote = bytearray(self.inner.get_quote(report_data))
        quote[48 + 200] ^= 0x01  # inside the signed TD report (a measurement register)
        return bytes(quote)

    def event_log(self) -> Any:
        return self.inner.event_log()


def test_a_quote_that_does_not_verify_is_refused(cluster: Cluster, app_id: bytes) -> None:
    g = guest(cluster.nodes[1], app_id)
    temp = g.temp_ca()
    client = g.client_certificate(temp, _TamperedQuotes(g.provider))  # type: ignore[arg-type]
    before = len(events(cluster, "dstack_app_keys_released", app=f"0x{app_id.hex()}"))
    with pytest.raises(PrpcError) as refused:
        g.get_app_key(temp, client)
    assert refused.value.status == 400 and "evidence" in refused.value.message
    after = len(events(cluster, "dstack_app_keys_released", app=f"0x{app_id.hex()}"))
    assert after == before
    g.get_app_key(temp)  # the same TD with its quotes untouched: served


def test_get_app_key_without_a_client_certificate_is_refused(cluster: Cluster) -> None:
    with pytest.raises(PrpcError) as refused:
        guest(cluster.nodes[0], b"\0" * 20).call_json("GetAppKey", {"api_version": 1})
    assert refused.value.status == 400
    assert "No attestation provided" in refused.value.message


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        ("GetAppKey", b"\xff\xff\xff\xff", "not a protobuf GetAppKeyRequest"),
        ("SignCert", b"\x12\x05ab", "not a protobuf SignCertRequest"),
    ],
)
def test_a_malformed_protobuf_is_a_clear_400(
    cluster: Cluster, method: str, body: bytes, expected: str
) -> None:
    status, data = guest(cluster.nodes[0], b"\0" * 20).call_proto(method, body)
    assert status == 400
    assert expected in dstack.ProtoError.FromString(data).message


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        ("GetAppKey", {"api_version": "one"}, "body.api_version: expected a whole number"),
        ("GetAppKey", {"api_version": 2}, "Unsupported API version: 2"),
        ("SignCert", {"api_version": 2, "csr": "zz"}, "body.csr: not hex"),
        ("SignCert", {"api_version": 3}, "unsupported API version 3"),
        ("GetAppKey", [1, 2], "expected a JSON object"),
        ("NoSuchMethod", None, "no such method 'NoSuchMethod'"),
    ],
)
def test_malformed_json_is_a_400_naming_the_field(
    cluster: Cluster, method: str, body: object, expected: str
) -> None:
    with pytest.raises(PrpcError) as refused:
        guest(cluster.nodes[0], b"\0" * 20).call_json(method, body)
    assert refused.value.status == 400
    assert expected in refused.value.message


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        ("GetKmsKey", {"vm_config": ""}, "GetKmsKey is not served"),
        ("GetAppEnvEncryptPubKey", {"app_id": "00" * 20}, "GetAppEnvEncryptPubKey is not served"),
    ],
)
def test_root_handover_and_the_unauthenticated_env_key_are_not_served(
    cluster: Cluster, method: str, body: object, expected: str
) -> None:
    with pytest.raises(PrpcError) as refused:
        guest(cluster.nodes[0], b"\0" * 20).call_json(method, body)
    assert refused.value.status == 400 and expected in refused.value.message


def test_a_member_cannot_collect_partials_for_an_app_that_did_not_opt_in(
    cluster: Cluster, app_id: bytes
) -> None:
    """A compromised member (node 1's sealed identity, a node certificate its peers accept)
    asks node 2 directly for partials: node 2 checks the guest's evidence and the opt-in
    itself, so the serving node cannot assemble the keys of an app that never opted in."""
    other = bytes.fromhex(cluster.register_app([compose_hash(COMPOSE)])[2:])
    node = cluster.nodes[0]
    identity = load_identity(node.dir, open_sealer("file", node.dir))
    # the certificate node 1 serves (peers pin exactly it) and the sealed key behind it
    cert = asyncio.run(fetch_certificate(node.endpoints.peer, timeout=10))
    key = identity.tls_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    def guest_certificate(app: bytes) -> bytes:
        g = guest(node, app)
        pem, _ = g.client_certificate(g.temp_ca())
        return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)

    async def go() -> None:
        watcher = ChainWatcher(cluster.governance(), poll_interval=1.0)
        view = await watcher.poll_once()
        assert view is not None
        committee = view.committee()
        assert committee is not None
        peer = committee.members[1]
        client = PeerClient(
            identity=identity,
            cert_pem=cert,
            key_pem=key,
            view=lambda: watcher.view,
            kms_allowed=lambda evidence: None,
            accept_simulator=True,
            deadline=3.0,
        )
        requester = EphemeralKey.generate(os.urandom).public.to_bytes()
        g, e, vm = committee.generation, committee.epoch, DstackGuest.vm_config
        try:
            lent = await client.dstack_app_partial(
                peer, g, e, requester, guest_certificate(app_id), vm
            )
            assert lent.member == 2 and len(lent.proof) > 0  # the opted-in app: lent
            with pytest.raises(NodeError, match="has not opted in"):
                await client.dstack_app_partial(peer, g, e, requester, guest_certificate(other), vm)
            with pytest.raises(NodeError, match="No attestation provided"):
                await client.dstack_app_partial(peer, g, e, requester, b"", vm)
        finally:
            await client.close()

    asyncio.run(go())


def test_a_stale_chain_view_fails_closed_and_serving_resumes_with_the_chain(
    cluster: Cluster, app_id: bytes
) -> None:
    """Blocks stop (an RPC stuck on an old head looks the same to a node): once the head is
    older than max_head_age_seconds, GetAppKey is refused, and served again when blocks return.
    Last in the module: it stops the chain for a while."""
    w3 = cluster.w3()
    g = guest(cluster.nodes[2], app_id)
    temp = g.temp_ca()
    w3.provider.make_request("evm_setIntervalMining", [0])  # type: ignore[arg-type]
    try:
        time.sleep(MAX_HEAD_AGE + 3)
        with pytest.raises(PrpcError) as refused:
            g.get_app_key(temp)
        assert refused.value.status == 400 and "stale" in refused.value.message
    finally:
        w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]
    time.sleep(3)
    assert unhex(g.get_app_key(temp)["k256_key"]) == app_k256_secret(
        tkms_agent(cluster, app_id).seed, app_id
    )
