"""`DeriveBatcher`: concurrent derivations' keys to one member go in one request (unit tests).

The member is a coroutine in process that answers each key with a partial naming the key's
purpose (so a test sees which answer reached which derivation) and records every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guest.derive_batch import DeriveBatcher
from mpc import InvalidPartial
from protos.tkms.v1 import kms_pb2


class Refused(Exception):
    """A refusal about the request's keys (not the member's fault)."""


class Down(Exception):
    """The member's fault: every derivation in the request shares it."""


def member_fault(exc: Exception) -> bool:
    return isinstance(exc, Down)


def keys(*purposes: str) -> list[kms_pb2.KeyRequest]:
    return [kms_pb2.KeyRequest(app_id=b"\xaa" * 20, purpose=p.encode()) for p in purposes]


def purposes(partials: Sequence[kms_pb2.Partial]) -> list[str]:
    return [p.y.decode() for p in partials]


class Member:
    """Answers after `gate` opens (so requests pile up meanwhile); refuses `refuse` purposes."""

    def __init__(self, *, refuse: str | None = None, down: bool = False, short: bool = False):
        self.requests: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.refuse, self.down, self.short = refuse, down, short

    async def send(
        self, member: int, ks: list[kms_pb2.KeyRequest]
    ) -> kms_pb2.DerivePartialResponse:
        names = [k.purpose.decode() for k in ks]
        self.requests.append(names)
        await self.gate.wait()
        if self.down:
            raise Down("unavailable")
        if self.refuse in names:
            raise Refused(f"refused {self.refuse}")
        answered = names[:-1] if self.short else names
        return kms_pb2.DerivePartialResponse(
            partials=[kms_pb2.Partial(member=member, y=n.encode()) for n in answered]
        )


async def held_then_released(
    member: Member, batcher: DeriveBatcher, wanted: list[list[str]]
) -> list[list[str] | BaseException]:
    """The first derivation is sent and held; the others queue behind it; then all answer."""
    member.gate.clear()
    first = asyncio.create_task(batcher.partials(1, keys(*wanted[0])))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.partials(1, keys(*w))) for w in wanted[1:]]
    await asyncio.sleep(0)
    member.gate.set()
    done = await asyncio.gather(first, *rest, return_exceptions=True)
    return [d if isinstance(d, BaseException) else purposes(d) for d in done]


def test_a_lone_derivation_is_sent_at_once_and_alone() -> None:
    async def go() -> None:
        member = Member()
        batcher = DeriveBatcher(member.send, member_fault)
        got = await asyncio.wait_for(batcher.partials(3, keys("disk", "tls")), 1)
        assert purposes(got) == ["disk", "tls"]
        assert [p.member for p in got] == [3, 3]
        assert member.requests == [["disk", "tls"]]
        assert (batcher.requests, batcher.keys) == (1, 2)

    asyncio.run(go())


def test_derivations_arriving_while_one_is_in_flight_share_the_next_request() -> None:
    async def go() -> None:
        member = Member()
        batcher = DeriveBatcher(member.send, member_fault)
        got = await held_then_released(member, batcher, [["a"], ["b"], ["c", "d"], ["e"]])
        assert got == [["a"], ["b"], ["c", "d"], ["e"]]
        assert member.requests == [["a"], ["b", "c", "d", "e"]]

    asyncio.run(go())


def test_a_request_carries_whole_derivations_up_to_max_keys() -> None:
    async def go() -> None:
        member = Member()
        batcher = DeriveBatcher(member.send, member_fault, max_keys=4)
        wanted = [["0"], ["1", "2"], ["3", "4"], ["5"], ["6", "7", "8", "9", "10"], ["11"]]
        got = await held_then_released(member, batcher, wanted)
        assert got == wanted
        # A derivation larger than the limit goes alone (the node then names the limit).
        assert member.requests == [
            ["0"],
            ["1", "2", "3", "4"],
            ["5"],
            ["6", "7", "8", "9", "10"],
            ["11"],
        ]

    asyncio.run(go())


def test_a_member_fault_fails_every_derivation_of_the_request_once() -> None:
    async def go() -> None:
        member = Member(down=True)
        batcher = DeriveBatcher(member.send, member_fault)
        got = await held_then_released(member, batcher, [["a"], ["b"], ["c"]])
        assert all(isinstance(g, Down) for g in got)
        assert member.requests == [["a"], ["b", "c"]]

    asyncio.run(go())


