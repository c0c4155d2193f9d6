"""Relays as real processes on separate hosts (a network namespace each, tests/testnet/netns.py)
gossiping real threshold-signed envelopes (tests/relay/signing.py):

    A (publishes) ── B ── C (the client asks C over the bridge)
      └────────── D ──┘

* a new epoch reaches C's client, two hops away, within a second;
* a forged manifest and a stale one are dropped at the first hop: no other relay sees them;
* with B dead, the next epoch still reaches C, through D;
* a member's health note reaches C; one signed with another key than the member's pin stops
  at A;
* a rogue peer that validates nothing publishes forged and stale messages: its first honest
  neighbour drops them;
* a rotation window: the retiring generation's manifest (an older epoch number) travels and is
  served beside the newest generation's, asked for with `generation=`.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from mpc.manifest import verify_envelope
from tests.relay.signing import FORGER, NETWORK, health_envelope
from tests.testnet.netns import Hosts

ROOT = Path(__file__).parents[2]
RELAY_PYTHON = ROOT / ".venv-relay" / "bin" / "python"
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not RELAY_PYTHON.exists(), reason="no .venv-relay (run `make install`)"),
]
NAMES = {"A": 1, "B": 2, "D": 3, "C": 4}
ROGUE_HOST = 5


class RelayProcess:
    def __init__(self, hosts: Hosts, name: str, peers: list[str], log_dir: Path) -> None:
        self.name, self.host = name, NAMES[name]
        address = hosts.address(self.host)
        self.http = f"http://{address}:8080"
        self.log_path = log_dir / f"relay-{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        argv = [str(RELAY_PYTHON), "-m", "relay", "--fingerprint", NETWORK.fingerprint.hex()]
        argv += ["--listen", f"/ip4/{address}/tcp/4001", "--http", f"{address}:8080"]
        for peer in peers:
            argv += ["--peer", peer]
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", hosts.namespace(self.host), *argv],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            start_new_session=True,
        )
        self.addr = self._wait_event("listening")["addrs"][0]

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def _wait_event(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event["event"] == kind:
                    return event
            if self.process.poll() is not None:
                raise AssertionError(f"relay {self.name} exited:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"relay {self.name}: no {kind} event:\n{self.log_path.read_text()}")

    def publish(self, envelope: bytes, verb: bytes = b"publish") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(verb + b" " + envelope.hex().encode() + b"\n")
        self.process.stdin.flush()

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.http}/v1/status", timeout=5) as reply:
            result: dict[str, Any] = json.loads(reply.read())
            return result

    def wait_manifest(self, after: int, wait: float, generation: int = 0) -> bytes:
        url = f"{self.http}/v1/manifest?after={after}&wait={wait}"
        if generation:
            url += f"&generation={generation}"
        with urllib.request.urlopen(url, timeout=wait + 5) as reply:
            body: bytes = reply.read()
            if body:
                manifest = verify_envelope(body, NETWORK.fingerprint)
                assert reply.headers["X-Tkms-Generation"] == str(manifest.generation)
                assert reply.headers["X-Tkms-Epoch"] == str(manifest.epoch)
            return body

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RelayProcess]]:
    log_dir = tmp_path_factory.mktemp("relays")
    with Hosts(len(NAMES) + 1) as hosts:
        started: dict[str, RelayProcess] = {}
        try:
            started["A"] = RelayProcess(hosts, "A", [], log_dir)
            a = started["A"].addr
            started["B"] = RelayProcess(hosts, "B", [a], log_dir)
            started["D"] = RelayProcess(hosts, "D", [a], log_dir)
            started["C"] = RelayProcess(hosts, "C", [started["B"].addr, started["D"].addr], log_dir)
            for relay in started.values():
                if relay.name != "A":
                    relay._wait_event("connected")
            time.sleep(2.5)  # two gossipsub heartbeats: the mesh is grafted
            HOSTS.append(hosts)
            yield started
        finally:
            for relay in started.values():
                relay.stop()


HOSTS: list[Hosts] = []


def _deliver(relays: dict[str, RelayProcess], epoch: int, after: int) -> float:
    """Publish `epoch` at A; seconds until C's client holds it, verified."""
    envelope = NETWORK.envelope(NETWORK.manifest(epoch))
    start = time.monotonic()
    relays["A"].publish(envelope)
    got = relays["C"].wait_manifest(after, 10.0)
    elapsed = time.monotonic() - start
    assert got == envelope
    assert verify_envelope(got, NETWORK.fingerprint).epoch == epoch
    return elapsed


