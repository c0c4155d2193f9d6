"""Operators on separate hosts, simulated for real: each node in its own network namespace.

Every node is a real `tkms node join` process inside its own namespace (tests/testnet/netns.py)
with its own address; anvil listens on the bridge's address in the test's namespace, where the
owner's commands and the app run too. Nothing uses loopback between hosts: nodes register
their own addresses, find each other through the chain and talk over the bridge.

1. three hosts join (`tkms node join`), the owner admits each (`tkms node admit`) and proposes
   the DKG (`tkms chain propose-epoch`); an app derives its key from them;
2. a fourth host joins, and the owner's `tkms node admit --reshare` admits it and proposes the
   reshare that makes it a member: the same app key, now from four hosts;
3. the owner sets a refresh schedule; `tkms keeper` (any funded account, not the owner)
   proposes the refresh when due: every share changes, the group key does not, and the app
   derives the same key all through it.

Skipped, with the reason, only where network namespaces cannot be made (not root). CI runs as
root. One module-scoped network: about 90 s here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import tkms
from contracts import (
    Anvil,
    EpochKind,
    EpochStatus,
    GovernanceClient,
    Transactor,
    anvil_account,
    deploy,
    register_app,
)
from guest.committee import chain_fingerprint, committee_from_chain
from guest.measure import compose_hash
from node.tee import SIMULATED_OS_IMAGE
from tests.reliability.apps import COMPOSE, App, derive
from tests.testnet.netns import Hosts

pytestmark = pytest.mark.timeout(600)

TKMS = str(Path(sys.executable).parent / "tkms")
PHASES = "4,6,5,5,10"  # blocks of 0.5 s, as the testnet's
KEEPER_ACCOUNT = 9
PURPOSES = [b"wallet/eth", b"disk"]


@dataclass
class HostNode:
    host: int
    dir: Path
    log: Path
    process: subprocess.Popen[bytes]
    address: str = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"host {self.host} exited:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"host {self.host}: no {text!r}:\n{self.output()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class Network:
    hosts: Hosts
    anvil: Anvil
    governance: GovernanceClient
    root: Path
    nodes: dict[int, HostNode] = field(default_factory=dict)
    app: App | None = None
    reference: list[bytes] = field(default_factory=list)

    @property
    def rpc(self) -> str:
        return self.anvil.rpc_url

    def owner(self, *argv: str, account: int = 0) -> str:
        """An owner's `tkms` command, in this process; returns what it printed."""
        command = [*argv[:2], "--rpc", self.rpc, "--governance", self.governance.address]
        command += ["--anvil-account", str(account), *argv[2:]]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = tkms.main(command)
        assert code == 0, f"tkms {' '.join(argv)} exited {code}:\n{out.getvalue()}"
        return out.getvalue()

    def join(self, host: int) -> HostNode:
        """`tkms node join` inside host `host`, at its own address."""
        data = self.root / f"host{host}"
        log = self.root / f"host{host}.log"
        argv = [
            *(TKMS, "node", "join", "--chain", self.rpc, "--governance", self.governance.address),
            *("--dir", str(data), "--host", self.hosts.address(host)),
            *("--metrics", "0.0.0.0:9101", "--fund-from-anvil-account", str(host)),
            *("--poll", "0.3", "--log-format", "json"),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = self.hosts.popen(host, argv, log=log.open("ab"), env=env)
        node = HostNode(host=host, dir=data, log=log, process=process)
        self.nodes[host] = node
        return node

    def admit(self, node: HostNode, *extra: str) -> str:
        node.wait_for("waiting for the governance owner to allow")
        node.address = json.loads((node.dir / "registration.json").read_text())["address"]
        return self.owner(
            "node", "admit", "--registration", str(node.dir / "registration.json"), *extra
        )

    def health(self, host: int) -> dict[str, Any] | None:
        url = f"http://{self.hosts.address(host)}:9101/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return dict(json.loads(reply.read()))
        except urllib.error.HTTPError as exc:  # 503: DOWN, still an answer
            return dict(json.loads(exc.read()))
        except OSError:
            return None

    def wait_normal(self, hosts: list[int], epoch: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(hosts)
        while waiting and time.monotonic() < deadline:
            for host in list(waiting):
                health = self.health(host)
                if health and health["health"] == "NORMAL" and health["epoch"] == epoch:
                    waiting.discard(host)
            time.sleep(0.3)
        assert not waiting, {h: self.health(h) for h in waiting}

    def wait_active(self, epoch: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.governance.get_epoch(epoch).status
            if status is EpochStatus.ACTIVE:
                return
            assert status is EpochStatus.RUNNING, f"epoch {epoch} {status.name}; see {self.root}"
            time.sleep(0.5)
        raise AssertionError(f"epoch {epoch} not active after {timeout} s; see {self.root}")

    def derive(self) -> list[bytes]:
        """The app's keys, from the committee the chain names now."""
        assert self.app is not None
        committee = committee_from_chain(
            self.governance, fingerprint=chain_fingerprint(self.governance)
        )
        return [sigma.to_bytes() for sigma in derive(self.app, committee, PURPOSES)]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("hosts")
    with Hosts(4) as hosts:
        anvil = Anvil(
            block_time=0.5, host=hosts.bridge_address, log=(root / "anvil.log").open("ab")
        )
        anvil.start()
        owner = Transactor(anvil.web3(), anvil_account(0))
        deployment = deploy(owner, allow_simulator=True)
        governance = GovernanceClient(anvil.web3(), deployment.governance, owner)
        governance.send_add_os_image(SIMULATED_OS_IMAGE)
        net = Network(hosts=hosts, anvil=anvil, governance=governance, root=root)
        try:
            for host in (1, 2, 3):
                net.join(host)
            for host in (1, 2, 3):
                net.admit(net.nodes[host])
            for host in (1, 2, 3):
                net.nodes[host].wait_for("starting the node")
            out = net.owner(
                "chain", "propose-epoch", "--kind", "dkg", "--threshold", "2", "--phases", PHASES
            )
            assert "members (3, threshold 2)" in out
            net.wait_active(1)
            net.wait_normal([1, 2, 3], epoch=1)
            app = register_app(
                governance,
                compose_hashes=[compose_hash(COMPOSE)],
                allow_any_device=True,
                require_tcb_up_to_date=False,
            )
            time.sleep(2.0)  # the nodes' chain views include the app
            net.app = App(app.app_id, chain_fingerprint(governance))
            net.reference = net.derive()
            yield net
        finally:
            for node in net.nodes.values():
                node.stop()
            anvil.stop()


def test_each_node_joined_from_its_own_host_over_the_network(network: Network) -> None:
    committee = network.governance.get_epoch(1)
    for host in (1, 2, 3):
        node = network.nodes[host]
        assert network.hosts.namespace_of(node.process.pid) == network.hosts.namespace(host)
        info = network.governance.get_node(node.address)
        address = network.hosts.address(host)
        assert info.endpoint == f"kms={address}:7001,peer={address}:7002"
        assert node.address in committee.members
    # NORMAL means every member answered the others' probes over their own addresses.
    assert all((network.health(h) or {}).get("health") == "NORMAL" for h in (1, 2, 3))
    assert network.derive() == network.reference
    assert len(set(network.reference)) == len(PURPOSES)


def test_a_fourth_host_joins_and_one_owner_command_admits_it_into_the_committee(
    network: Network,
) -> None:
    node = network.join(4)
    out = network.admit(node, "--reshare", "--phases", PHASES)
    assert f"approved {node.address}" in out
    assert "proposed epoch 2: RESHARE of generation 1" in out
    assert "members (4, threshold 2)" in out
    network.wait_active(2)
    network.wait_normal([1, 2, 3, 4], epoch=2)
    assert network.governance.get_epoch(2).members[-1] == node.address
    assert network.derive() == network.reference  # the same group key, from four hosts


def test_the_keeper_refreshes_every_share_on_schedule_while_the_app_derives(
    network: Network,
) -> None:
    governance = network.governance
    before = governance.get_epoch(governance.get_running_epoch() or governance.get_epoch_count())
    assert before.status is EpochStatus.ACTIVE
    network.owner("chain", "set-refresh-schedule", "--interval", "8", "--phases", PHASES)
    results: list[list[bytes]] = []
    retried: list[str] = []
    failed: list[str] = []
    stop = threading.Event()

    def keep_deriving() -> None:
        # At the switch the chain names the new epoch a poll interval (0.5 s) before every
        # node serves it: a client whose partials are of the other epoch reads the committee
        # again a second later, as an agent would.
        while not stop.is_set():
            for attempt in range(3):
                try:
                    results.append(network.derive())
                    break
                except Exception as exc:
                    (failed if attempt == 2 else retried).append(repr(exc))
                    time.sleep(1.0)
            stop.wait(0.2)

    log = network.root / "keeper.log"
    keeper = subprocess.Popen(
        [
            *(TKMS, "keeper", "--rpc", network.rpc, "--governance", governance.address),
            *("--anvil-account", str(KEEPER_ACCOUNT), "--poll", "0.5", "--json"),
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deriver = threading.Thread(target=keep_deriving, name="app", daemon=True)
    deriver.start()
    try:
        deadline = time.monotonic() + 60
        while governance.get_epoch_count() == before.epoch and time.monotonic() < deadline:
            time.sleep(0.5)
        refresh = governance.get_epoch(governance.get_epoch_count())
        assert refresh.kind is EpochKind.REFRESH, log.read_text()
        network.wait_active(refresh.epoch)
        network.wait_normal([1, 2, 3, 4], epoch=refresh.epoch)
        time.sleep(1.0)  # a few derivations from the refreshed shares
    finally:
        stop.set()
        deriver.join(timeout=30)
        os.killpg(keeper.pid, signal.SIGTERM)
        keeper.wait(timeout=20)
        network.owner("chain", "set-refresh-schedule", "--off")

    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    proposed = [e for e in events if e["event"] == "refresh_proposed"]
    assert [e["epoch"] for e in proposed] == [refresh.epoch]
    sender = governance.w3.eth.get_transaction(proposed[0]["tx_hash"])["from"]
    assert sender == anvil_account(KEEPER_ACCOUNT).address  # not the owner
    assert (refresh.members, refresh.threshold) == (before.members, before.threshold)
    # Every share changed (new verification polynomial), the group key did not.
    after = governance.get_epoch(refresh.epoch)
    assert after.public_polynomial[0] == before.public_polynomial[0]
    assert after.pk2 == before.pk2
    assert after.public_polynomial[1:] != before.public_polynomial[1:]
    for node in network.nodes.values():
        shares = {p.name for p in (node.dir / "shares").glob("*.sealed")}
        assert shares == {f"g1-e{refresh.epoch}.sealed"}, (node.host, shares)
    # The app derived the same keys before, through and after the refresh.
    assert failed == [], failed
    assert len(results) >= 10, (len(results), retried)
    assert all(r == network.reference for r in results)
