"""The guest agent's chain watch: one loop that keeps `Agent.serving` in step with the chain.

Every `poll` seconds it reads, through the agent's RPC with short timeouts: the head, the
latest key generation, the app's `liveRevocationBlocks` and the state of the older
generations the agent holds (`RpcChain.read`). `guest.serving.Policy` turns each reading
into actions, which run as background tasks so that a slow network never delays the next
reading (at most one per generation and kind at a time):

* `Fetch(g)`: the committee of generation g from chain, checked against the network
  fingerprint, then the app's keys of g (`guest.agent.fetch_keys`): a rotation seen while
  running, once the new generation's link is on chain;
* `Confirm(g)`: a fresh derivation of the app's root seed from g's committee (live
  revocation). Nodes refuse it once the app is no longer authorized at their chain head; a
  refusal by more than n - t members means no t could derive, so the keys are withheld at
  once. A seed other than the one held is treated as a refusal.

After each reading the new `Serving` snapshot replaces the agent's, and a line is printed
only when what is served changes, when the view goes stale or fresh again, and at the first
failure of a fetch or confirmation after a success. Keys of a generation retired on chain
are dropped. A reading that fails leaves the view to go stale (`Policy.stale`).
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections.abc import Callable, Collection
from typing import Protocol

from contracts import AppAuthClient, CallReverted, GovernanceClient
from guest.agent import Agent, AgentStartError, KeyService, derive_seed, fetch_keys
from guest.committee import CommitteeError, UntrustedNetwork, committee_from_chain
from guest.kms_client import Committee, DerivationError, KmsClient
from guest.relay_check import RelayUnavailable, UnsignedCommittee
from guest.serving import ChainReading, Confirm, Fetch, GenerationState, Policy

#: Seconds per RPC request of the watch: a hung RPC must not hold the loop.
RPC_TIMEOUT = 3.0

Log = Callable[[str], None]
ClientFactory = Callable[[Committee], KeyService]


class ChainSource(Protocol):
    """What the watch reads from chain: `RpcChain`, or a unit test's stand-in."""

    def read(self, watched: Callable[[int], Collection[int]]) -> ChainReading: ...

    def committee(self, generation: int) -> Committee: ...


class RpcChain:
    """The agent's RPC, read at one block per reading."""

    def __init__(self, governance: GovernanceClient, app_id: bytes, fingerprint: bytes) -> None:
        self.governance = governance
        self.app = AppAuthClient(governance.w3, "0x" + app_id.hex())
        self.fingerprint = fingerprint

    @classmethod
    def connect(cls, rpc: str, governance: str, app_id: bytes, fingerprint: bytes) -> RpcChain:
        """Over a client with `RPC_TIMEOUT` per request and no retries."""
        from web3 import HTTPProvider, Web3

        w3 = Web3(
            HTTPProvider(
                rpc, request_kwargs={"timeout": RPC_TIMEOUT}, exception_retry_configuration=None
            )
        )
        return cls(GovernanceClient(w3, governance), app_id, fingerprint)

    def read(self, watched: Callable[[int], Collection[int]]) -> ChainReading:
        head = self.governance.w3.eth.block_number
        latest = self.governance.get_latest_generation(block=head)
        try:
            blocks = self.app.get_live_revocation_blocks(block=head)
        except CallReverted:  # a controller without the opt-in (dstack-style, or older)
            blocks = 0
        states = {}
        for g in watched(latest):
            info = self.governance.get_generation(g, block=head)
            states[g] = GenerationState(info.status, info.retire_after)
        return ChainReading(head, latest, blocks, states)

    def committee(self, generation: int) -> Committee:
        return committee_from_chain(self.governance, generation, fingerprint=self.fingerprint)


def refused_by_quorum(exc: DerivationError, committee: Committee) -> bool:
    """More than n - t members denied permission: no t of them would derive."""
    denied = sum(1 for why in exc.failures.values() if why.startswith("permission_denied"))
    return denied > len(committee.members) - committee.threshold


def _print(line: str) -> None:
    print(f"tkms guest agent: {line}", flush=True)


