"""A real network: anvil, the contracts, and 5 `tkms node run` processes on 127.0.0.1.

One cluster per module (it takes ~30 s to bring up); the tests run in order and share it:
DKG with a node killed and restarted mid-run -> t+1 nodes killed: the others say DOWN within
seconds -> derivation from any 3 nodes -> refusals -> malformed requests -> a man in the
middle (refused by the pin, nobody blamed) -> a lying node (named) -> 2 nodes down -> a
stopped (SIGSTOP) node costs clients little -> reshare to 6 nodes with threshold 4 (same keys,
the same KMS root on every member) -> t+1 killed again -> a node that lost its data dir
rejoins by reshare -> every node's log is JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import time
from collections.abc import Iterator

import grpc
import pytest

from attest import BindingLabel, compute_report_data, event_log_to_json
from attest.providers import SimulatorProvider
from contracts import EpochKind
from guest.kms_channel import blocking_channel
from guest.kms_client import (
    AppKeyRequest,
    Committee,
    DerivationError,
    KmsClient,
    SignedStatement,
)
from guest.measure import compose_hash, measure_app_boot
from mpc import G1
from mpc.k256 import kms_issued_digest, recover_signer
from mpc.kmsroot import verify_kms_root
from node.identity import NodeIdentity, load_identity
from node.ratls import make_node_certificate
from node.sealing import open_sealer
from node.tee import SIMULATED_OS_IMAGE
from protos.tkms.v1 import common_pb2, kms_pb2, kms_pb2_grpc
from testnet.cluster import Cluster, NodeProcess

pytestmark = pytest.mark.timeout(600)

COMPOSE = b'{"services": {"web": {"image": "nginx@sha256:00"}}}'
OTHER_COMPOSE = b'{"services": {"web": {"image": "evil@sha256:66"}}}'


class App:
    """A simulated app CVM: its TEE, measured boot, and a KMS client."""

    def __init__(self, cluster: Cluster, app_id: str, compose: bytes = COMPOSE) -> None:
        self.app_id = bytes.fromhex(app_id[2:])
        self.provider = SimulatorProvider()
        assert cluster.deployment is not None
        measure_app_boot(
            self.provider,
            app_id=self.app_id,
            compose=compose,
            instance_id=os.urandom(20),
            kms_id=cluster.network_fingerprint().hex(),
            os_image=SIMULATED_OS_IMAGE,
        )

    def evidence(self, report_data: bytes) -> tuple[bytes, str]:
        return self.provider.get_quote(report_data), event_log_to_json(self.provider.event_log())

    def client(self, committee: Committee) -> KmsClient:
        return KmsClient(committee, self.evidence, timeout=10)


def derive(app: App, committee: Committee, purposes: list[bytes]) -> list[G1]:
    async def go() -> list[G1]:
        client = app.client(committee)
        try:
            result = await client.derive([AppKeyRequest(app.app_id, p) for p in purposes])
            return result.sigmas
        finally:
            await client.close()

    return asyncio.run(go())


def only(committee: Committee, indices: set[int]) -> Committee:
    return Committee(
        network=committee.network,
        threshold=committee.threshold,
        members=tuple(m for m in committee.members if m.index in indices),
        group_key=committee.group_key,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("network")
    with Cluster(root) as c:
        c.start_chain()
        nodes = [c.create_node() for _ in range(5)]
        for n in nodes:
            c.start_node(n)
        c.wait_healthy(nodes, timeout=90, accept=("DOWN", "DEGRADED", "NORMAL"))  # serving HTTP
        epoch = c.propose(EpochKind.DKG, nodes, 3)
        # Kill node 5 after the deal phase has begun, and bring it back: it must resume.
        time.sleep(3 * c.block_time)
        c.stop_node(nodes[4], kill=True)
        time.sleep(2 * c.block_time)
        c.start_node(nodes[4])
        c.wait_epoch(epoch, timeout=180)
        c.wait_healthy(nodes, timeout=60, epoch=epoch)
        yield c


@pytest.fixture(scope="module")
def app(cluster: Cluster) -> App:
    app_id = cluster.register_app([compose_hash(COMPOSE)])
    return App(cluster, app_id)


#: Seconds within which every survivor must say DOWN once fewer than t members answer.
DOWN_WITHIN = 5.0
#: Numbers the tests measured, printed at the end of the module (docs/reliability.md).
MEASURED: dict[str, object] = {}


def kill_and_expect_down(cluster: Cluster, victims: list[NodeProcess]) -> dict[int, float]:
    """SIGKILL `victims` (leaving fewer than t), then poll every survivor's /health until it
    says DOWN; returns seconds to DOWN by node index. The victims are started again and
    every node waited for until NORMAL."""
    survivors = [n for n in cluster.nodes if n not in victims]
    for node in victims:
        cluster.stop_node(node, kill=True)
    killed = time.monotonic()
    down: dict[int, float] = {}
    try:
        while len(down) < len(survivors) and time.monotonic() - killed < 30:
            for node in survivors:
                health = node.health(timeout=1.0)
                if node.index not in down and health is not None and health["health"] == "DOWN":
                    assert "members" in health["reason"], health
                    down[node.index] = round(time.monotonic() - killed, 2)
            time.sleep(0.1)
    finally:
        for node in victims:
            cluster.start_node(node)
    cluster.wait_healthy(cluster.nodes, timeout=90)
    return down


def test_t_plus_one_nodes_killed_right_after_the_dkg_leave_the_others_down_within_seconds(
    cluster: Cluster,
) -> None:
    """Health is what a node can do now: with 3 of 5 members dead no derivation can succeed,
    so the two survivors must say DOWN at once (they said NORMAL for ~2 minutes before)."""
    down = kill_and_expect_down(cluster, cluster.nodes[2:5])
    MEASURED["down_after_kill_3_of_5_s"] = down
    print("\nsurvivors DOWN after killing 3 of 5 (s):", down)
    assert len(down) == 2 and max(down.values()) <= DOWN_WITHIN, down


def test_dkg_completes_and_any_three_nodes_give_the_same_key(cluster: Cluster, app: App) -> None:
    committee = cluster.committee()
    assert committee.threshold == 3 and len(committee.members) == 5
    first = derive(app, only(committee, {1, 2, 3}), [b"disk", b"tls"])
    second = derive(app, only(committee, {3, 4, 5}), [b"disk", b"tls"])  # node 5 restarted mid-DKG
    third = derive(app, only(committee, {1, 5, 2}), [b"disk", b"tls"])
    assert first == second == third
    assert first[0] != first[1]
    from mpc import KeyRequest, is_consistent_with_group_key

    assert is_consistent_with_group_key(
        first[0], KeyRequest.app_key(app.app_id, b"disk"), committee.group_key
    )


def test_the_network_certifies_an_app_key_with_a_threshold_signature(
    cluster: Cluster, app: App
) -> None:
    from mpc.tsig import app_pubkey_statement, verify_signature

    committee = cluster.committee()
    key = b"\x02" + os.urandom(32)
    expected = app_pubkey_statement(
        committee.network.chain_id, committee.network.contract, app.app_id, key
    )

    async def go() -> SignedStatement:
        client = app.client(committee)
        try:
            return await client.sign_public_key(key, expected)
        finally:
            await client.close()

    signed = asyncio.run(go())
    assert signed.statement == expected
    assert verify_signature(committee.group_key, expected, signed.signature)
    assert not verify_signature(committee.group_key, expected + b"x", signed.signature)


def _raw_call(cluster: Cluster, request: kms_pb2.DerivePartialRequest) -> grpc.RpcError | None:
    node = cluster.nodes[0]
    with blocking_channel(node.endpoints.kms, node.tls_key_hash) as channel:
        stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
        try:
            stub.DerivePartial(request, timeout=10)
        except grpc.RpcError as exc:
            return exc
    return None


def _request(
    app: App, *, app_id: bytes | None = None, bind_to: bytes | None = None
) -> kms_pb2.DerivePartialRequest:
    e = G1.base_mul(12345)
    report = compute_report_data(BindingLabel.KDF_V1, bind_to or e.to_bytes())
    quote, log = app.evidence(report)
    return kms_pb2.DerivePartialRequest(
        evidence=common_pb2.Evidence(quote=quote, event_log=log),
        requester_key=e.to_bytes(),
        keys=[
            kms_pb2.KeyRequest(
                kind=kms_pb2.KeyRequest.KIND_KDF, app_id=app_id or app.app_id, purpose=b"disk"
            )
        ],
    )


def test_get_meta_agrees_with_the_chain(cluster: Cluster) -> None:
    committee = cluster.committee()
    node = cluster.nodes[2]
    with blocking_channel(node.endpoints.kms, node.tls_key_hash) as channel:
        stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
        meta = stub.GetMeta(kms_pb2.GetMetaRequest(), timeout=10)
    assert meta.chain_id == committee.network.chain_id
    assert meta.governance == committee.network.contract
    assert (meta.generation, meta.epoch) == (committee.network.generation, committee.network.epoch)
    assert meta.threshold == committee.threshold and meta.my_index == 3
    assert meta.group_public_key_g2 == committee.group_key.to_bytes()
    assert [m.endpoint for m in meta.members] == [m.endpoint for m in committee.members]
    assert [m.verification_key for m in meta.members] == [
        m.verification_key.to_bytes() for m in committee.members
    ]


def test_node_status_over_the_admin_socket(cluster: Cluster) -> None:
    import json
    import subprocess
    import sys

    node = cluster.nodes[0]
    out = subprocess.run(
        [sys.executable, "-m", "tkms", "node", "status", "--dir", str(node.dir), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["health"] == "NORMAL"
    assert status["generation"] == "1" or status["generation"] == 1
    assert int(status["my_index"]) == 1 and int(status["chain_head"]) > 0
    # gRPC health checking on the public (TLS) port agrees.
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with blocking_channel(node.endpoints.kms, node.tls_key_hash) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service="tkms.v1.Kms"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_refusals_are_permission_denied_with_a_reason(cluster: Cluster, app: App) -> None:
    # Wrong app_id: keys of another app.
    err = _raw_call(cluster, _request(app, app_id=b"\x99" * 20))
    assert err is not None and err.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "ownership" in str(err.details())
    # Evidence bound to another key.
    err = _raw_call(cluster, _request(app, bind_to=G1.base_mul(999).to_bytes()))
    assert err is not None and err.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "binding" in str(err.details())
    # An app whose compose hash was never approved.
    unapproved = App(cluster, "0x" + app.app_id.hex(), compose=OTHER_COMPOSE)
    err = _raw_call(cluster, _request(unapproved))
    assert err is not None and err.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "approval" in str(err.details())


def test_malformed_requests_are_invalid_argument(cluster: Cluster, app: App) -> None:
    good = _request(app)
    cases = []
    bad = kms_pb2.DerivePartialRequest()
    bad.CopyFrom(good)
    bad.requester_key = b"\x00" * 48
    cases.append((bad, "requester_key"))
    bad = kms_pb2.DerivePartialRequest()
    bad.CopyFrom(good)
    bad.keys[0].app_id = b"\x01" * 19
    cases.append((bad, "app_id must be 20 bytes"))
    bad = kms_pb2.DerivePartialRequest()
    bad.CopyFrom(good)
    bad.keys[0].purpose = b"x" * 300
    cases.append((bad, "purpose"))
    bad = kms_pb2.DerivePartialRequest()
    bad.CopyFrom(good)
    bad.evidence.quote = b"q" * (70 * 1024)
    cases.append((bad, "evidence.quote"))
    bad = kms_pb2.DerivePartialRequest()
    bad.CopyFrom(good)
    del bad.keys[:]
    cases.append((bad, "keys"))
    for request, needle in cases:
        err = _raw_call(cluster, request)
        assert err is not None and err.code() is grpc.StatusCode.INVALID_ARGUMENT, needle
        assert needle in str(err.details())


class _LyingProxy(kms_pb2_grpc.KmsServicer):
    """Stands in front of a real node and shifts every partial it returns by G1."""

    def __init__(self, node: NodeProcess) -> None:
        self._channel = blocking_channel(node.endpoints.kms, node.tls_key_hash)
        self._stub = kms_pb2_grpc.KmsStub(self._channel)  # type: ignore[no-untyped-call]

    def DerivePartial(
        self, request: kms_pb2.DerivePartialRequest, context: grpc.ServicerContext
    ) -> kms_pb2.DerivePartialResponse:
        reply: kms_pb2.DerivePartialResponse = self._stub.DerivePartial(request, timeout=10)
        for p in reply.partials:
            p.z = (G1.from_bytes(p.z) + G1.generator()).to_bytes()
        return reply


@contextlib.contextmanager
def _lying_proxy(node: NodeProcess, tls: tuple[bytes, bytes] | None) -> Iterator[int]:
    """A `_LyingProxy` for `node` on 127.0.0.1 (TLS with `tls` = (cert, key), or plaintext)."""
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    kms_pb2_grpc.add_KmsServicer_to_server(_LyingProxy(node), server)  # type: ignore[no-untyped-call]
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


def _behind(committee: Committee, index: int, port: int) -> Committee:
    members = tuple(
        dataclasses.replace(m, endpoint=f"127.0.0.1:{port}") if m.index == index else m
        for m in committee.members
    )
    return dataclasses.replace(committee, members=members)


def test_a_man_in_the_middle_cannot_get_an_honest_node_named_a_liar(
    cluster: Cluster, app: App
) -> None:
    """A tampering proxy at node 2's address, without node 2's TLS key, speaking plaintext
    (what the Kms port used to be) or TLS with its own certificate: the client's pin refuses
    the channel, so node 2 fails as unreachable or unauthenticated, not as a liar."""
    committee = cluster.committee()
    honest = derive(app, only(committee, {1, 3, 4}), [b"disk"])
    stranger = make_node_certificate(NodeIdentity.generate(), SimulatorProvider())
    for tls, reason in (
        (None, r"node-2 \(127.0.0.1:\d+\) unavailable: cannot fetch the certificate"),
        (stranger, r"node-2 \(127.0.0.1:\d+\) unauthenticated: .*does not serve the member's"),
    ):
        with _lying_proxy(cluster.nodes[1], tls) as port:
            mitm = _behind(committee, 2, port)
            with pytest.raises(DerivationError, match=rf"only 2 of 3 needed partials: {reason}"):
                derive(app, only(mitm, {1, 2, 3}), [b"disk"])
            assert derive(app, only(mitm, {1, 2, 3, 4}), [b"disk"]) == honest


def test_a_lying_node_is_caught_and_named(cluster: Cluster, app: App) -> None:
    """Node 2 itself lies (the proxy holds node 2's sealed TLS key, as a compromised node
    would): its answers pass the pin, fail their proofs, and node 2 is named."""
    committee = cluster.committee()
    node = cluster.nodes[1]
    identity = load_identity(node.dir, open_sealer("file", node.dir))
    with _lying_proxy(node, make_node_certificate(identity, SimulatorProvider())) as port:
        lied = _behind(committee, 2, port)
        with pytest.raises(
            DerivationError, match=r"only 2 of 3 needed partials: node-2 .*proof invalid"
        ):
            derive(app, only(lied, {1, 2, 3}), [b"disk"])
        honest = derive(app, only(committee, {1, 3, 4}), [b"disk"])
        assert derive(app, only(lied, {1, 2, 3, 4}), [b"disk"]) == honest


def test_two_nodes_down_still_derive(cluster: Cluster, app: App) -> None:
    committee = cluster.committee()
    before = derive(app, committee, [b"disk"])
    cluster.stop_node(cluster.nodes[1])
    cluster.stop_node(cluster.nodes[3])
    for stopped in (cluster.nodes[1], cluster.nodes[3]):  # SIGTERM drains and exits cleanly
        assert stopped.process is not None and stopped.process.returncode == 0
        assert '"event": "node_stopped"' in stopped.log_path.read_text()
    try:
        assert derive(app, committee, [b"disk"]) == before
        with pytest.raises(
            DerivationError, match=r"only 1 of 3 needed partials: node-2 .*unavailable"
        ):
            derive(app, only(committee, {2, 4, 5}), [b"disk"])
    finally:
        cluster.start_node(cluster.nodes[1])
        cluster.start_node(cluster.nodes[3])
        cluster.wait_healthy([cluster.nodes[1], cluster.nodes[3]], timeout=60)


def test_a_stopped_member_costs_a_client_a_hedge_delay_not_the_timeout(
    cluster: Cluster, app: App
) -> None:
    """Node 2 stops (SIGSTOP) without closing its connections. A client with default settings
    keeps deriving: a few hundred ms more at worst, never its 10 s timeout; the others see
    node 2 stop answering and say DEGRADED."""
    committee = cluster.committee()
    purposes = [b"p%d" % i for i in range(30)]

    async def timed() -> list[float]:
        client = app.client(committee)
        took = []
        try:
            for purpose in purposes:
                began = time.monotonic()
                await client.derive([AppKeyRequest(app.app_id, purpose)])
                took.append(time.monotonic() - began)
        finally:
            await client.close()
        return took

    before = asyncio.run(timed())
    stopped = cluster.nodes[1]
    assert stopped.pid is not None
    os.kill(stopped.pid, signal.SIGSTOP)
    began = time.monotonic()
    try:
        during = asyncio.run(timed())
        degraded: dict[int, float] = {}
        while len(degraded) < 4 and time.monotonic() - began < 30:
            for node in cluster.nodes:
                health = node.health(timeout=1.0)
                if node is not stopped and health is not None and health["health"] == "DEGRADED":
                    degraded.setdefault(node.index, round(time.monotonic() - began, 2))
            time.sleep(0.1)
    finally:
        os.kill(stopped.pid, signal.SIGCONT)

    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    added = {
        "p50_ms": round((statistics.median(during) - statistics.median(before)) * 1000),
        "p99_ms": round((p(during, 0.99) - p(before, 0.99)) * 1000),
        "max_s": round(max(during), 3),
    }
    MEASURED["sigstop_member_added_latency"] = added
    MEASURED["sigstop_member_others_degraded_s"] = degraded
    print("\nadded latency with node 2 stopped:", added, "others DEGRADED after (s):", degraded)
    assert max(during) < 1.0, during  # generous: a hedge delay is at most 0.3 s
    # a silent member stops counting after the 3 s window (node.liveness), plus a probe
    assert len(degraded) == 4 and max(degraded.values()) <= 8.0, degraded
    cluster.wait_healthy(cluster.nodes, timeout=60)


def test_revoked_compose_hash_is_refused_from_the_next_block(cluster: Cluster) -> None:
    compose = b'{"services": {"job": {"image": "batch@sha256:11"}}}'
    app_id = cluster.register_app([compose_hash(compose)])
    revocable = App(cluster, app_id, compose=compose)
    committee = cluster.committee()
    derive(revocable, committee, [b"k"])
    receipt = cluster.app(app_id).send_remove_compose_hash(compose_hash(compose))
    cluster.wait_seen(receipt.block)
    with pytest.raises(DerivationError, match="permission_denied"):
        derive(revocable, committee, [b"k"])


APP_KEY = bytes.fromhex("02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")


def kms_roots(cluster: Cluster, app: App) -> set[bytes]:
    """The KMS root each running node signs `app`'s key with (SignAppKey, asked directly);
    each signature recovers to the root the node names."""
    quote, log = app.evidence(compute_report_data(BindingLabel.SIGN_V1, APP_KEY))
    request = kms_pb2.SignAppKeyRequest(
        evidence=common_pb2.Evidence(quote=quote, event_log=log), public_key=APP_KEY
    )
    roots = set()
    for node in cluster.nodes:
        if node.process is None or node.process.poll() is not None:
            continue
        with blocking_channel(node.endpoints.kms, node.tls_key_hash) as channel:
            stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
            reply = stub.SignAppKey(request, timeout=20)
        digest = kms_issued_digest(app.app_id, APP_KEY)
        assert recover_signer(digest, reply.signature) == reply.root_public_key
        roots.add(bytes(reply.root_public_key))
    return roots


def certified_root(app: App, committee: Committee) -> bytes:
    async def go() -> bytes:
        client = app.client(committee)
        try:
            issued = await client.issue_app_key(app.app_id, APP_KEY)
        finally:
            await client.close()
        verify_kms_root(
            committee.group_key,
            chain_id=committee.network.chain_id,
            governance=committee.network.contract,
            generation=committee.network.generation,
            public=issued.root,
            certificate=issued.certificate,
        )
        return issued.root

    return asyncio.run(go())


def test_reshare_to_six_nodes_keeps_keys_and_erases_old_shares(cluster: Cluster, app: App) -> None:
    """... and the KMS root: every member, the new one too, gathers the same one over the
    peer channel and signs with it, and the network still certifies it."""
    committee = cluster.committee()
    before = derive(app, committee, [b"disk"])
    root = certified_root(app, committee)
    assert kms_roots(cluster, app) == {root}
    old_epoch = committee.network.epoch
    sixth = cluster.create_node()
    cluster.start_node(sixth)
    # Propose only once it serves: a member that boots after the complaint window closes
    # is left without a share by the protocol's rules (correctly), and never turns healthy.
    cluster.wait_healthy([sixth], timeout=90, accept=("DOWN", "DEGRADED", "NORMAL"))
    epoch = cluster.propose(EpochKind.RESHARE, cluster.nodes, 4)
    cluster.wait_epoch(epoch, timeout=180)
    cluster.wait_healthy(cluster.nodes, timeout=120, epoch=epoch)
    after = cluster.committee()
    assert after.threshold == 4 and len(after.members) == 6
    assert after.group_key == committee.group_key
    assert derive(app, after, [b"disk"]) == before
    assert kms_roots(cluster, app) == {root} and certified_root(app, after) == root
    time.sleep(2)
    for node in cluster.nodes[:5]:
        names = sorted(p.name for p in (node.dir / "shares").iterdir())
        assert not any(
            f"-{old_epoch}." in n or n.endswith(f"_{old_epoch}.sealed") for n in names
        ), names


def test_t_plus_one_nodes_killed_after_a_reshare_leave_the_others_down_within_seconds(
    cluster: Cluster,
) -> None:
    """The committee is now 6 members with threshold 4: 3 dead leave 3, fewer than t."""
    assert len(cluster.nodes) == 6
    down = kill_and_expect_down(cluster, [cluster.nodes[0], cluster.nodes[2], cluster.nodes[5]])
    MEASURED["down_after_kill_3_of_6_t4_s"] = down
    print("\nsurvivors DOWN after killing 3 of 6 (t=4) (s):", down)
    assert len(down) == 3 and max(down.values()) <= DOWN_WITHIN, down


def test_simulator_evidence_is_refused_when_governance_disallows_it(
    cluster: Cluster, app: App
) -> None:
    governance = cluster.governance()
    receipt = governance.send_set_simulator_allowed(False)
    cluster.wait_seen(receipt.block)
    try:
        err = _raw_call(cluster, _request(app))
        assert err is not None and err.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "evidence" in str(err.details()) and "simulator" in str(err.details()).lower()
    finally:
        cluster.wait_seen(governance.send_set_simulator_allowed(True).block)


def test_a_node_that_lost_its_data_rejoins_by_reshare(cluster: Cluster, app: App) -> None:
    committee = cluster.committee()
    before = derive(app, committee, [b"disk"])
    lost = cluster.nodes[2]
    cluster.stop_node(lost)
    shutil.rmtree(lost.dir)
    replacement = cluster.create_node()
    cluster.start_node(replacement)
    # Propose only once it serves: a member that boots after the complaint window closes
    # is left without a share by the protocol's rules (correctly), and never turns healthy.
    cluster.wait_healthy([replacement], timeout=90, accept=("DOWN", "DEGRADED", "NORMAL"))
    members = [n for n in cluster.nodes if n is not lost]
    epoch = cluster.propose(EpochKind.RESHARE, members, 4)
    cluster.wait_epoch(epoch, timeout=180)
    cluster.wait_healthy(members, timeout=120, epoch=epoch)
    after = cluster.committee()
    assert after.group_key == committee.group_key
    assert replacement.endpoints.kms in {m.endpoint for m in after.members}
    assert lost.endpoints.kms not in {m.endpoint for m in after.members}
    assert derive(app, after, [b"disk"]) == before


def _refused_handshake(node: NodeProcess) -> None:
    """Connect to the node's peer port without a client certificate: gRPC refuses it."""
    host, _, port = node.endpoints.peer.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        contextlib.suppress(OSError),
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"x")
        tls.recv(10)


