"""What the node knows about the chain: immutable `ChainView` snapshots and the `ChainWatcher`.

A view is read at one block (`head`): every field comes from reads pinned to that block, so a
decision taken from a view is a decision about one consistent chain state. Views never change;
the watcher replaces its `view` by a newer one.

Rules of this module:

* Chain bytes are decoded strictly (`mpc.group`). A committee whose public polynomial or PK2
  does not decode, has the wrong length, or whose PK2 does not match A_0 is left out of the
  view with a logged reason (`committee_unusable`): the Kms service then has no committee for
  that generation and answers UNAVAILABLE, never with a wrong key. A node whose registration
  cannot be parsed is left out of `nodes` (`node_record_invalid`); as a committee member it
  keeps its place with empty endpoints, so one bad registration cannot disable a committee.
* The board of one epoch (keys, deals, complaints, answers) is read by `node.board`.
* web3 calls block, so the watcher runs them in a thread (`asyncio.to_thread`). On an RPC
  error it keeps the old view, which ages (`head_age`); the error is logged once per outage.
  With several RPC endpoints (`contracts.QuorumProvider`), endpoints that answer differently
  (`NoQuorum` with `disagreement`) also set `disagreement` until a read agrees again: the node
  then releases no keys at once (`node.authz`) and says so in its health, rather than waiting
  for the old view to go stale.
* The registry is read whole only for the first view, and after a reorg (the block the last
  view was read at is no longer on the chain). After that, a view re-reads only the nodes
  named by NodeRegistered / NodeApproved / NodeRemoved events since the last view, so the
  cost of an event does not grow with the registry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import BlockData

from contracts import (
    ContractsError,
    GenerationStatus,
    GovernanceClient,
    NodeInfo,
    NodeStatus,
    NoQuorum,
)
from mpc.anchor import network_fingerprint
from mpc.errors import EncodingError
from mpc.group import G1, G1_SIZE, G2, G2_SIZE, pairing_product_is_one
from mpc.sharing import PublicPolynomial
from mpc.types import MemberIndex
from node.endpoints import Endpoints
from node.errors import InvalidRequest
from node.logs import get_logger

DEAL_KEY_SIZE: Final = 1216
ADDRESS_SIZE: Final = 20
_log = get_logger("tkms.chain")
#: Events that change nothing a view holds.
_QUIET_EVENTS: Final = (
    "EpochKeyPosted",
    "DealSubmitted",
    "ComplaintFiled",
    "ComplaintJustified",
    "Confirmed",
    "NodeRegistrationAllowed",
    "NodeRegistrationDisallowed",
)
#: Events whose first indexed argument is the node whose registry entry changed.
_NODE_EVENTS: Final = ("NodeRegistered", "NodeApproved", "NodeRemoved")

#: What a failed chain read can raise: our client's errors, web3's, and transport errors
#: (requests' exceptions derive from OSError).
RPC_ERRORS: Final = (ContractsError, Web3Exception, OSError, ValueError, TimeoutError)


def to_address_bytes(address: str) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != ADDRESS_SIZE:
        raise ValueError(f"address {address!r} is not 20 bytes")
    return raw


def to_checksum(address: bytes) -> str:
    return str(Web3.to_checksum_address(address))


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """An approved node in the registry (endpoints are empty if its registration is bad)."""

    address: bytes  # 20 bytes
    kms_endpoint: str  # host:port
    peer_endpoint: str  # host:port
    tls_key_hash: bytes  # SHA-256 of the node's TLS SubjectPublicKeyInfo DER
    deal_public_key: bytes  # 1216 bytes (mpc.dealenc)


@dataclass(frozen=True, slots=True)
class Committee:
    """The ACTIVE epoch of one generation; member k (1-based) is members[k-1]."""

    generation: int
    epoch: int
    threshold: int
    members: tuple[NodeRecord, ...]
    public: PublicPolynomial  # A_0..A_{t-1}; A_0 = PK1
    pk2: G2

    def index_of(self, address: bytes) -> int | None:
        for k, member in enumerate(self.members, start=1):
            if member.address == address:
                return k
        return None

    def verification_key(self, index: int) -> G1:
        """V_i = Σ_k i^k·A_k of member `index` (1..n)."""
        if not 1 <= index <= len(self.members):
            raise InvalidRequest(f"member index {index} outside 1..{len(self.members)}")
        return self.public.verification_key(MemberIndex(index))


@dataclass(frozen=True, slots=True)
class ChainView:
    """One consistent snapshot of the governance contract at block `head`."""

    chain_id: int
    governance: bytes  # 20 bytes
    head: int
    head_timestamp: int  # block timestamp (unix seconds)
    latest_generation: int  # 0 before the first DKG
    committees: Mapping[int, Committee]  # every generation that is Active or Retiring
    running_epoch: int  # 0 when none
    nodes: Mapping[bytes, NodeRecord]  # approved nodes by address
    simulator_allowed: bool
    #: The network's fingerprint (`mpc.anchor`): None until generation 1 has a usable key.
    fingerprint: bytes | None = None

    def committee(self, generation: int = 0) -> Committee | None:
        """The committee of `generation` (0 = latest), or None if it has none usable."""
        return self.committees.get(generation or self.latest_generation)

    def head_age(self, now: float) -> float:
        return max(0.0, now - self.head_timestamp)


def node_record(info: NodeInfo, *, strict: bool) -> NodeRecord | None:
    """The record of a registered node; None (strict) or empty endpoints if it is malformed."""
    address = to_address_bytes(info.address)
    problem = ""
    kms = peer = ""
    try:
        endpoints = Endpoints.parse(info.endpoint)
        kms, peer = endpoints.kms, endpoints.peer
    except InvalidRequest as exc:
        problem = str(exc)
    if len(info.deal_key) != DEAL_KEY_SIZE:
        problem = f"deal key is {len(info.deal_key)} bytes, expected {DEAL_KEY_SIZE}"
    if problem:
        _log.warning("node_record_invalid", node=info.address, reason=problem)
        if strict:
            return None
    return NodeRecord(
        address=address,
        kms_endpoint=kms,
        peer_endpoint=peer,
        tls_key_hash=info.tls_key_hash,
        deal_public_key=info.deal_key,
    )


def decode_public(
    points: tuple[bytes, ...], threshold: int, pk2: bytes
) -> tuple[PublicPolynomial, G2]:
    """Strictly decode an activated epoch's public polynomial and PK2 (raises EncodingError)."""
    if len(points) != threshold or any(len(p) != G1_SIZE for p in points):
        raise EncodingError("public polynomial", f"expected {threshold} points of {G1_SIZE} bytes")
    public = PublicPolynomial.from_bytes(b"".join(points), threshold, "public polynomial")
    if len(pk2) != G2_SIZE:
        raise EncodingError("PK2", f"expected {G2_SIZE} bytes, got {len(pk2)}")
    key2 = G2.from_bytes(pk2, "PK2")
    if not pairing_product_is_one([(public.public_key, G2.generator()), (-G1.generator(), key2)]):
        raise EncodingError("PK2", "does not match A_0 (e(A_0, G2) != e(G1, PK2))")
    return public, key2


