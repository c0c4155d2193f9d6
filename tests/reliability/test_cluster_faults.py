"""Scenarios 1, 4 and 5 on one network of real processes: anvil, the contracts and 5 nodes.

One cluster per module (the tests run in order and share it). Node 5 is the Byzantine test
build (`tests.reliability.byzantine_node`: bad deals it never justifies, wrong partials);
every node reaches the chain through a `TcpProxy`, so the test can take the RPC away.

1. Byzantine node: the honest nodes complain, find the complaints unanswered and leave it out
   of QUAL (the group key is the sum of the other four deals), name it in their logs and
   metrics; its wrong partials are caught by the client, which names it; keys still flow.
2. Crash n-t = 2 nodes (SIGKILL, the Byzantine one and an honest one) under sustained load:
   no request fails, every key is the expected one; both come back by themselves.
3. Chain RPC cut, then restored: every node fails closed (UNAVAILABLE, "stale") once its view
   is older than the bound, and serves again by itself after.
4. The head stalls (anvil stops mining): the same, without any RPC error.
5. The chain's RPC hangs (anvil stopped with SIGSTOP: connections open, no answers): every
   node logs `chain_unreachable` within seconds, /health and the testnet status answer at
   once throughout, and `chain_reachable` is logged as soon as anvil runs again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from contracts import EpochKind
from guest.kms_client import AppKeyRequest, DerivationError
from guest.measure import compose_hash
from mpc import G1, KeyRequest, is_consistent_with_group_key
from testnet.cluster import Cluster, NodeProcess
from tests.reliability.apps import COMPOSE, App, derive, only, raw_derive
from tests.reliability.load import LoadGenerator
from tests.reliability.tcpproxy import TcpProxy

pytestmark = pytest.mark.timeout(600)

#: Seconds of derivation load around the crash (TKMS_SLOW=1: a longer run).
LOAD_SECONDS = 60.0 if os.environ.get("TKMS_SLOW") == "1" else 9.0
SLOW_DELAY = 5.0
MAX_HEAD_AGE = 6.0
#: Keys, Deal, Complain, Justify, Confirm in 1 s blocks: roomier than the cluster default
#: so honest nodes on 2 busy cores are not late (the Byzantine one must be the only culprit).
PHASES = (4, 8, 6, 6, 8)  # seconds; short so the stale-view tests are quick
BYZANTINE = ("bad-deals", "wrong-partials")
BYZANTINE_FAULTS = {"BAD_SHARE", "UNANSWERED_COMPLAINT"}
LATENESS = {"MISSING_DEAL", "MISSING_KEY"}
PURPOSES = [f"key-{i}".encode() for i in range(6)]
REPO = Path(__file__).resolve().parents[2]
#: Numbers the tests measured, printed at the end of the module (docs/reliability-faults.md).
MEASURED: dict[str, object] = {}


@dataclass
class Net:
    cluster: Cluster
    proxy: TcpProxy
    epoch: int
    app: App

    @property
    def nodes(self) -> list[NodeProcess]:
        return self.cluster.nodes


def start_byzantine(
    node: NodeProcess, behaviours: tuple[str, ...] = BYZANTINE, delay: float = 0.0
) -> None:
    """Start `node` as the Byzantine test build instead of `tkms node run`."""
    chosen = [a for b in behaviours for a in ("--behaviour", b)]
    args = ["--config", str(node.config_path), *chosen, "--delay", str(delay)]
    node.process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.byzantine_node", *args],
        stdout=node.log_path.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=REPO,
        start_new_session=True,
    )


def start(cluster: Cluster, node: NodeProcess) -> None:
    if node is cluster.nodes[4]:
        start_byzantine(node)
    else:
        cluster.start_node(node)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("faults")
    with Cluster(root, max_head_age=MAX_HEAD_AGE, phases=PHASES) as c:
        c.start_chain()
        host, _, port = c.rpc_url.removeprefix("http://").rpartition(":")
        proxy = TcpProxy((host, int(port))).start()
        try:
            nodes = c.create_nodes(5)
            for node in nodes:  # every node reaches the chain through the proxy
                text = node.config_path.read_text().replace(c.rpc_url, proxy.url)
                node.config_path.write_text(text)
                start(c, node)
            c.wait_healthy(nodes, timeout=120, accept=("DOWN", "DEGRADED", "NORMAL"))
            epoch = c.propose(EpochKind.DKG, nodes, 3)
            c.wait_epoch(epoch, timeout=180)
            c.wait_healthy(nodes, timeout=90, epoch=epoch)
            assert c.deployment is not None
            app = App(c.register_app([compose_hash(COMPOSE)]), c.network_fingerprint())
            yield Net(c, proxy, epoch, app)
        finally:
            proxy.stop()
            print("\nMEASURED", json.dumps(MEASURED, indent=1))


def log_events(node: NodeProcess, event: str) -> list[dict[str, object]]:
    found = []
    for line in node.log_path.read_text().splitlines():
        if f'"event": "{event}"' in line:
            found.append(json.loads(line))
    return found


def metrics(node: NodeProcess) -> str:
    url = f"http://127.0.0.1:{node.status_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def counter(node: NodeProcess, name: str, key: str) -> dict[tuple[str, str], float]:
    """The Prometheus counter `name` of `node` by (kind, `key` label)."""
    counts = {}
    for line in metrics(node).splitlines():
        if line.startswith(name + "{"):
            labels, value = line.removeprefix(name).rsplit(" ", 1)
            fields = dict(f.split("=") for f in labels.strip("{}").split(","))
            counts[(fields["kind"].strip('"'), fields[key].strip('"'))] = float(value)
    return counts


def test_the_byzantine_dealer_is_excluded_and_named_in_logs_and_metrics(net: Net) -> None:
    governance = net.cluster.governance()
    byzantine, honest = net.nodes[4], net.nodes[:4]
    complaints = governance.get_complaints(net.epoch)
    against = {c.accuser for c in complaints if c.accused == byzantine.address}
    assert against == {n.address for n in honest}
    assert not any(c.justified for c in complaints if c.accused == byzantine.address)
    # Excluded from QUAL: its deal is on chain, yet the group key is the sum of the honest
    # deals only (of those mined in time: on a loaded machine one may miss the Deal phase).
    deals = {n.index: governance.get_deal(net.epoch, n.address) for n in net.nodes}
    assert deals[5].submitted_at != 0
    honest_sum = sum(
        (
            G1.from_bytes(deals[n.index].commitments[0])
            for n in honest
            if deals[n.index].commitments
        ),
        G1.identity(),
    )
    group_key = G1.from_bytes(governance.get_epoch(net.epoch).public_polynomial[0])
    assert group_key == honest_sum
    for node in honest:
        kinds = {str(e["kind"]) for e in log_events(node, "dkg_fault") if e["member"] == 5}
        assert kinds == BYZANTINE_FAULTS, (node.index, kinds)
        counted = counter(node, "tkms_protocol_faults_total", "member")
        assert {k for k, m in counted if m == "5"} == kinds, counted
        by_peer = counter(node, "tkms_peer_faults_total", "peer")
        blamed = {k for k, p in by_peer if p.lower() == byzantine.address.lower()}
        assert blamed == kinds, by_peer
        for e in log_events(node, "dkg_fault"):  # anyone else is at most late, never Byzantine
            if str(e["peer"]).lower() != byzantine.address.lower():
                assert e["kind"] in LATENESS, e
                assert deals[int(str(e["member"]))].submitted_at == 0, e


def test_the_network_keeps_serving_and_the_client_names_the_wrong_partials(net: Net) -> None:
    committee = net.cluster.committee()
    sigmas = derive(net.app, committee, PURPOSES)
    for purpose, sigma in zip(PURPOSES, sigmas, strict=True):
        request = KeyRequest.app_key(net.app.app_id, purpose)
        assert is_consistent_with_group_key(sigma, request, committee.group_key)
    with pytest.raises(
        DerivationError, match=r"only 2 of 3 needed partials: node-5 .*proof invalid"
    ):
        derive(net.app, only(committee, {1, 2, 5}), [b"key-0"])


def test_crashing_two_nodes_under_load_fails_no_request(net: Net) -> None:
    committee = net.cluster.committee()
    expected = dict(zip(PURPOSES, derive(net.app, committee, PURPOSES), strict=True))
    load = LoadGenerator(net.app, committee, expected, workers=4).start()
    victims = [net.nodes[3], net.nodes[4]]
    try:
        time.sleep(LOAD_SECONDS / 3)
        crash = time.monotonic()
        for node in victims:
            net.cluster.stop_node(node, kill=True)
        time.sleep(LOAD_SECONDS * 2 / 3)
    finally:
        report = load.stop()
    after = report.between(crash, float("inf"))
    MEASURED["crash"] = {
        "seconds": LOAD_SECONDS,
        "requests": len(report.outcomes),
        "after_crash": len(after),
        "failed": len(report.failed),
        "wrong": len(report.wrong),
        "p50_ms": round(report.p50() * 1000, 1),
    }
    assert not report.failed, report.failed[:3]
    assert not report.wrong
    assert len(report.between(0, crash)) >= 10 and len(after) >= 10, MEASURED["crash"]
    restarted = time.monotonic()
    for node in victims:
        start(net.cluster, node)
    net.cluster.wait_healthy(victims, timeout=90, epoch=net.epoch)
    MEASURED["crash"]["restart_to_healthy_s"] = round(time.monotonic() - restarted, 1)  # type: ignore[index]
    assert derive(net.app, only(committee, {2, 3, 4}), PURPOSES[:1]) == [expected[PURPOSES[0]]]


def assert_goes_down(node: NodeProcess) -> None:
    """The health signal says DOWN for the stale view too (it is recomputed every second)."""
    deadline = time.monotonic() + 3.0
    while True:
        health = node.health()
        assert health is not None, f"node {node.index}: no health answer"
        if health["health"] == "DOWN":
            assert "stale" in str(health["reason"]), health
            return
        assert time.monotonic() < deadline, f"node {node.index}: {health}"
        time.sleep(0.2)


def wait_all_fail_closed(net: Net, timeout: float) -> tuple[float, float]:
    """Until every honest node refuses with UNAVAILABLE for a stale view and says DOWN.

    Before its view is stale a node may still answer (from its approval cache) or refuse
    with UNAVAILABLE because it cannot ask governance: both are fine, a key from a stale
    view is not. Returns the seconds to the first refusal and to the last node going stale.
    """
    began = time.monotonic()
    first = float("nan")
    waiting = set(range(4))
    while waiting and time.monotonic() - began < timeout:
        for i in sorted(waiting):
            err = raw_derive(net.app, net.nodes[i])
            if err is None:
                continue
            assert isinstance(err, grpc.RpcError), f"node {i + 1}: {err}"
            assert err.code() is grpc.StatusCode.UNAVAILABLE, f"node {i + 1}: {err}"
            if first != first:
                first = time.monotonic() - began
            if "stale" not in str(err.details()):
                assert "cannot ask governance" in str(err.details()), err.details()
                continue
            assert_goes_down(net.nodes[i])
            waiting.discard(i)
        time.sleep(0.5)
    assert not waiting, f"nodes {[i + 1 for i in waiting]} still serve on a stale view"
    return first, time.monotonic() - began


def test_a_slow_node_costs_the_client_nothing(net: Net) -> None:
    """Node 5 answers every DerivePartial 5 s late: clients take the first t good partials."""
    byzantine = net.nodes[4]
    net.cluster.stop_node(byzantine, kill=True)
    start_byzantine(byzantine, ("slow-partials",), delay=SLOW_DELAY)
    net.cluster.wait_healthy([byzantine], timeout=90, epoch=net.epoch)
    committee = net.cluster.committee()
    expected = derive(net.app, only(committee, {1, 2, 3}), PURPOSES[:2])

    async def timed() -> list[float]:
        client = net.app.client(committee)
        took = []
        try:
            for _ in range(10):
                began = time.monotonic()
                keys = [AppKeyRequest(net.app.app_id, p) for p in PURPOSES[:2]]
                result = await client.derive(keys)
                took.append(time.monotonic() - began)
                assert result.sigmas == expected and 5 not in result.answered
        finally:
            await client.close()
        return took

    took = asyncio.run(timed())
    MEASURED["slow_node"] = {"delay_s": SLOW_DELAY, "max_request_s": round(max(took), 2)}
    assert max(took) < SLOW_DELAY / 2, took


def wait_all_serving(net: Net, timeout: float) -> float:
    began = time.monotonic()
    waiting = set(range(4))
    while waiting and time.monotonic() - began < timeout:
        for i in sorted(waiting):
            if raw_derive(net.app, net.nodes[i]) is None:
                waiting.discard(i)
        time.sleep(0.3)
    assert not waiting, f"nodes {[i + 1 for i in waiting]} did not recover"
    return time.monotonic() - began


def test_chain_rpc_outage_fails_closed_and_recovers(net: Net) -> None:
    wait_all_serving(net, timeout=60)
    net.proxy.cut()
    try:
        first, closed = wait_all_fail_closed(net, timeout=MAX_HEAD_AGE + 30)
    finally:
        net.proxy.restore()
    recovered = wait_all_serving(net, timeout=60)
    MEASURED["rpc_outage"] = {
        "first_refusal_s": round(first, 1),
        "all_stale_s": round(closed, 1),
        "recovered_s": round(recovered, 1),
    }
    assert closed >= MAX_HEAD_AGE - 2  # not before the view is actually stale
    committee = net.cluster.committee()
    assert len(derive(net.app, committee, PURPOSES[:1])) == 1


def test_a_stalled_head_fails_closed_and_recovers(net: Net) -> None:
    w3 = net.cluster.w3()
    wait_all_serving(net, timeout=60)
    w3.provider.make_request("evm_setIntervalMining", [0])  # type: ignore[arg-type]
    try:
        first, closed = wait_all_fail_closed(net, timeout=MAX_HEAD_AGE + 30)
    finally:
        w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]
    recovered = wait_all_serving(net, timeout=60)
    MEASURED["head_stall"] = {
        "first_refusal_s": round(first, 1),
        "all_stale_s": round(closed, 1),
        "recovered_s": round(recovered, 1),
    }
    assert closed >= MAX_HEAD_AGE - 2


def test_a_hung_chain_rpc_is_logged_within_seconds_and_status_answers_throughout(
    net: Net,
) -> None:
    from testnet.cli import status_document

    honest = net.nodes[:4]
    wait_all_serving(net, timeout=60)
    offsets = {n.index: n.log_path.stat().st_size for n in honest}

    def logged(node: NodeProcess, event: str) -> bool:
        with node.log_path.open() as f:
            f.seek(offsets[node.index])
            return any(f'"event": "{event}"' in line for line in f)

    pid = net.cluster.anvil_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    unreachable: dict[int, float] = {}
    slowest_health = slowest_status = 0.0
    try:
        while time.monotonic() - stopped < 8.0:
            for node in honest:
                if node.index not in unreachable and logged(node, "chain_unreachable"):
                    unreachable[node.index] = round(time.monotonic() - stopped, 2)
                began = time.monotonic()
                assert node.health(timeout=2.0) is not None, f"node {node.index}: no /health"
                slowest_health = max(slowest_health, time.monotonic() - began)
            began = time.monotonic()
            status = status_document(net.cluster)
            slowest_status = max(slowest_status, time.monotonic() - began)
            assert status["chain"] == "unreachable", status
            assert all(n["health"] in ("NORMAL", "DEGRADED", "DOWN") for n in status["nodes"])
            time.sleep(0.2)
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    reachable: dict[int, float] = {}
    while len(reachable) < len(honest) and time.monotonic() - resumed < 20:
        for node in honest:
            if node.index not in reachable and logged(node, "chain_reachable"):
                reachable[node.index] = round(time.monotonic() - resumed, 2)
        time.sleep(0.1)
    MEASURED["rpc_hang"] = {
        "chain_unreachable_logged_s": unreachable,
        "chain_reachable_logged_s": reachable,
        "slowest_health_s": round(slowest_health, 2),
        "slowest_status_s": round(slowest_status, 2),
    }
    print("\nhung RPC:", MEASURED["rpc_hang"])
    # one 2 s RPC timeout (or the watcher's 2 s stall bound) plus a 0.5 s poll, with slack
    assert len(unreachable) == 4 and max(unreachable.values()) <= 4.0, unreachable
    assert len(reachable) == 4 and max(reachable.values()) <= 3.0, reachable
    assert slowest_health < 1.0 and slowest_status < 2.0
    wait_all_serving(net, timeout=60)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TKMS_SLOW") != "1", reason="slow: set TKMS_SLOW=1")
def test_a_dealer_that_deals_late_is_left_out_and_nothing_is_revealed(net: Net) -> None:
    """Node 5 holds its deal past the Deal phase: the chain refuses it, the others record it
    as MISSING_DEAL and leave it out of QUAL; nobody complains (before the fix, late share
    deliveries made every recipient complain and the dealer publish their shares)."""
    governance = net.cluster.governance()
    before = net.cluster.committee()
    keys = derive(net.app, before, PURPOSES[:2])
    late = net.nodes[4]
    net.cluster.stop_node(late, kill=True)
    start_byzantine(late, ("late-deals",), delay=sum(PHASES[:2]) + 4.0)
    net.cluster.wait_healthy([late], timeout=90, epoch=net.epoch)
    epoch = net.cluster.propose(EpochKind.RESHARE, net.nodes, 3)
    net.cluster.wait_epoch(epoch, timeout=240)
    net.cluster.wait_healthy(net.nodes[:4], timeout=120, epoch=epoch)
    assert governance.get_complaints(epoch) == []
    assert governance.get_deal(epoch, late.address).submitted_at == 0
    after = net.cluster.committee()
    assert after.group_key == before.group_key
    assert derive(net.app, after, PURPOSES[:2]) == keys
    for node in net.nodes[:4]:
        named = {
            (str(e["peer"]).lower(), e["kind"])
            for e in log_events(node, "dkg_fault")
            if e["epoch"] == epoch
        }
        assert named == {(late.address.lower(), "MISSING_DEAL")}, (node.index, named)
