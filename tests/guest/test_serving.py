"""`guest.serving.Policy`: which keys the agent serves, from readings of the chain (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import GenerationStatus
from guest.serving import (
    ChainReading,
    Confirm,
    Fetch,
    GenerationState,
    KeysWithheld,
    Policy,
    Serving,
    confirm_interval,
)

ACTIVE, RETIRING, RETIRED = (
    GenerationStatus.ACTIVE,
    GenerationStatus.RETIRING,
    GenerationStatus.RETIRED,
)


def reading(
    head: int,
    latest: int = 1,
    blocks: int = 0,
    **generations: tuple[GenerationStatus, int],
) -> ChainReading:
    """`g1=(RETIRING, 50)`: generation 1 is retiring until block 50."""
    states = {int(k[1:]): GenerationState(*v) for k, v in generations.items()}
    return ChainReading(head, latest, blocks, states)


def started(first: ChainReading, *, pinned: int = 0, now: float = 0.0) -> Policy:
    """A policy after start-up fetched what it wanted at `first`."""
    policy = Policy(pinned=pinned, stale_seconds=10, now=now)
    actions = policy.observe(first, now)
    assert all(isinstance(a, Fetch) for a in actions)
    for action in actions:
        policy.fetched(action.generation, first.head)
    return policy


def refused(serving: Serving, generation: int = 0, now: float = 0.0) -> tuple[int, str]:
    with pytest.raises(KeysWithheld) as caught:
        serving.generation(generation, now)
    return caught.value.status, str(caught.value)


def test_one_generation_is_served_whatever_the_chain_does_without_opt_ins() -> None:
    policy = started(reading(10))
    assert policy.held == {1}
    assert policy.observe(reading(11), 1.0) == []
    serving = policy.serving(1.0)
    assert serving.generation(0, 1.0) == serving.generation(1, 1.0) == 1
    assert serving.expires is None  # nothing here depends on the view: dstack's behaviour
    # The RPC stops: still served (no live revocation, no rotation under way).
    policy.unreachable("connection refused")
    assert policy.stale(100.0) and policy.serving(100.0).generation(0, 100.0) == 1
    assert refused(serving, 2) == (
        404,
        "generation 2 is not served by this agent: it holds 1, and serves generation 1 by default",
    )


def test_a_rotation_is_served_old_by_default_until_the_window_ends() -> None:
    policy = started(reading(10))
    # Generation 2 activated at block 20; generation 1 retiring until block 30.
    rotated = reading(21, latest=2, g1=(RETIRING, 30))
    assert policy.watched(2) == {1}
    assert policy.observe(rotated, 1.0) == [Fetch(2)]
    serving = policy.serving(1.0)
    assert serving.generation(0, 1.0) == 1  # not fetched yet: the old one, by default too
    assert refused(serving, 2)[0] == 404
    policy.fetched(2, 21)
    assert policy.observe(reading(22, latest=2, g1=(RETIRING, 30)), 2.0) == []
    serving = policy.serving(2.0)
    assert (serving.generation(0, 2.0), serving.generation(2, 2.0)) == (1, 2)
    assert serving.describe() == ("serving generation 1 by default; generation 2 on request")
    # The window's last block still serves generation 1 by default; the next switches.
    policy.observe(reading(30, latest=2, g1=(RETIRING, 30)), 3.0)
    assert policy.serving(3.0).generation(0, 3.0) == 1
    policy.observe(reading(31, latest=2, g1=(RETIRING, 30)), 4.0)
    serving = policy.serving(4.0)
    assert (serving.generation(0, 4.0), serving.generation(1, 4.0)) == (2, 1)
    # Retired: refused with a reason, and its keys may go.
    policy.observe(reading(32, latest=2, g1=(RETIRED, 30)), 5.0)
    serving = policy.serving(5.0)
    assert serving.generation(0, 5.0) == 2
    assert refused(serving, 1, 5.0) == (
        410,
        "generation 1 was retired on chain: its keys are no longer served "
        "(generation 2 is the latest)",
    )
    assert policy.retired() == {1}


def test_an_early_retirement_switches_the_default_at_once() -> None:
    policy = started(reading(20, latest=2, g1=(RETIRING, 7200)))
    assert policy.held == {1, 2}  # both fetched at start-up, inside the window
    assert policy.serving(0.0).generation(0, 0.0) == 1
    policy.observe(reading(25, latest=2, g1=(RETIRED, 7200)), 1.0)
    serving = policy.serving(1.0)
    assert serving.generation(0, 1.0) == 2 and refused(serving, 1, 1.0)[0] == 410


def test_a_retired_old_generation_and_no_new_keys_yet_leaves_no_default() -> None:
    policy = started(reading(10))
    policy.observe(reading(21, latest=2, g1=(RETIRING, 30)), 1.0)
    policy.fetch_failed(2, "generation 2 has no link to generation 1 on chain yet")
    policy.observe(reading(22, latest=2, g1=(RETIRED, 30)), 2.0)
    status, message = refused(policy.serving(2.0), 0, 2.0)
    assert status == 503
    assert "generation 2's keys: generation 2 has no link to generation 1" in message


def test_a_stale_view_withholds_only_the_generations_it_cannot_vouch_for() -> None:
    policy = started(reading(20, latest=2, g1=(RETIRING, 7200)))
    assert policy.serving(0.0).expires == 10.0  # depends on the view now
    policy.unreachable("ReadTimeout: timed out")
    assert policy.stale(10.0) == ""
    serving = policy.serving(11.0)
    status, message = refused(serving, 0, 11.0)  # the default is generation 1
    assert status == 503 and "no new block from the agent's RPC for 11 s" in message
    assert "ReadTimeout: timed out" in message
    assert serving.generation(2, 11.0) == 2  # the latest stays served
    policy.observe(reading(21, latest=2, g1=(RETIRING, 7200)), 12.0)
    assert policy.serving(12.0).generation(0, 12.0) == 1


def test_a_snapshot_no_watch_refreshed_expires() -> None:
    policy = started(reading(20, latest=2, g1=(RETIRING, 7200)))
    serving = policy.serving(0.0)
    assert serving.generation(0, 10.0) == 1
    status, message = refused(serving, 2, 10.5)
    assert status == 503 and "chain watch has not updated its view" in message


def test_a_pinned_generation_stays_the_default() -> None:
    policy = Policy(pinned=1, stale_seconds=10, now=0.0)
    assert policy.watched(2) == {1}
    assert policy.observe(reading(20, latest=2, g1=(RETIRING, 30)), 0.0) == [Fetch(1)]
    policy.fetched(1, 20)
    assert policy.observe(reading(40, latest=2, g1=(RETIRING, 30)), 1.0) == []
    assert policy.serving(1.0).generation(0, 1.0) == 1  # past the window: still pinned
    policy.observe(reading(41, latest=2, g1=(RETIRED, 30)), 2.0)
    assert refused(policy.serving(2.0), 0, 2.0)[0] == 410


def test_live_revocation_confirms_every_half_window_and_withholds_on_refusal() -> None:
    policy = started(reading(100, blocks=6))
    assert policy.observe(reading(102, blocks=6), 1.0) == []
    assert policy.observe(reading(103, blocks=6), 1.5) == [Confirm(1, 103)]
    policy.confirmed(103)
    assert policy.serving(1.5).generation(0, 1.5) == 1
    assert policy.observe(reading(105, blocks=6), 2.0) == []
    assert policy.observe(reading(106, blocks=6), 2.5) == [Confirm(1, 106)]
    policy.refused(106, "node-1 permission_denied: Compose hash not allowed")
    serving = policy.serving(2.5)
    for generation in (0, 1):
        status, message = refused(serving, generation, 2.5)
        assert status == 403
        assert "at block 106 the KMS network refused this app's keys" in message
        assert "Compose hash not allowed" in message
        assert "Keys handed out before are beyond the agent's reach" in message
    # Asked again every 3 blocks; allowed again, served again.
    assert policy.observe(reading(108, blocks=6), 3.0) == []
    assert policy.observe(reading(109, blocks=6), 3.5) == [Confirm(1, 109)]
    policy.confirmed(109)
    assert policy.serving(3.5).generation(0, 3.5) == 1


def test_live_revocation_fails_closed_when_it_cannot_confirm() -> None:
    policy = started(reading(100, blocks=4))
    assert policy.observe(reading(102, blocks=4), 1.0) == [Confirm(1, 102)]
    policy.unconfirmed(102, "only 1 of 2 needed partials: node-2 unavailable")
    assert policy.observe(reading(103, blocks=4), 1.5) == [Confirm(1, 103)]  # next block
    policy.unconfirmed(103, "only 1 of 2 needed partials: node-2 unavailable")
    policy.observe(reading(104, blocks=4), 2.0)
    assert policy.serving(2.0).generation(0, 2.0) == 1  # 4 blocks since block 100
    policy.observe(reading(105, blocks=4), 2.5)
    status, message = refused(policy.serving(2.5))
    assert status == 503
    assert "last confirmed this app's keys at block 100, and the chain is at block 105" in message
    assert "node-2 unavailable" in message
    # A stale view is as bad: no block, no confirmation.
    policy.confirmed(105)
    assert policy.serving(3.0).generation(0, 3.0) == 1
    status, message = refused(policy.serving(16.0), 0, 16.0)
    assert status == 503 and "live revocation, 4 blocks" in message and "stale" in message


def test_opting_in_while_running_confirms_at_once_and_opting_out_stops_withholding() -> None:
    policy = started(reading(100))
    assert policy.observe(reading(500, blocks=10), 1.0) == [Confirm(1, 500)]
    assert policy.serving(1.0).generation(0, 1.0) == 1  # N blocks counted from block 500
    policy.refused(500, "node-1 permission_denied: Compose hash not allowed")
    assert refused(policy.serving(1.0))[0] == 403
    policy.observe(reading(501, blocks=0), 2.0)
    assert policy.serving(2.0).generation(0, 2.0) == 1


def test_confirmations_use_the_newest_generation_still_held() -> None:
    policy = started(reading(20, latest=2, blocks=2, g1=(RETIRING, 7200)))
    assert policy.observe(reading(21, latest=2, blocks=2, g1=(RETIRING, 7200)), 1.0) == [
        Confirm(2, 21)
    ]


@given(st.integers(min_value=1, max_value=10_000))
def test_the_confirm_interval_leaves_room_in_the_window(blocks: int) -> None:
    interval = confirm_interval(blocks)
    assert interval >= 1 and (interval * 2 <= blocks or blocks == 1)


@given(
    heads=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=40),
    blocks=st.integers(min_value=1, max_value=8),
    revoked_after=st.integers(min_value=0, max_value=30),
)
def test_a_revocation_stops_the_keys_within_n_blocks(
    heads: list[int], blocks: int, revoked_after: int
) -> None:
    """Whatever the block pace between readings, once the network refuses (from block R on),
    no key is served at a head beyond R + N, when every due confirmation is answered."""
    start = 1000
    policy = started(reading(start, blocks=blocks))
    revoked = start + revoked_after
    head, now = start, 0.0
    for step in heads:
        head += step
        now += 1.0
        for action in policy.observe(reading(head, blocks=blocks), now):
            assert isinstance(action, Confirm)
            if action.head >= revoked:
                policy.refused(action.head, "permission_denied")
            else:
                policy.confirmed(action.head)
        if head > revoked + blocks:
            with pytest.raises(KeysWithheld):
                policy.serving(now).generation(0, now)
