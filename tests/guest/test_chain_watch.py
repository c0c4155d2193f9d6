"""The agent's chain watch with in-process stand-ins for the chain and the KMS network.

The real HTTP server and key derivation answer; `FakeChain` plays the RPC (head, latest
generation, generation states, the app's liveRevocationBlocks) and `FakeKms` one committee per
generation. Against real nodes and anvil: tests/guest/test_agent_network.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import httpx
import pytest

from contracts import GenerationStatus
from guest.agent import Agent, provider_evidence
from guest.kms_client import Committee
from guest.serving import ChainReading, GenerationState, Policy
from guest.watch import ChainWatch
from mpc import Scalar
from tests.guest.agent_harness import api_client, boot, make_config
from tests.guest.fake_kms import FakeKms

SECRETS = {
    1: Scalar.from_bytes((1111).to_bytes(32, "big"), "generation 1"),
    2: Scalar.from_bytes((2222).to_bytes(32, "big"), "generation 2"),
}
REVOKED = "permission_denied: authorization: Compose hash not allowed"


class FakeChain:
    """What the agent's RPC shows; `down` makes every read fail."""

    def __init__(self) -> None:
        self.head = 100
        self.latest = 1
        self.blocks = 0
        self.states: dict[int, GenerationState] = {}
        self.down = False
        self.committees: dict[int, Committee] = {}

    def read(self, watched: Callable[[int], Collection[int]]) -> ChainReading:
        if self.down:
            raise ConnectionError("connection refused")
        states = {
            g: self.states.get(g, GenerationState(GenerationStatus.ACTIVE, 0))
            for g in watched(self.latest)
        }
        return ChainReading(self.head, self.latest, self.blocks, states)

    def committee(self, generation: int) -> Committee:
        return self.committees[generation]


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.chain = FakeChain()
        self.now = 0.0
        self.lines: list[str] = []
        self.agent: Agent = boot(make_config(tmp), SECRETS[1])
        self.agent.clock = lambda: self.now
        self.kms = {
            g: FakeKms(s, self.agent.app_id, provider_evidence(self.agent.provider), generation=g)
            for g, s in SECRETS.items()
        }
        self.chain.committees = {g: k.committee for g, k in self.kms.items()}
        self.policy = Policy(pinned=0, stale_seconds=10, now=self.now)
        self.policy.observe(self.chain.read(self.policy.watched), self.now)
        self.policy.fetched(1, self.chain.head)
        self.agent.serving = self.policy.serving(self.now)
        self.watch = ChainWatch(
            self.agent,
            self.policy,
            self.chain,
            lambda committee: self.kms[int(committee.network.generation)],
            poll=0.5,
            log=self.lines.append,
        )

    def tick(self, blocks: int = 1, seconds: float = 1.0) -> None:
        """The chain moves on `blocks`, the clock `seconds`; one reading, actions finished."""
        self.chain.head += blocks
        self.now += seconds

        async def go() -> None:
            await self.watch.tick()
            await self.watch.settle()

        asyncio.run(go())


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


@pytest.fixture
def http(harness: Harness, tmp_path: Path) -> Iterator[httpx.Client]:
    with api_client(harness.agent, tmp_path / "dstack.sock") as client:
        yield client


def get_key(http: httpx.Client, **fields: object) -> httpx.Response:
    return http.post("/GetKey", json={"path": "db", "purpose": "p", **fields})


def test_a_rotation_is_fetched_and_served_by_default_only_after_the_window(
    harness: Harness, http: httpx.Client
) -> None:
    old = get_key(http).json()
    assert old["tkms"]["generation"] == 1
    harness.tick()
    assert harness.lines == []  # nothing changed, nothing logged
    harness.chain.latest = 2
    harness.chain.states[1] = GenerationState(GenerationStatus.RETIRING, 110)
    harness.tick()
    assert harness.lines == [
        "fetched the app's keys of generation 2",
        "serving generation 1 by default; generation 2 on request",
    ]
    assert get_key(http).json() == old  # inside the window: what apps had
    new = get_key(http, generation=2).json()
    assert new["tkms"]["generation"] == 2 and new["key"] != old["key"]
    assert get_key(http, generation=1).json()["key"] == old["key"]
    for body in ({"generation": -1}, {"generation": "2"}, {"generation": True}):
        reply = get_key(http, **body)
        assert reply.status_code == 400 and "field 'generation'" in reply.json()["error"]
    reply = get_key(http, generation=3)
    assert reply.status_code == 404
    assert "generation 3 is not served by this agent: it holds 1, 2" in reply.json()["error"]
    # Signatures and TLS keys follow the same choice.
    signed = http.post("/Sign", json={"algorithm": "ed25519", "data": "00", "generation": 2})
    assert signed.json()["tkms"]["generation"] == 2
    assert http.post("/GetTlsKey", json={"generation": 2}).status_code == 200

    harness.tick(blocks=10)  # block 111: the window is over
    assert get_key(http).json()["key"] == new["key"]
    assert get_key(http, generation=1).json()["key"] == old["key"]  # not retired yet
    harness.chain.states[1] = GenerationState(GenerationStatus.RETIRED, 110)
    harness.tick()
    assert get_key(http).json()["key"] == new["key"]
    reply = get_key(http, generation=1)
    assert reply.status_code == 410
    assert reply.json()["error"] == (
        "GetKey: generation 1 was retired on chain: its keys are no longer served "
        "(generation 2 is the latest)"
    )
    assert set(harness.agent.keyring) == {2}  # the retired seed is dropped
    assert harness.lines[-1] == "serving generation 2 by default; generation 1 refused: retired"


