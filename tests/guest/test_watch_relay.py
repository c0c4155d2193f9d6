"""The running agent's committees cross-checked with its relay (guest/relay_source.py): every
committee the chain watch adopts after start (a reshare's new epoch, a rotation's generation)
must be the one the network signed, else the agent keeps the last verified one or fails closed.

In-process stand-ins: the chain watch harness (tests/guest/test_chain_watch.py) plays the RPC
and the KMS network, and a plain HTTP server in the test plays the relay. Its envelopes are real
BLS signatures by the fake network's generation keys (each generation's key linked from the
previous one), which the agent verifies against its own fingerprint.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from contracts import GenerationStatus
from guest.kms_client import Committee
from guest.relay_check import UnsignedCommittee, manifest_of
from guest.relay_source import RelayCheck, RelayCheckedChain
from guest.serving import GenerationState
from mpc import Epoch
from tests.guest.agent_harness import api_client
from tests.guest.test_chain_watch import SECRETS, Harness, get_key
from tests.relay.signing import KeyedNetwork

NETWORK = KeyedNetwork((SECRETS[1], SECRETS[2]))


class FakeRelay:
    """Serves the newest envelope `deliver`ed of each generation (long-polled like `tkms
    relay`, `generation=` as there) and `notices`."""

    def __init__(self) -> None:
        #: (generation, epoch, envelope) in the order delivered
        self.envelopes: list[tuple[int, int, bytes]] = []
        #: Revocation envelopes served as they are (the agent verifies them).
        self.notices: list[bytes] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/v1/revocations":
                    notices = [{"envelope": n.hex()} for n in relay.notices]
                    body = json.dumps({"notices": notices}).encode()
                else:
                    query = parse_qs(url.query)
                    after, wait = int(query["after"][0]), float(query["wait"][0])
                    body = relay.newer(after, wait, int(query.get("generation", ["0"])[0]))
                self.send_response(200 if body else 204)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def newer(self, after: int, wait: float, generation: int = 0) -> bytes:
        deadline = time.monotonic() + wait
        while True:
            wanted = generation or max((g for g, _, _ in self.envelopes), default=0)
            mine = [(e, data) for g, e, data in self.envelopes if g == wanted]
            if mine and mine[-1][0] > after:
                return mine[-1][1]
            if time.monotonic() >= deadline:
                return b""
            time.sleep(0.02)

    def deliver(self, committee: Committee) -> None:
        """The network signed `committee` (as an honest RPC shows it)."""
        net = committee.network
        envelope = NETWORK.envelope(manifest_of(committee))
        self.envelopes.append((int(net.generation), int(net.epoch), envelope))


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    """The watch harness, its members with addresses (as on chain: manifests name them)."""
    harness = Harness(tmp_path)
    for g, committee in harness.chain.committees.items():
        member = dataclasses.replace(committee.members[0], address=bytes([0xA0 + g]) * 20)
        harness.chain.committees[g] = dataclasses.replace(committee, members=(member,))
    return harness


@pytest.fixture
def http(harness: Harness, tmp_path: Path) -> Iterator[httpx.Client]:
    with api_client(harness.agent, tmp_path / "dstack.sock") as client:
        yield client


@pytest.fixture
def relay() -> Iterator[FakeRelay]:
    fake = FakeRelay()
    threading.Thread(target=fake.server.serve_forever, daemon=True).start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def at_epoch(committee: Committee, epoch: int, *, endpoint: str = "") -> Committee:
    """`committee` after a reshare to `epoch`; `endpoint`: member 1 moved there (a lie)."""
    moved = committee
    if endpoint:
        first = dataclasses.replace(committee.members[0], endpoint=endpoint)
        moved = dataclasses.replace(committee, members=(first, *committee.members[1:]))
    network = dataclasses.replace(committee.network, epoch=Epoch(epoch))
    return dataclasses.replace(moved, network=network)


def checked(harness: Harness, url: str, wait: float = 0.5) -> RelayCheck:
    """The harness's watch reads its committees as the agent with `relay = url` does."""
    check = RelayCheck(url, NETWORK.fingerprint, wait=wait, log=harness.lines.append)
    harness.watch.source = RelayCheckedChain(harness.chain, check)
    return check