@dataclass(frozen=True, slots=True)
class _Changes:
    """What the governance events of a block range change in a view."""

    any: bool  # some event that can change a view
    nodes: frozenset[str]  # registry entries that changed (checksum addresses)


class _Reader:
    """Reads views; caches the decoded public data of activated epochs (they never change)."""

    def __init__(self, client: GovernanceClient) -> None:
        self._client = client
        self._decoded: dict[int, tuple[PublicPolynomial, G2] | None] = {}
        self._chain_id: int | None = None
        self._topics: dict[bytes, str] | None = None
        self._read_at: tuple[int, bytes] | None = None  # (number, hash) of the last view's head
        self._fingerprint: bytes | None = None  # generation 1's key never changes once set

    def read(self, previous: ChainView | None) -> ChainView:
        c = self._client
        block = c.w3.eth.get_block("latest")
        head = int(block["number"])
        if previous is not None and previous.head == head:
            return previous
        if previous is not None and not self._extends(previous.head, block):
            previous = None  # a reorg replaced the block we read at: read everything again
        self._read_at = (head, bytes(block["hash"]))
        if previous is None:
            nodes = self._registry(head)
        else:
            changes = self._changes(previous.head + 1, head)
            if not changes.any:
                timestamp = int(block["timestamp"])
                return dataclasses.replace(previous, head=head, head_timestamp=timestamp)
            nodes = self._updated(previous.nodes, changes.nodes, head)
        if self._chain_id is None:
            self._chain_id = int(c.w3.eth.chain_id)
        latest = c.get_latest_generation(block=head)
        committees: dict[int, Committee] = {}
        for generation in range(1, latest + 1):
            committee = self._committee(generation, head, nodes)
            if committee is not None:
                committees[generation] = committee
        return ChainView(
            chain_id=self._chain_id,
            governance=to_address_bytes(c.address),
            head=head,
            head_timestamp=int(block["timestamp"]),
            latest_generation=latest,
            committees=MappingProxyType(committees),
            running_epoch=c.get_running_epoch(block=head),
            nodes=MappingProxyType(nodes),
            simulator_allowed=c.get_simulator_allowed(block=head),
            fingerprint=self._network_fingerprint(latest, head),
        )

    def _network_fingerprint(self, latest: int, head: int) -> bytes | None:
        """The fingerprint from generation 1's key (read once; None before the first DKG)."""
        if self._fingerprint is None and latest >= 1:
            c = self._client
            pk2 = c.get_generation(1, block=head).pk2
            try:
                key = G2.from_bytes(pk2, "PK2 of generation 1")
            except EncodingError as exc:
                _log.error("fingerprint_unusable", reason=str(exc))
                return None
            assert self._chain_id is not None
            self._fingerprint = network_fingerprint(
                self._chain_id, to_address_bytes(c.address), key
            )
        return self._fingerprint

    def _extends(self, previous_head: int, block: BlockData) -> bool:
        """Whether the chain ending in `block` still holds the block the last view was read at."""
        if self._read_at is None or self._read_at[0] != previous_head:
            return False
        if block["number"] < previous_head:
            return False
        if block["number"] == previous_head + 1:
            parent = block["parentHash"]
        else:
            parent = self._client.w3.eth.get_block(previous_head)["hash"]
        return bytes(parent) == self._read_at[1]

    def _changes(self, first: int, last: int) -> _Changes:
        """What the governance events of blocks first..last change.

        Every state change of the contract emits an event; epoch keys, deals, complaints,
        justifications, confirmations and registration permits change nothing a view holds.
        """
        if self._topics is None:
            events = self._client.contract.events
            self._topics = {
                bytes.fromhex(str(events[name]().topic).removeprefix("0x")): name
                for name in (*_QUIET_EVENTS, *_NODE_EVENTS)
            }
        logs = self._client.w3.eth.get_logs(
            {"address": self._client.address, "fromBlock": first, "toBlock": last}
        )
        changed, nodes = False, set()
        for log in logs:
            name = self._topics.get(bytes(log["topics"][0])) if log["topics"] else None
            if name in _QUIET_EVENTS:
                continue
            changed = True
            if name in _NODE_EVENTS:
                nodes.add(to_checksum(bytes(log["topics"][1])[-ADDRESS_SIZE:]))
        return _Changes(any=changed, nodes=frozenset(nodes))

    def _registry(self, head: int) -> dict[bytes, NodeRecord]:
        """Every approved node: the whole registry (first view, or after a reorg)."""
        c = self._client
        nodes: dict[bytes, NodeRecord] = {}
        for address in c.get_nodes(block=head):
            record = self._approved(c.get_node(address, block=head))
            if record is not None:
                nodes[record.address] = record
        return nodes

    def _updated(
        self, nodes: Mapping[bytes, NodeRecord], changed: frozenset[str], head: int
    ) -> dict[bytes, NodeRecord]:
        """`nodes` with the entries of `changed` read again at `head` (one read each)."""
        updated = dict(nodes)
        for address in sorted(changed):
            updated.pop(to_address_bytes(address), None)
            record = self._approved(self._client.get_node(address, block=head))
            if record is not None:
                updated[record.address] = record
        return updated

    @staticmethod
    def _approved(info: NodeInfo) -> NodeRecord | None:
        if info.status is not NodeStatus.APPROVED:
            return None
        return node_record(info, strict=True)

    def _committee(
        self, generation: int, head: int, nodes: Mapping[bytes, NodeRecord]
    ) -> Committee | None:
        c = self._client
        info = c.get_generation(generation, block=head)
        if info.status not in (GenerationStatus.ACTIVE, GenerationStatus.RETIRING):
            return None
        epoch = c.get_epoch(info.active_epoch, block=head)
        if info.active_epoch not in self._decoded:
            try:
                self._decoded[info.active_epoch] = decode_public(
                    epoch.public_polynomial, epoch.threshold, epoch.pk2
                )
            except EncodingError as exc:
                _log.error(
                    "committee_unusable", generation=generation, epoch=epoch.epoch, reason=str(exc)
                )
                self._decoded[info.active_epoch] = None
        decoded = self._decoded[info.active_epoch]
        if decoded is None:
            return None
        members = []
        for address in epoch.members:
            raw = to_address_bytes(address)
            record = nodes.get(raw) or node_record(c.get_node(address, block=head), strict=False)
            assert record is not None  # strict=False always gives a record
            members.append(record)
        return Committee(
            generation=generation,
            epoch=info.active_epoch,
            threshold=epoch.threshold,
            members=tuple(members),
            public=decoded[0],
            pk2=decoded[1],
        )