def test_a_new_epoch_reaches_a_client_two_hops_away_within_a_second(
    relays: dict[str, RelayProcess],
) -> None:
    elapsed = _deliver(relays, 5, 0)
    print(f"epoch 5: A -> C in {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0
    elapsed = _deliver(relays, 6, 5)
    print(f"epoch 6: A -> C in {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0
    assert {r.status()["epoch"] for r in relays.values()} == {6}


def test_forged_and_stale_manifests_stop_at_the_first_hop(
    relays: dict[str, RelayProcess],
) -> None:
    newest = relays["C"].status()["epoch"]
    relays["A"].publish(NETWORK.envelope(NETWORK.manifest(newest + 10), signer=FORGER))
    relays["A"].publish(NETWORK.envelope(NETWORK.manifest(newest - 1)))
    relays["A"].publish(b"garbage that is no envelope")
    deadline = time.monotonic() + 10
    while sum(relays["A"].status()["dropped"].values()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert relays["A"].status()["dropped"] == {"invalid": 2, "stale": 1}
    # A valid message after them shows the mesh delivers: the bad ones were not in flight.
    _deliver(relays, newest + 1, newest)
    for name in "BCD":
        status = relays[name].status()
        assert status["dropped"] == {}, f"relay {name} saw a bad message: {status}"
        assert status["epoch"] == newest + 1
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"{relays['C'].http}/v1/nothing", timeout=5)
    with pytest.raises(urllib.error.HTTPError, match="400"):
        urllib.request.urlopen(f"{relays['C'].http}/v1/manifest?after=x", timeout=5)


def test_delivery_survives_a_dead_relay(relays: dict[str, RelayProcess]) -> None:
    newest = relays["C"].status()["epoch"]
    relays["B"].stop()
    time.sleep(1.5)  # a heartbeat: C's mesh notices B is gone
    elapsed = _deliver(relays, newest + 1, newest)
    print(f"with B dead: A -> D -> C in {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0


def _health(relay: RelayProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{relay.http}/v1/health", timeout=5) as reply:
        result: dict[str, Any] = json.loads(reply.read())
        return result


def test_health_notes_travel_and_forged_ones_stop_at_the_first_hop(
    relays: dict[str, RelayProcess],
) -> None:
    epoch = relays["C"].status()["epoch"]
    dropped_before = dict(relays["A"].status()["dropped"])

    def note(member: int, key: int) -> bytes:
        return health_envelope(member, epoch, int(time.time() * 1000), key=key)

    relays["A"].publish(note(3, 2), b"publish-health")  # member 3's note, member 2's key
    start = time.monotonic()
    relays["A"].publish(note(1, 1), b"publish-health")
    while not _health(relays["C"])["nodes"]:
        assert time.monotonic() - start < 5, "member 1's health note never reached C"
        time.sleep(0.02)
    print(f"health note: A -> D -> C in {(time.monotonic() - start) * 1000:.0f} ms (polled)")
    nodes = _health(relays["C"])["nodes"]
    assert [n["address"] for n in nodes] == ["0x" + "01" * 20]
    assert nodes[0]["health"] == "NORMAL" and nodes[0]["head"] == 99
    dropped = relays["A"].status()["dropped"]
    assert dropped.get("invalid", 0) == dropped_before.get("invalid", 0) + 1
    for name in "CD":
        assert relays[name].status()["dropped"] == {}, name


def test_a_rogue_relays_messages_stop_at_its_first_honest_neighbour(
    relays: dict[str, RelayProcess], tmp_path: Path
) -> None:
    """A peer that validates nothing (tests/relay/rogue.py, in its own namespace) joins at D
    and publishes a forged manifest, a stale one and a health note signed with another
    member's key: D drops all three, and no other relay ever sees them."""
    newest = relays["C"].status()["epoch"]
    before = {name: relays[name].status()["dropped"] for name in "ACD"}
    hosts = HOSTS[0]
    address = hosts.address(ROGUE_HOST)
    forged = NETWORK.envelope(NETWORK.manifest(newest + 10), signer=FORGER)
    stale = NETWORK.envelope(NETWORK.manifest(newest - 1))
    health = health_envelope(2, newest, int(time.time() * 1000), key=3)
    log = tmp_path / "rogue.log"
    with log.open("wb") as out:
        rogue = subprocess.Popen(
            ["ip", "netns", "exec", hosts.namespace(ROGUE_HOST), str(RELAY_PYTHON), "-m",
             "tests.relay.rogue", NETWORK.fingerprint.hex(), f"/ip4/{address}/tcp/4001",
             relays["D"].addr, f"manifest:{forged.hex()}", f"manifest:{stale.hex()}",
             f"health:{health.hex()}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert rogue.wait(timeout=60) == 0, log.read_text()
    assert log.read_text().count('"published"') == 3, log.read_text()
    dropped = relays["D"].status()["dropped"]
    assert dropped.get("invalid", 0) - before["D"].get("invalid", 0) == 2
    assert dropped.get("stale", 0) - before["D"].get("stale", 0) == 1
    for name in "AC":  # B is dead by now
        status = relays[name].status()
        assert status["dropped"] == before[name] and status["epoch"] == newest, (name, status)
    assert "0x" + "02" * 20 not in [n["address"] for n in _health(relays["C"])["nodes"]]


def test_the_retiring_generation_is_served_beside_the_newest(
    relays: dict[str, RelayProcess],
) -> None:
    """Generation 1's newest manifest, published after generation 2's (its epoch number is
    older), is not stale: it reaches C and is served for `generation=1`; the default is still
    the newest generation's, so clients that do not ask are unchanged."""
    newest = relays["C"].status()["epoch"]
    before = {name: relays[name].status()["dropped"] for name in "ACD"}
    retiring = NETWORK.envelope(NETWORK.manifest(newest - 1, generation=1))
    start = time.monotonic()
    relays["A"].publish(retiring)
    assert relays["C"].wait_manifest(0, 10.0, generation=1) == retiring
    print(f"retiring generation: A -> D -> C in {(time.monotonic() - start) * 1000:.0f} ms")
    default = relays["C"].wait_manifest(0, 0)
    assert verify_envelope(default, NETWORK.fingerprint).generation == 2
    assert relays["C"].wait_manifest(newest - 1, 0, generation=2) == default
    # The long poll is per generation: nothing newer of generation 1 comes, so 204.
    start = time.monotonic()
    assert relays["C"].wait_manifest(newest - 1, 0.3, generation=1) == b""
    assert time.monotonic() - start >= 0.3
    assert relays["C"].wait_manifest(0, 0, generation=3) == b""
    assert relays["C"].status()["generations"] == {"1": newest - 1, "2": newest}
    for name in "ACD":  # dropped as stale nowhere (B is dead by now)
        assert relays[name].status()["dropped"] == before[name], name
    for query, named in (
        ("generation=x", "generation must be an integer"),
        ("generation=-1", "generation must not be negative"),
        ("after=1&after=2", "after is given 2 times"),
        ("wait=nan", "wait must not be negative"),
        ("wait=soon", "wait must be a number of seconds"),
    ):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{relays['C'].http}/v1/manifest?{query}", timeout=5)
        assert refused.value.code == 400
        assert named in refused.value.read().decode(), query