def test_every_line_of_every_node_log_is_json_and_health_logs_transitions_only(
    cluster: Cluster, app: App
) -> None:
    """Nodes verified simulator quotes all along and now refuse a TLS handshake; every line
    they wrote is JSON, the simulator warning comes once per process, and `health_changed`
    only when the health or its reason changed."""
    committee = cluster.committee()
    derive(app, committee, [b"last"])
    for node in cluster.nodes:
        if node.pid is not None:
            _refused_handshake(node)
    time.sleep(1.0)
    refusals = 0
    for node in cluster.nodes:
        if not node.log_path.exists():
            continue  # the node whose data directory (its log with it) was deleted
        runs: list[list[dict[str, object]]] = []
        for line in node.log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                raise AssertionError(f"{node.log_path}: not JSON: {line!r}") from None
            if event["event"] == "node_started" or not runs:
                runs.append([])
            runs[-1].append(event)
        for run in runs:
            simulator = [e for e in run if "simulator evidence" in str(e.get("message", ""))]
            assert len(simulator) <= 1, f"{node.log_path}: {len(simulator)} simulator warnings"
            changes = [(e["health"], e["reason"]) for e in run if e["event"] == "health_changed"]
            repeated = [b for a, b in itertools.pairwise(changes) if a == b]
            assert not repeated, f"{node.log_path}: health_changed without a change: {repeated}"
            refusals += sum(
                1
                for e in run
                if e["event"] == "grpc_core" and "Handshake failed" in str(e["message"])
            )
    assert refusals >= len([n for n in cluster.nodes if n.pid is not None])
    print("\nMEASURED", json.dumps(MEASURED, indent=1))