class ChainWatch:
    """Runs the loop in a thread of its own (its own event loop and KMS clients)."""

    def __init__(
        self,
        agent: Agent,
        policy: Policy,
        source: ChainSource,
        clients: ClientFactory,
        *,
        poll: float,
        log: Log = _print,
    ) -> None:
        self.agent = agent
        self.policy = policy
        self.source = source
        self._make_client = clients
        self.poll = poll
        self._log = log
        self._clock = agent.clock
        self._clients: dict[int, KeyService] = {}
        #: ("fetch" | "confirm", generation) -> the action under way
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._summary: tuple[object, ...] = agent.serving.summary()
        self._stale = False
        self._failing: set[str] = set()

    # -- thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.run()), name="chain-watch", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                started = self._clock()
                await self.tick()
                await asyncio.sleep(max(0.0, self.poll - (self._clock() - started)))
        finally:
            await self.settle(cancel=True)
            for client in self._clients.values():
                await client.close()

    async def settle(self, *, cancel: bool = False) -> None:
        """Wait for (or cancel) the actions under way."""
        tasks = list(self._running.values())
        for task in tasks if cancel else ():
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one reading -------------------------------------------------------------------------

    async def tick(self) -> None:
        try:
            reading = await asyncio.to_thread(self.source.read, self.policy.watched)
        except Exception as exc:  # web3 raises many types for an unreachable or odd RPC
            self.policy.unreachable(f"{type(exc).__name__}: {exc}"[:300])
        else:
            for action in self.policy.observe(reading, self._clock()):
                key = ("fetch" if isinstance(action, Fetch) else "confirm", action.generation)
                if key not in self._running:
                    self._running[key] = asyncio.ensure_future(self._act(key, action, reading))
            for generation in self.policy.retired():
                self.agent.drop_generation(generation)
        self.publish()

    def publish(self) -> None:
        """Give the API the policy's current decision; log what changed."""
        now = self._clock()
        stale = self.policy.stale(now)
        if bool(stale) != self._stale:
            self._stale = bool(stale)
            self._log(stale or "the chain view is fresh again")
        serving = self.policy.serving(now)
        self.agent.serving = serving
        if serving.summary() != self._summary:
            self._summary = serving.summary()
            self._log(serving.describe())

    async def _act(
        self, key: tuple[str, int], action: Fetch | Confirm, reading: ChainReading
    ) -> None:
        try:
            if isinstance(action, Fetch):
                await self._fetch(action.generation, reading.head)
            else:
                await self._confirm(action)
            self.publish()
        finally:
            self._running.pop(key, None)

    def _failed(self, what: str, message: str) -> None:
        if what not in self._failing:
            self._failing.add(what)
            self._log(message)

    def _client(self, generation: int) -> KeyService:
        client = self._clients.get(generation)
        if client is None:
            client = self._make_client(self.source.committee(generation))
            self._clients[generation] = client
        return client

    async def _drop_client(self, generation: int) -> None:
        """A committee may have changed (a reshare): the next request reads it again."""
        client = self._clients.pop(generation, None)
        if client is not None:
            await client.close()

    async def _fetch(self, generation: int, head: int) -> None:
        try:
            client = await asyncio.to_thread(self._client, generation)
            keys = await fetch_keys(client, self.agent.app_id)
        except (
            CommitteeError,
            UntrustedNetwork,
            UnsignedCommittee,
            RelayUnavailable,
            DerivationError,
            AgentStartError,
        ) as exc:
            await self._drop_client(generation)
            self.policy.fetch_failed(generation, str(exc))
            self._failed(f"fetch {generation}", f"cannot fetch generation {generation}: {exc}")
            return
        except Exception as exc:  # an RPC failure while reading the committee
            await self._drop_client(generation)
            why = f"{type(exc).__name__}: {exc}"[:300]
            self.policy.fetch_failed(generation, why)
            self._failed(f"fetch {generation}", f"cannot fetch generation {generation}: {why}")
            return
        self._failing.discard(f"fetch {generation}")
        self.agent.add_generation(keys)
        self.policy.fetched(generation, head)
        self._log(f"fetched the app's keys of generation {generation}")

    async def _confirm(self, action: Confirm) -> None:
        generation, head = action.generation, action.head
        held = self.agent.keyring.get(generation)
        try:
            client = await asyncio.to_thread(self._client, generation)
        except (UnsignedCommittee, RelayUnavailable) as exc:  # ours: whole, not cut
            why = f"{type(exc).__name__}: {exc}"
            self.policy.unconfirmed(head, why)
            self._failed("confirm", f"cannot confirm the app's keys (will retry): {why}")
            return
        except Exception as exc:  # the committee cannot be read: retried at the next block
            why = f"{type(exc).__name__}: {exc}"[:300]
            self.policy.unconfirmed(head, why)
            self._failed("confirm", f"cannot confirm the app's keys (will retry): {why}")
            return
        try:
            seed, _ = await derive_seed(client, self.agent.app_id)
        except DerivationError as exc:
            await self._drop_client(generation)
            if held is not None and refused_by_quorum(exc, client.committee):
                self.policy.refused(head, str(exc))
            else:
                self.policy.unconfirmed(head, str(exc))
                self._failed("confirm", f"cannot confirm the app's keys (will retry): {exc}")
            return
        except Exception as exc:  # RPC or channel trouble: retried at the next block
            await self._drop_client(generation)
            why = f"{type(exc).__name__}: {exc}"[:300]
            self.policy.unconfirmed(head, why)
            self._failed("confirm", f"cannot confirm the app's keys (will retry): {why}")
            return
        if held is None or not hmac.compare_digest(seed, held.seed):
            self.policy.refused(head, "the network derived another seed for this app than before")
            return
        self._failing.discard("confirm")
        self.policy.confirmed(head)


def kms_clients(agent: Agent, timeout: float) -> ClientFactory:
    """KMS clients whose evidence comes from the agent's TEE (under its lock)."""

    def make(committee: Committee) -> KeyService:
        return KmsClient(committee, agent.evidence, timeout=timeout)

    return make