class ChainWatcher:
    """Polls the chain every `poll_interval` seconds and publishes the newest `view`."""

    def __init__(
        self, client: GovernanceClient, *, poll_interval: float, stall_after: float = 2.0
    ) -> None:
        self.view: ChainView | None = None
        #: Why the last read failed because the RPC endpoints disagree; None when they agree.
        self.disagreement: str | None = None
        self._reader = _Reader(client)
        self._poll_interval = poll_interval
        self._stall_after = stall_after
        self._changed = asyncio.Condition()
        self._failing = False

    async def poll_once(self) -> ChainView | None:
        """Read the chain once; on an RPC error keep (and return) the old view. A read still
        unanswered after `stall_after` seconds is logged as `chain_unreachable` at once, not
        when the client's timeouts finally give up."""
        read = asyncio.ensure_future(asyncio.to_thread(self._reader.read, self.view))
        try:
            done, _ = await asyncio.wait({read}, timeout=self._stall_after)
            if not done:
                self._unreachable(f"no answer within {self._stall_after:g} s")
            view = await read
        except asyncio.CancelledError:
            read.cancel()
            raise
        except NoQuorum as exc:
            if not exc.disagreement:
                self._unreachable(str(exc))
            elif self.disagreement is None:
                _log.error("chain_no_quorum", error=str(exc), kept_head=self._head())
            if exc.disagreement:
                self.disagreement = str(exc)
            return self.view
        except RPC_ERRORS as exc:
            self._unreachable(str(exc))
            return self.view
        if self._failing:
            _log.info("chain_reachable", head=view.head)
            self._failing = False
        if self.disagreement is not None:
            _log.info("chain_quorum_restored", head=view.head)
            self.disagreement = None
        if self.view is None or view.head > self.view.head:
            self.view = view
            async with self._changed:
                self._changed.notify_all()
        return self.view

    async def run(self) -> None:
        """Forever: poll, publish, sleep. An RPC error keeps the old view (it ages)."""
        while True:
            started = time.monotonic()
            await self.poll_once()
            await asyncio.sleep(max(0.0, self._poll_interval - (time.monotonic() - started)))

    async def wait_for_view(self, predicate: Callable[[ChainView], bool]) -> ChainView:
        """The first view (current or future) for which `predicate` holds."""
        async with self._changed:
            while True:
                view = self.view
                if view is not None and predicate(view):
                    return view
                await self._changed.wait()

    def _unreachable(self, error: str) -> None:
        if not self._failing:
            _log.warning("chain_unreachable", error=error, kept_head=self._head())
            self._failing = True

    def _head(self) -> int | None:
        return None if self.view is None else self.view.head
