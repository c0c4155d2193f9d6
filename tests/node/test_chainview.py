"""Chain views on a real anvil: nodes and committees decoded strictly, a malformed committee
left out with a reason, and a watcher that keeps (and ages) its view through an outage."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from contracts import Anvil, EpochKind, GovernanceClient, Transactor, anvil_account, deploy
from mpc.anchor import network_fingerprint
from mpc.errors import EncodingError
from mpc.group import G2, Rng, Scalar
from mpc.sharing import Polynomial
from node.chainview import ChainView, ChainWatcher, decode_public
from node.errors import InvalidRequest

PHASES = (3, 5, 3, 3, 5)


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil() as chain:  # automine: one block per transaction
        yield chain


def counter_rng() -> Rng:
    state = {"n": 0}

    def draw(n: int) -> bytes:
        state["n"] += 1
        return hashlib.shake_256(state["n"].to_bytes(8, "big")).digest(n)

    return draw


def group_key(t: int) -> tuple[list[bytes], bytes, Polynomial]:
    poly = Polynomial.random(t - 1, counter_rng())
    points = [c.to_bytes() for c in poly.commitments().commitments]
    return points, G2.base_mul(poly.secret).to_bytes(), poly


class Chain:
    def __init__(self, anvil: Anvil) -> None:
        self.w3 = anvil.web3()
        self.owner = Transactor(self.w3, anvil_account(0))
        self.gov = GovernanceClient(self.w3, deploy(self.owner).governance, self.owner)
        self.nodes = [
            GovernanceClient(self.w3, self.gov.address, Transactor(self.w3, anvil_account(i)))
            for i in (2, 3, 4)
        ]

    def register(self, node: GovernanceClient, endpoint: str, approve: bool = True) -> None:
        assert node.transactor is not None
        self.gov.send_allow_node_registration(node.transactor.address)
        node.send_register_node(
            operator=node.transactor.address,
            endpoint=endpoint,
            tls_key_hash=b"\x01" * 32,
            deal_key=b"\x02" * 1216,
            evidence_hash=b"\x03" * 32,
        )
        if approve:
            address = node.transactor.address
            self.gov.send_approve_node(address, self.gov.get_node(address).registration_hash)

    def activate(self, points: list[bytes], pk2: bytes) -> int:
        members = [n.transactor.address for n in self.nodes]  # type: ignore[union-attr]
        _, epoch = self.gov.send_propose_epoch(EpochKind.DKG, members, len(points), PHASES)
        info = self.gov.get_epoch(epoch)
        for node in self.nodes:
            node.send_post_epoch_key(epoch, b"\x08" * 112)
        for node in self.nodes:
            node.send_submit_deal(
                epoch, [b"\x05" * 48] * len(points), b"\x06" * 96, b"\x07" * 64, b"\x09"
            )
        missing = info.justify_deadline + 1 - self.w3.eth.block_number
        self.w3.provider.make_request("anvil_mine", [hex(missing)])  # type: ignore[arg-type]
        for node in self.nodes[: len(points)]:
            node.send_confirm(epoch, b"\xd1" * 32, points, pk2)
        return epoch


def view_of(client: GovernanceClient) -> ChainView:
    async def poll() -> ChainView:
        view = await ChainWatcher(client, poll_interval=0.05).poll_once()
        assert view is not None
        return view

    return asyncio.run(poll())


def test_a_view_holds_approved_nodes_and_the_decoded_committee(anvil: Anvil) -> None:
    chain = Chain(anvil)
    first = view_of(chain.gov)
    assert (first.latest_generation, first.running_epoch, dict(first.nodes)) == (0, 0, {})
    assert first.committee() is None and first.chain_id == 31337 and first.fingerprint is None
    for k, node in enumerate(chain.nodes):
        chain.register(node, f"kms=10.0.0.{k}:1,peer=10.0.0.{k}:2")
    points, pk2, poly = group_key(2)
    epoch = chain.activate(points, pk2)
    view = view_of(chain.gov)
    assert view.head > first.head and view.latest_generation == 1
    committee = view.committee()
    assert committee is not None and view.committee(1) == committee
    assert (committee.epoch, committee.threshold, len(committee.members)) == (epoch, 2, 3)
    assert committee.public == poly.commitments()
    record = committee.members[1]
    assert (record.kms_endpoint, record.peer_endpoint) == ("10.0.0.1:1", "10.0.0.1:2")
    assert committee.index_of(record.address) == 2 and committee.index_of(b"\x00" * 20) is None
    assert committee.verification_key(3) == poly.commitments().evaluate(3)
    with pytest.raises(InvalidRequest, match=r"member index 4 outside 1\.\.3"):
        committee.verification_key(4)
    assert set(view.nodes) == {m.address for m in committee.members}
    assert view.head_age(view.head_timestamp + 5.0) == 5.0
    governance = bytes.fromhex(chain.gov.address[2:])
    assert view.fingerprint == network_fingerprint(31337, governance, G2.from_bytes(pk2, "pk2"))


def test_a_committee_with_malformed_public_data_is_left_out_with_a_reason(anvil: Anvil) -> None:
    chain = Chain(anvil)
    for k, node in enumerate(chain.nodes):
        chain.register(node, f"kms=10.0.0.{k}:1,peer=10.0.0.{k}:2")
    points, _, _ = group_key(2)
    other_pk2 = G2.base_mul(Scalar(99)).to_bytes()
    with capture_logs() as logs:
        chain.activate(points, other_pk2)  # PK2 does not match A_0
        view = view_of(chain.gov)
    assert view.latest_generation == 1 and view.committee() is None
    events = [e for e in logs if e["event"] == "committee_unusable"]
    assert len(events) == 1 and "does not match A_0" in events[0]["reason"]


def test_a_node_with_a_malformed_endpoint_is_left_out(anvil: Anvil) -> None:
    chain = Chain(anvil)
    chain.register(chain.nodes[0], "kms=10.0.0.1:1,peer=10.0.0.1:2")
    chain.register(chain.nodes[1], "just-a-host")
    chain.register(chain.nodes[2], "kms=10.0.0.3:1,peer=10.0.0.3:2", approve=False)
    with capture_logs() as logs:
        view = view_of(chain.gov)
    good = chain.nodes[0].transactor.address  # type: ignore[union-attr]
    assert list(view.nodes) == [bytes.fromhex(good[2:])]
    assert [e["event"] for e in logs] == ["node_record_invalid"]


@pytest.mark.parametrize(
    ("points", "pk2", "message"),
    [
        ([b"\x00" * 48], b"", "expected 2 points"),
        ([b"\xc0" + b"\x00" * 47, b"\xc0" + b"\x00" * 47], b"", "C_0: the identity is not allowed"),
        (None, b"\x01" * 95, "PK2: expected 96 bytes"),
    ],
)
def test_decode_public_is_strict(points: list[bytes] | None, pk2: bytes, message: str) -> None:
    good, good_pk2, _ = group_key(2)
    with pytest.raises(EncodingError, match=message):
        decode_public(tuple(points if points is not None else good), 2, pk2 or good_pk2)


def test_the_watcher_keeps_an_aging_view_through_an_outage_and_logs_it_once(
    tmp_path: Path,
) -> None:
    with Anvil() as lonely:
        w3 = lonely.web3()
        owner = Transactor(w3, anvil_account(0))
        client = GovernanceClient(w3, deploy(owner).governance, owner)
        watcher = ChainWatcher(client, poll_interval=0.05)

        async def before() -> ChainView | None:
            return await watcher.poll_once()

        seen = asyncio.run(before())
    assert seen is not None

    async def during() -> None:
        with capture_logs() as logs:
            task = asyncio.create_task(watcher.run())
            await asyncio.sleep(0.4)
            waiter = asyncio.create_task(watcher.wait_for_view(lambda v: v.head > seen.head))
            await asyncio.sleep(0.1)
            assert not waiter.done()
            waiter.cancel()
            task.cancel()
        assert watcher.view is seen
        assert [e["event"] for e in logs] == ["chain_unreachable"]
        assert (await watcher.wait_for_view(lambda v: True)) is seen

    asyncio.run(during())
    assert seen.head_age(time.time() + 60) >= 60


def count_registry_reads(client: GovernanceClient) -> Counter[str]:
    """Counts `get_node` / `get_nodes` calls on the real client (wrapping its methods)."""
    calls: Counter[str] = Counter()
    for name in ("get_node", "get_nodes"):
        real = getattr(client, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)

        setattr(client, name, counted)
    return calls


def test_a_registry_event_re_reads_only_the_entry_it_names(anvil: Anvil) -> None:
    chain = Chain(anvil)
    w3 = chain.w3
    nodes = chain.nodes + [
        GovernanceClient(w3, chain.gov.address, Transactor(w3, anvil_account(i)))
        for i in (5, 6, 7, 8)
    ]
    for k, node in enumerate(nodes):
        chain.register(node, f"kms=10.0.0.{k}:1,peer=10.0.0.{k}:2")
    reader = GovernanceClient(w3, chain.gov.address)
    reads = count_registry_reads(reader)
    moved = nodes[3].transactor.address  # type: ignore[union-attr]
    raw = bytes.fromhex(moved[2:])

    async def scenario() -> None:
        watcher = ChainWatcher(reader, poll_interval=0.05)

        async def poll() -> ChainView:
            reads.clear()
            view = await watcher.poll_once()
            assert view is not None
            return view

        first = await poll()
        assert len(first.nodes) == 7 and reads == {"get_nodes": 1, "get_node": 7}
        chain.register(nodes[3], "kms=10.9.9.9:1,peer=10.9.9.9:2", approve=False)
        pending = await poll()
        assert reads == {"get_node": 1}  # one changed entry: one read, no getNodes
        assert raw not in pending.nodes and len(pending.nodes) == 6
        assert all(pending.nodes[a] is first.nodes[a] for a in pending.nodes)  # kept, not re-read
        chain.gov.send_approve_node(moved, chain.gov.get_node(moved).registration_hash)
        approved = await poll()
        assert reads == {"get_node": 1}
        assert approved.nodes[raw].kms_endpoint == "10.9.9.9:1" and len(approved.nodes) == 7
        chain.gov.send_add_kms_measurement(b"\x11" * 32)  # not a registry event
        chain.gov.send_allow_node_registration("0x" + "ab" * 20)  # changes nothing a view holds
        later = await poll()
        assert reads == {} and later.head > approved.head and later.nodes == approved.nodes
        chain.gov.send_remove_node(moved)
        removed = await poll()
        assert reads == {"get_node": 1} and raw not in removed.nodes

    asyncio.run(scenario())


def test_after_a_reorg_the_registry_is_read_whole_again(anvil: Anvil) -> None:
    chain = Chain(anvil)
    chain.register(chain.nodes[0], "kms=10.0.0.1:1,peer=10.0.0.1:2")
    reader = GovernanceClient(chain.w3, chain.gov.address)
    reads = count_registry_reads(reader)
    provider = chain.w3.provider

    async def scenario() -> None:
        watcher = ChainWatcher(reader, poll_interval=0.05)
        await watcher.poll_once()
        snapshot = provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        chain.register(chain.nodes[1], "kms=10.0.0.2:1,peer=10.0.0.2:2")
        both = await watcher.poll_once()
        assert both is not None and len(both.nodes) == 2
        # The approval is reorged out: the chain returns to the snapshot and grows past `both`.
        provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
        missing = both.head + 2 - chain.w3.eth.block_number
        provider.make_request("anvil_mine", [hex(missing)])  # type: ignore[arg-type]
        reads.clear()
        after = await watcher.poll_once()
        assert after is not None and after.head > both.head
        assert reads["get_nodes"] == 1  # the whole registry, read again
        assert list(after.nodes) == [bytes.fromhex(chain.nodes[0].sender[2:])]

    asyncio.run(scenario())