def test_a_generation_without_a_link_is_retried_and_logged_once(harness: Harness) -> None:
    def no_link(generation: int) -> Committee:
        raise __import__("guest.committee").committee.CommitteeError(
            "generation 2 has no link to generation 1 on chain yet"
        )

    harness.chain.committee = no_link  # type: ignore[method-assign]
    harness.chain.latest = 2
    harness.chain.states[1] = GenerationState(GenerationStatus.RETIRING, 7200)
    for _ in range(3):
        harness.tick()
    assert harness.lines == [
        "cannot fetch generation 2: generation 2 has no link to generation 1 on chain yet"
    ]
    assert harness.agent.serving.generation(0, harness.now) == 1


def test_live_revocation_withholds_every_key_once_the_network_refuses(
    harness: Harness, http: httpx.Client
) -> None:
    kms = harness.kms[1]
    harness.chain.blocks = 4
    harness.tick()  # opted in while running: confirmed at once
    assert kms.derivations == 1 and get_key(http).status_code == 200
    harness.tick()
    assert kms.derivations == 1  # every 2 blocks
    harness.tick()
    assert kms.derivations == 2
    kms.refuse = REVOKED
    harness.tick()
    assert kms.derivations == 2
    harness.tick()
    assert kms.derivations == 3
    for path, body in (
        ("/GetKey", {"path": "db"}),
        ("/Sign", {"algorithm": "secp256k1", "data": "00"}),
        ("/GetTlsKey", {}),
        ("/prpc/Tappd.DeriveKey", {"path": "x"}),
        ("/prpc/Tappd.DeriveK256Key", {"path": "x"}),
    ):
        reply = http.post(path, json=body)
        assert reply.status_code == 403, path
        assert "live revocation" in reply.json()["error"] and REVOKED in reply.json()["error"]
    # What is not a key is still answered.
    assert http.post("/Info").status_code == 200
    assert http.post("/GetQuote", json={"report_data": "00"}).status_code == 200
    assert harness.lines[-1].startswith(
        "keys withheld (live revocation): at block 105 the KMS network refused this app's keys"
    )
    kms.refuse = None  # allowed again
    harness.tick()
    harness.tick()
    assert get_key(http).status_code == 200
    assert harness.lines[-1] == "serving generation 1 by default"


def test_live_revocation_fails_closed_without_answers_or_blocks(
    harness: Harness, http: httpx.Client
) -> None:
    kms = harness.kms[1]
    harness.chain.blocks = 4
    harness.tick()
    kms.refuse = "unavailable: connection refused"  # one member of one: not a refusal
    for _ in range(4):
        harness.tick()
        assert get_key(http).status_code == 200
    harness.tick()
    reply = get_key(http)
    assert reply.status_code == 503
    assert (
        "last confirmed this app's keys at block 101, and the chain is at block 106"
        in (reply.json()["error"])
    )
    assert harness.lines[0] == (
        "cannot confirm the app's keys (will retry): only 0 of 1 needed partials: "
        "node-1 (fake:1) unavailable: connection refused"
    )
    kms.refuse = None
    harness.tick()
    assert get_key(http).status_code == 200
    harness.chain.down = True
    harness.tick(blocks=0, seconds=5)
    assert get_key(http).status_code == 200
    harness.tick(blocks=0, seconds=6)
    reply = get_key(http)
    assert reply.status_code == 503 and "connection refused" in reply.json()["error"]
    assert harness.lines[-2].startswith("the chain view is stale (no new block")
    harness.chain.down = False
    harness.tick()
    assert get_key(http).status_code == 200
    assert harness.lines[-2:] == [
        "the chain view is fresh again",
        "serving generation 1 by default",
    ]
