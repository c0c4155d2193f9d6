"""The relay network against a real KMS network: anvil, three `tkms node` processes, a
following `tkms relay` beside them, a forwarding `tkms relay` in its own network namespace and
a client in a third (tests/testnet/netns.py).

* the client learns the DKG epoch's committee, then a refresh epoch's within a second of its
  activation on chain, each verified against the group key from the fingerprint;
* each member's health note, signed with its own TLS key, reaches the client's relay;
* a member removed by the owner is revoked by the network, and clients stop using it;
* a client behind a lying RPC (a member's endpoint rewritten, or the chain head pinned before
  the refresh) is caught by `guest.relay_check.cross_check`: it refuses the committee;
* a running `tkms guest agent` whose RPC starts lying at the next epoch refuses the new
  committee it shows and withholds keys (live revocation) until the RPC is honest again;
* after a rotation, inside its window, an agent that starts with `relay` set checks both
  generations' committees against their own signed manifests and serves both; one whose RPC
  lies about the retiring generation's committee refuses to start, naming the difference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from web3 import HTTPProvider, Web3

from contracts import EpochKind, EpochStatus, GovernanceClient
from guest.committee import committee_from_chain
from guest.relay_check import UnsignedCommittee, cross_check
from testnet.cluster import Cluster, NodeProcess
from tests.relay.lying_rpc import LyingRpc
from tests.testnet.netns import Hosts

ROOT = Path(__file__).parents[2]
TKMS = str(Path(sys.executable).parent / "tkms")
pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not (ROOT / ".venv-relay" / "bin" / "python").exists(),
        reason="no .venv-relay (run `make install`)",
    ),
]


@dataclass
class Setup:
    cluster: Cluster
    nodes: list[NodeProcess]
    fingerprint: bytes
    relay_url: str  # the forwarding relay, in host 1
    probe_log: Path
    processes: list[subprocess.Popen[bytes]]

    def learned(self) -> dict[int, dict[str, Any]]:
        out = {}
        for line in self.probe_log.read_text().splitlines():
            event = json.loads(line)
            if "epoch" in event:
                out[event["epoch"]] = event
        return out

    def wait_learned(self, epoch: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.learned().get(epoch)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(
            f"the client never learned epoch {epoch}: {self.probe_log.read_text()}"
        )


def _events(log: Path, kind: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == kind:
                event: dict[str, Any] = json.loads(line)
                return event
        time.sleep(0.1)
    raise AssertionError(f"no {kind} event in {log}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("relay-e2e")
    processes: list[subprocess.Popen[bytes]] = []
    with Cluster(root) as c, Hosts(2) as hosts:
        try:
            c.start_chain()
            nodes = c.create_nodes(3, start=True)
            c.wait_healthy(nodes, timeout=90, accept=("DOWN", "DEGRADED", "NORMAL"))
            epoch = c.propose(EpochKind.DKG, nodes, 2)
            c.wait_epoch(epoch, timeout=240)
            c.wait_healthy(nodes, timeout=60, epoch=epoch)
            fingerprint = c.network_fingerprint()
            assert c.deployment is not None
            follower_log = root / "relay-follow.log"
            processes.append(
                subprocess.Popen(
                    [
                        TKMS,
                        "relay",
                        "--fingerprint",
                        fingerprint.hex(),
                        "--rpc",
                        c.rpc_url,
                        "--governance",
                        c.deployment.governance,
                        "--listen",
                        f"/ip4/{hosts.bridge_address}/tcp/0",
                    ],
                    stdout=follower_log.open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            follower = _events(follower_log, "listening")["addrs"][0]
            address = hosts.address(1)
            forward_log = root / "relay-forward.log"
            processes.append(
                hosts.popen(
                    1,
                    [
                        TKMS,
                        "relay",
                        "--fingerprint",
                        fingerprint.hex(),
                        "--peer",
                        follower,
                        "--listen",
                        f"/ip4/{address}/tcp/4001",
                        "--http",
                        f"{address}:8080",
                    ],
                    log=forward_log.open("wb"),
                )
            )
            _events(forward_log, "connected")
            probe_log = root / "probe.log"
            processes.append(
                subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        hosts.namespace(2),
                        sys.executable,
                        "-m",
                        "tests.relay.client_probe",
                        f"http://{address}:8080",
                        fingerprint.hex(),
                    ],
                    stdout=probe_log.open("wb"),
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                )
            )
            yield Setup(c, nodes, fingerprint, f"http://{address}:8080", probe_log, processes)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _activation(governance: GovernanceClient, epoch: int, timeout: float = 240.0) -> float:
    """Wall-clock time at which `epoch` is first seen active on chain (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = governance.get_epoch(epoch).status
        if status is EpochStatus.ACTIVE:
            return time.time()
        assert status is not EpochStatus.FAILED, f"epoch {epoch} failed"
        time.sleep(0.02)
    raise AssertionError(f"epoch {epoch} not active after {timeout} s")


def test_a_client_in_another_namespace_learns_each_epoch_within_a_second(setup: Setup) -> None:
    c = setup.cluster
    first = c.committee().network.epoch
    learned = setup.wait_learned(first, timeout=30)
    endpoints = [m.endpoint for m in c.committee().members]
    assert learned["members"] == endpoints
    governance = c.governance()
    block_before = int(governance.w3.eth.block_number)
    epoch = c.propose(EpochKind.REFRESH, setup.nodes, 2)
    active_at = _activation(governance, epoch)
    learned = setup.wait_learned(epoch, timeout=10)
    delay = learned["at"] - active_at
    print(f"epoch {epoch}: learned {delay * 1000:.0f} ms after it was seen active on chain")
    assert delay < 1.0
    SHARED["stale_block"] = block_before
    SHARED["refresh"] = epoch


SHARED: dict[str, int] = {}


def test_every_members_signed_health_reaches_the_far_relay(setup: Setup) -> None:
    from guest.relay_check import fetch_envelope, verified_manifest
    from mpc.nodehealth import verify_note

    manifest = verified_manifest(fetch_envelope(setup.relay_url), setup.fingerprint)
    members = {m.address for m in manifest.members}
    deadline = time.monotonic() + 20  # the follower asks every 5 s
    while True:
        with urllib.request.urlopen(f"{setup.relay_url}/v1/health", timeout=5) as reply:
            doc = json.loads(reply.read())
        if doc["epoch"] == manifest.epoch and len(doc["nodes"]) == len(members):
            break
        assert time.monotonic() < deadline, f"health notes at the far relay: {doc}"
        time.sleep(0.2)
    notes = [verify_note(bytes.fromhex(n["envelope"]), manifest) for n in doc["nodes"]]
    assert {n.address for n in notes} == members
    assert all(n.health_name == "NORMAL" and n.epoch == manifest.epoch for n in notes)


def test_a_client_behind_a_lying_rpc_refuses_the_committee(setup: Setup) -> None:
    assert "refresh" in SHARED, "needs the refresh epoch of the test before"
    c = setup.cluster
    assert c.deployment is not None
    honest = committee_from_chain(c.governance(), fingerprint=setup.fingerprint)
    signed = cross_check(honest, setup.relay_url, setup.fingerprint, wait=2.0)
    assert signed.epoch == SHARED["refresh"]

    lying = LyingRpc(c.rpc_url)
    try:
        governance = GovernanceClient(Web3(HTTPProvider(lying.url)), c.deployment.governance)
        real = setup.nodes[0].endpoints.kms
        host, _, port = real.rpartition(":")
        fake = f"{host}:{int(port) + 1 if port[-1] != '9' else int(port) - 1}"
        lying.replace = {real.encode(): fake.encode()}
        redirected = committee_from_chain(governance, fingerprint=setup.fingerprint)
        assert redirected.members[0].endpoint == fake  # PK2 still chains: only this check sees it
        with pytest.raises(UnsignedCommittee, match=f"member 1: .* at {fake}.*RPC is lying"):
            cross_check(redirected, setup.relay_url, setup.fingerprint, wait=2.0)

        lying.replace = {}
        lying.pin_block = SHARED["stale_block"]
        stale = committee_from_chain(governance, fingerprint=setup.fingerprint)
        assert stale.network.epoch < SHARED["refresh"]
        with pytest.raises(UnsignedCommittee, match="network signed epoch .* stale or lying"):
            cross_check(stale, setup.relay_url, setup.fingerprint, wait=2.0)
    finally:
        lying.close()


def test_a_running_agent_refuses_the_committee_a_lying_rpc_shows_after_a_refresh(
    setup: Setup, tmp_path: Path
) -> None:
    """Issue 26 item 3. An agent with `relay` and live revocation runs behind an RPC that tells
    the truth at start and lies from the next epoch on (member 1's endpoint moved): after the
    refresh its confirmations need the new committee, and it refuses the lying one and
    withholds keys rather than send its evidence there; once the RPC is honest again the
    signed committee is adopted and the same keys are served."""
    from guest.measure import compose_hash
    from testnet.cluster import OWNER_ACCOUNT
    from tests.guest.test_agent_network import COMPOSE, AgentProcess, post, wait_for

    c = setup.cluster
    assert c.deployment is not None
    app_id = c.register_app([compose_hash(COMPOSE)])
    opt_in = [TKMS, "app", "set-live-revocation", "--rpc", c.rpc_url, "--app-id", app_id]
    opt_in += ["--blocks", "4", "--anvil-account", str(OWNER_ACCOUNT)]
    done = subprocess.run(opt_in, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lying = LyingRpc(c.rpc_url)
    (tmp_path / "compose.json").write_bytes(COMPOSE)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'rpc = "{lying.url}"\ngovernance = "{c.deployment.governance}"\n'
        f'network_fingerprint = "{setup.fingerprint.hex()}"\napp_id = "{app_id}"\n'
        f'compose = "compose.json"\nrelay = "{setup.relay_url}"\nrelay_wait = 2.0\n'
        "chain_poll_seconds = 0.25\nchain_stale_seconds = 10\n"
    )
    try:
        with AgentProcess(config) as agent:
            key = post(agent, "GetKey", path="db").json()["key"]
            real = setup.nodes[0].endpoints.kms
            host, _, port = real.rpartition(":")
            fake = f"{host}:{int(port) + 1 if port[-1] != '9' else int(port) - 1}"
            # The RPC lies from now on; the agent has no reason to read its committee again
            # until the refresh makes its requests to the old epoch fail.
            lying.replace = {real.encode(): fake.encode()}
            epoch = c.propose(EpochKind.REFRESH, setup.nodes, 2)
            _activation(c.governance(), epoch)
            refused = wait_for(
                "the agent withholds keys",
                lambda: post(agent, "GetKey", path="db").status_code != 200,
            )
            print(f"lying RPC after the refresh: keys withheld {refused:.1f} s after activation")
            reply = post(agent, "GetKey", path="db")
            assert reply.status_code == 503
            error = reply.json()["error"]
            assert "keys withheld (live revocation" in error
            assert "RPC is lying" in error and fake in error
            lying.replace = {}
            wait_for(
                "the agent serves again",
                lambda: post(agent, "GetKey", path="db").status_code == 200,
                timeout=60,
            )
            assert post(agent, "GetKey", path="db").json()["key"] == key
            output = agent.stop()
    finally:
        lying.close()
    assert f"refusing generation 1's committee from the RPC: epoch {epoch}'s committee" in output
    assert f"at {fake}" in output
    assert f"generation 1's committee of epoch {epoch} matches the network-signed" in output


def test_a_removed_member_is_revoked_through_the_relays(setup: Setup) -> None:
    """The owner removes node 3 (still a member of the epoch): within seconds the far relay
    holds the network's revocation notice, and a client drops member 3."""
    from guest.relay_check import fetch_revocations, without_revoked
    from mpc.revocation import verify_notice

    c = setup.cluster
    committee = committee_from_chain(c.governance(), fingerprint=setup.fingerprint)
    signed = cross_check(committee, setup.relay_url, setup.fingerprint, wait=2.0)
    victim = setup.nodes[2]
    start = time.monotonic()
    c.governance().send_remove_node(victim.address)
    while True:
        notices = fetch_revocations(setup.relay_url)
        if notices:
            break
        assert time.monotonic() - start < 30, "no revocation reached the far relay"
        time.sleep(0.1)
    print(f"revocation at the far relay {time.monotonic() - start:.1f} s after the removal tx")
    subject = verify_notice(notices[0], signed).subject
    assert "0x" + subject.hex() == victim.address.lower()
    kept, dropped = without_revoked(committee, notices, signed)
    assert [m.address for m in committee.members if m.index in dropped] == [subject]
    assert len(kept.members) == 2 and kept.threshold == 2


# Slow (runs in CI, TKMS_SLOW=1): a rotation DKG of ~25 s; the default suite checks the same
# rules with real relays (tests/relay/test_relay_network.py) and the agent's side against a
# relay in process (tests/guest/test_watch_relay.py).
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TKMS_SLOW") != "1", reason="slow: set TKMS_SLOW=1")
def test_an_agent_started_inside_a_rotation_window_checks_both_generations(
    setup: Setup, tmp_path: Path
) -> None:
    """Issue 26, the relay's known limit: a rotation to generation 2 (members 1 and 2; the
    retirement window, 7200 blocks, stays open). An agent that starts now, `relay` set, checks
    generation 2's committee and the retiring generation 1's (members 1, 2, 3) each against
    its own generation's newest signed manifest, and serves both generations. Behind an RPC
    that moves member 3 of generation 1 only (it is not in generation 2) it refuses to start."""
    from guest.measure import compose_hash
    from guest.relay_check import fetch_signed
    from testnet.cli import rotate
    from tests.guest.test_agent_network import COMPOSE, AgentProcess, get_key_reply

    c = setup.cluster
    assert c.deployment is not None
    retiring = committee_from_chain(c.governance(), fingerprint=setup.fingerprint)
    assert retiring.network.generation == 1 and len(retiring.members) == 3
    started = time.monotonic()
    epoch, generation, _ = rotate(c, setup.nodes[:2], 2)
    print(
        f"rotation to generation {generation} (epoch {epoch}): {time.monotonic() - started:.1f} s"
    )
    assert generation == 2
    # The far relay serves both generations' newest manifests.
    new = fetch_signed(setup.relay_url, setup.fingerprint, generation=2, after=epoch - 1, wait=30)
    old = fetch_signed(setup.relay_url, setup.fingerprint, generation=1, after=0, wait=0)
    assert (new.epoch, old.epoch) == (epoch, retiring.network.epoch)
    app_id = c.register_app([compose_hash(COMPOSE)])
    (tmp_path / "compose.json").write_bytes(COMPOSE)
    governance = c.deployment.governance

    def config(rpc: str) -> Path:
        path = tmp_path / "agent.toml"
        path.write_text(
            f'rpc = "{rpc}"\ngovernance = "{governance}"\n'
            f'network_fingerprint = "{setup.fingerprint.hex()}"\napp_id = "{app_id}"\n'
            f'compose = "compose.json"\nrelay = "{setup.relay_url}"\nrelay_wait = 2.0\n'
        )
        return path

    with AgentProcess(config(c.rpc_url)) as agent:
        default = get_key_reply(agent, "db", "p")
        newer = get_key_reply(agent, "db", "p", generation=2)
        output = agent.stop()
    assert default["tkms"]["generation"] == 1  # the window is open: the retiring one
    assert newer["tkms"]["generation"] == 2 and newer["key"] != default["key"]
    for g, e in ((2, epoch), (1, retiring.network.epoch)):
        assert f"generation {g}'s committee of epoch {e} matches the network-signed" in output

    lying = LyingRpc(c.rpc_url)
    try:
        real = setup.nodes[2].endpoints.kms
        host, _, port = real.rpartition(":")
        fake = f"{host}:{int(port) + 1 if port[-1] != '9' else int(port) - 1}"
        lying.replace = {real.encode(): fake.encode()}
        with pytest.raises(RuntimeError) as refused:
            AgentProcess(config(lying.url))
    finally:
        lying.close()
    error = str(refused.value)
    assert (
        f"refusing the retiring generation's committee: epoch {retiring.network.epoch}'s" in error
    )
    assert "member 3: " in error and f"at {fake}" in error and "RPC is lying" in error


def test_nothing_forged_reached_the_relays(setup: Setup) -> None:
    """Every message either relay saw verified: the honest network publishes no bad bytes."""
    logs = [setup.cluster.root / name for name in ("relay-follow.log", "relay-forward.log")]
    for log in logs:
        dropped = [line for line in log.read_text().splitlines() if '"dropped"' in line]
        assert not dropped, f"{log.name}: {dropped}"
    assert threading.active_count() >= 1