def test_a_refusal_is_asked_again_per_derivation_so_only_the_bad_one_fails() -> None:
    async def go() -> None:
        member = Member(refuse="bad")
        batcher = DeriveBatcher(member.send, member_fault)
        got = await held_then_released(member, batcher, [["a"], ["b"], ["bad"], ["c", "d"]])
        assert got[:2] == [["a"], ["b"]] and got[3] == ["c", "d"]
        assert isinstance(got[2], Refused)
        assert member.requests == [["a"], ["b", "bad", "c", "d"], ["b"], ["bad"], ["c", "d"]]

    asyncio.run(go())


def test_an_answer_of_the_wrong_length_names_the_member_for_every_derivation() -> None:
    async def go() -> None:
        member = Member(short=True)
        batcher = DeriveBatcher(member.send, member_fault)
        got = await held_then_released(member, batcher, [["a"], ["b"], ["c"]])
        for g in got:
            assert isinstance(g, InvalidPartial)
            assert g.member == 1
        assert "1 partials for 2 keys" in str(got[1])
        assert len(member.requests) == 2  # not asked again: the member's own fault

    asyncio.run(go())


def test_a_derivation_cancelled_while_queued_is_not_sent() -> None:
    async def go() -> None:
        member = Member()
        batcher = DeriveBatcher(member.send, member_fault)
        member.gate.clear()
        first = asyncio.create_task(batcher.partials(1, keys("a")))
        await asyncio.sleep(0)
        gone = asyncio.create_task(batcher.partials(1, keys("gone")))
        kept = asyncio.create_task(batcher.partials(1, keys("kept")))
        await asyncio.sleep(0)
        gone.cancel()
        member.gate.set()
        assert purposes(await first) == ["a"]
        assert purposes(await kept) == ["kept"]
        assert gone.cancelled()
        assert member.requests == [["a"], ["kept"]]

    asyncio.run(go())


def test_members_have_separate_lanes() -> None:
    async def go() -> None:
        member = Member()
        batcher = DeriveBatcher(member.send, member_fault)
        member.gate.clear()
        tasks = [asyncio.create_task(batcher.partials(m, keys(f"k{m}"))) for m in (1, 2, 1, 2)]
        await asyncio.sleep(0)
        member.gate.set()
        got = await asyncio.gather(*tasks)
        assert [g[0].member for g in got] == [1, 2, 1, 2]
        # Arrivals in the same turn of the loop share a request: per member, never across.
        assert sorted(map(tuple, member.requests)) == [("k1", "k1"), ("k2", "k2")]

    asyncio.run(go())


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        DeriveBatcher(Member().send, member_fault, max_keys=0)


@settings(max_examples=60, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 3)), min_size=1, max_size=24),
    max_keys=st.integers(1, 6),
    refuse=st.sampled_from([None, "k0.0", "k3.1"]),
)
def test_every_derivation_gets_the_answers_to_its_own_keys(
    arrivals: list[tuple[int, int]], max_keys: int, refuse: str | None
) -> None:
    """Derivations of 1-5 keys arrive with 0-3 loop turns between them: whatever batches
    form, each gets exactly its own partials, in order, or the refusal of its own keys, and
    no request exceeds max_keys unless it carries one derivation alone."""

    async def go() -> None:
        member = Member(refuse=refuse)

        async def slow(m: int, ks: list[kms_pb2.KeyRequest]) -> kms_pb2.DerivePartialResponse:
            await asyncio.sleep(0)
            return await member.send(m, ks)

        batcher = DeriveBatcher(slow, member_fault, max_keys=max_keys)
        wanted: list[list[str]] = []
        tasks = []
        for i, (size, pause) in enumerate(arrivals):
            names = [f"k{i}.{j}" for j in range(size)]
            wanted.append(names)
            tasks.append(asyncio.create_task(batcher.partials(1, keys(*names))))
            for _ in range(pause):
                await asyncio.sleep(0)
        got = await asyncio.gather(*tasks, return_exceptions=True)
        for names, answer in zip(wanted, got, strict=True):
            if refuse in names:
                assert isinstance(answer, Refused)
            else:
                assert not isinstance(answer, BaseException)
                assert purposes(answer) == names
        derivation_of = {n: i for i, names in enumerate(wanted) for n in names}
        for request in member.requests:
            carried = {derivation_of[n] for n in request}
            assert len(request) <= max_keys or len(carried) == 1
            # Whole derivations only.
            assert sum(len(wanted[i]) for i in carried) == len(request)

    asyncio.run(go())