def test_a_lying_rpc_after_a_reshare_is_refused_and_the_agent_fails_closed(
    harness: Harness, http: httpx.Client, relay: FakeRelay
) -> None:
    honest = harness.chain.committees[1]
    relay.deliver(honest)
    checked(harness, relay.url)
    kms = harness.kms[1]
    harness.chain.blocks = 4
    harness.tick()  # block 101: confirmed through the checked epoch-1 committee
    assert kms.derivations == 1 and get_key(http).status_code == 200
    # A reshare to epoch 2: the network signs its committee; the RPC shows member 1 elsewhere.
    new = at_epoch(honest, 2)
    relay.deliver(new)
    harness.chain.committees[1] = at_epoch(honest, 2, endpoint="6.6.6.6:443")
    harness.tick()  # block 102
    kms.refuse = "unavailable: share deleted by the refresh"  # epoch 1's members are gone
    harness.tick()  # block 103: the confirmation fails, the committee is read again
    kms.refuse = None  # whoever is dialled now would answer: the check alone stops it
    harness.tick()  # block 104
    assert kms.derivations == 2  # the lying committee was never asked
    assert any(
        "refusing generation 1's committee from the RPC: epoch 2's committee from the RPC "
        "differs from the one the network signed (member 1: "
        in line
        and "6.6.6.6:443" in line
        for line in harness.lines
    ), harness.lines
    harness.tick()  # block 105
    harness.tick()  # block 106: more than 4 blocks since the last confirmation
    reply = get_key(http)
    assert reply.status_code == 503
    assert "RPC is lying" in reply.json()["error"] and "6.6.6.6:443" in reply.json()["error"]
    # The RPC tells the truth again: the signed epoch-2 committee is adopted.
    harness.chain.committees[1] = new
    harness.tick()
    assert get_key(http).status_code == 200 and kms.derivations == 3
    assert harness.lines[0].startswith(
        "generation 1's committee of epoch 1 matches the network-signed manifest"
    )
    assert any("committee of epoch 2 matches" in line for line in harness.lines)


def test_an_honest_new_epoch_is_adopted_once_the_relay_delivers_it(
    harness: Harness, relay: FakeRelay
) -> None:
    lines: list[str] = []
    check = RelayCheck(relay.url, NETWORK.fingerprint, wait=3.0, log=lines.append)
    committee = harness.chain.committees[1]
    relay.deliver(committee)
    assert check.adopt(committee)[0] == committee
    # The RPC shows epoch 2 before the relay has it: adopted when it arrives, within the wait.
    new = at_epoch(committee, 2)
    threading.Timer(0.3, relay.deliver, (new,)).start()
    started = time.monotonic()
    kept, signed, revoked = check.adopt(new)
    assert kept == new and signed.epoch == 2 and revoked == []
    assert 0.25 < time.monotonic() - started < 3.0
    assert lines[-1].startswith("generation 1's committee of epoch 2 matches")
    # An epoch the network never signed (waited for in vain): the signed one stays in use.
    check.wait = 0.2
    kept, signed, _ = check.adopt(at_epoch(committee, 3, endpoint="6.6.6.6:443"))
    assert kept == new and signed.epoch == 2
    assert "not adopting generation 1's committee of epoch 3" in lines[-1]
    assert "epoch 2's, which the network signed, stays" in lines[-1]
    # But a committee the network signed over is never kept: epoch 4 is signed, 3 is refused.
    relay.deliver(at_epoch(committee, 4))
    with pytest.raises(UnsignedCommittee, match="signed epoch 4"):
        check.adopt(at_epoch(committee, 3))


def test_a_rotation_is_checked_and_a_lying_new_generation_is_not_fetched(
    harness: Harness, http: httpx.Client, relay: FakeRelay
) -> None:
    gen1 = harness.chain.committees[1]
    relay.deliver(gen1)
    check = checked(harness, relay.url)
    check.adopt(gen1)  # at start, as `tkms guest agent` does
    # Generation 2, epoch 3: signed by generation 2's key, linked from generation 1's.
    gen2 = at_epoch(harness.chain.committees[2], 3)
    relay.deliver(gen2)
    harness.chain.committees[2] = at_epoch(gen2, 3, endpoint="6.6.6.6:443")
    harness.chain.latest = 2
    harness.chain.states[1] = GenerationState(GenerationStatus.RETIRING, 110)
    harness.tick()
    harness.tick()
    failures = [line for line in harness.lines if line.startswith("cannot fetch generation 2")]
    assert len(failures) == 1 and "RPC is lying" in failures[0], harness.lines
    reply = get_key(http, generation=2)
    assert reply.status_code == 404 and "holds 1" in reply.json()["error"]
    assert get_key(http).json()["tkms"]["generation"] == 1
    # The honest generation 2 is fetched; the retiring generation 1 still checks against its
    # own generation's manifest, which the relay keeps beside generation 2's.
    harness.chain.committees[2] = gen2
    harness.tick()
    assert get_key(http, generation=2).status_code == 200
    assert check.adopt(gen1)[0] == gen1
    # An agent that starts now, inside the window, checks both generations' committees ...
    fresh = RelayCheck(relay.url, NETWORK.fingerprint, wait=0.2, log=lambda line: None)
    assert fresh.adopt(gen2, latest=True)[1].generation == 2
    assert fresh.adopt(gen1)[1] == manifest_of(gen1)
    # ... and one behind a lying RPC refuses the retiring committee, naming the difference.
    lied_to = RelayCheck(relay.url, NETWORK.fingerprint, wait=0.2, log=lambda line: None)
    assert lied_to.adopt(gen2, latest=True)[0] == gen2
    with pytest.raises(UnsignedCommittee, match=r"member 1: .* at 6\.6\.6\.6:443.*RPC is lying"):
        lied_to.adopt(at_epoch(gen1, 1, endpoint="6.6.6.6:443"))
    # An RPC that calls generation 1 the latest hides the rotation the network signed.
    with pytest.raises(UnsignedCommittee, match="signed generation 2 .*stale or lying"):
        fresh.adopt(gen1, latest=True)


def test_no_answer_from_the_relay_fails_closed_with_a_clear_error(
    harness: Harness, http: httpx.Client
) -> None:
    checked(harness, "http://127.0.0.1:1")
    harness.chain.blocks = 4
    for _ in range(6):
        harness.tick()
    assert harness.kms[1].derivations == 0
    reply = get_key(http)
    assert reply.status_code == 503
    error = reply.json()["error"]
    assert "keys withheld (live revocation" in error
    assert "RelayUnavailable: relay http://127.0.0.1:1" in error
    # A rotation: generation 2's keys are not fetched either.
    harness.chain.latest = 2
    harness.tick()
    assert any(
        line.startswith("cannot fetch generation 2: relay http://127.0.0.1:1")
        for line in harness.lines
    )
    assert 2 not in harness.agent.keyring


def test_revocations_apply_to_committees_adopted_later(relay: FakeRelay) -> None:
    from mpc.revocation import NODE_REMOVED, RevocationNotice, notice_envelope
    from tests.relay import signing
    from tests.relay.test_check import _committee

    net = signing.NETWORK  # three members, t = 2
    check = RelayCheck(relay.url, net.fingerprint, wait=0.5, log=lambda line: None)
    first = net.manifest(6)
    relay.envelopes.append((2, 6, net.envelope(first)))
    kept, _, revoked = check.adopt(_committee(first))
    assert revoked == [] and len(kept.members) == 3
    # Epoch 7; the network then revokes member 2 for it (signed under generation 2's key).
    second = net.manifest(7)
    relay.envelopes.append((2, 7, net.envelope(second)))
    notice = RevocationNotice(
        chain_id=second.chain_id,
        governance=second.governance,
        generation=second.generation,
        epoch=7,
        kind=NODE_REMOVED,
        subject=second.members[1].address,
    )
    relay.notices.append(notice_envelope(notice, signing.sign(net.secrets[1], notice.encode())))
    kept, signed, revoked = check.adopt(_committee(second))
    assert signed.epoch == 7 and revoked == [2]
    assert [m.address for m in kept.members] == [m.address for m in second.members[::2]]
