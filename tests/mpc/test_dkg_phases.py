"""Every (phase, call) pair of every role: the table's next phase, or PhaseError and no change.

As in h2's test_state_machines: each legal pair must land in a phase the table allows; each
other pair must raise PhaseError and leave the machine exactly as it was, which we show by
finishing the run afterwards and getting the same outcome as an untouched twin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.dealing import Input, Phase, StateMachine, Transitions, state_diagram
from mpc.dkg import TRANSITIONS, DkgFailure, DkgMember, DkgResult
from mpc.epochkey import EpochKeys
from mpc.errors import PhaseError
from mpc.messages import DealPublic, ShareBundle
from mpc.reshare import DEALER_TRANSITIONS, RECEIVER_TRANSITIONS, ReshareDealer, ReshareReceiver
from mpc.session import SessionContext, SessionKind
from mpc.sharing import Share
from mpc.types import MemberIndex
from tests.mpc.harness import (
    epoch_key,
    make_context,
    participants,
    previous_committee,
    run_dkg,
    seeded_rng,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mpc-dkg.md"


@dataclass
class Board:
    """Messages of one fault-free run of 3 members, as seen by member 1."""

    context: SessionContext
    keys: EpochKeys
    deals: list[DealPublic]
    bundles: list[ShareBundle]


def board_keys(ctx: SessionContext) -> EpochKeys:
    posted = {a: epoch_key(ctx, a).public_key.to_bytes() for a in participants(ctx)}
    return EpochKeys.from_posted(ctx, posted)


def dkg_board() -> Board:
    ctx = make_context(3, 2)
    keys = board_keys(ctx)
    outs = [
        DkgMember(ctx, MemberIndex(i), epoch_key(ctx, ctx.members[i - 1]), seeded_rng(i)).deal(keys)
        for i in (1, 2, 3)
    ]
    return Board(ctx, keys, [o.public for o in outs], [o.bundle for o in outs])


DKG = dkg_board()


def reshare_board() -> tuple[Board, dict[int, Share]]:
    before = run_dkg(3, 2, rng_seed=5)
    prev, shares = previous_committee(before)
    ctx = make_context(3, 2, epoch=2, kind=SessionKind.RESHARE, previous=prev)
    keys = board_keys(ctx)
    outs = [
        ReshareDealer(
            ctx, MemberIndex(i), s, epoch_key(ctx, prev.members[i - 1]), seeded_rng(i)
        ).deal(keys)
        for i, s in shares.items()
    ]
    return Board(ctx, keys, [o.public for o in outs], [o.bundle for o in outs]), dict(shares)


RESHARE, OLD_SHARES = reshare_board()


def call(machine: StateMachine, what: Input, board: Board, *, empty: bool = False) -> None:
    """Drive one input; `empty` feeds a board with no deals (the way to FAILED)."""
    method = getattr(machine, what.value)  # Input values are the method names
    if what is Input.DEAL:
        method(board.keys)
    elif what is Input.DEALS:
        method(board.keys, [] if empty else board.deals, board.bundles)
    else:
        method([])


@dataclass
class Role:
    name: str
    table: Transitions
    make: Callable[[], StateMachine]
    board: Board
    inputs: Sequence[Input]
    #: how to reach each phase from the start: inputs, and whether deals are empty
    paths: dict[Phase, tuple[Sequence[Input], bool]]
    finish: Sequence[Input]


ROLES = [
    Role(
        "DkgMember",
        TRANSITIONS,
        lambda: DkgMember(
            DKG.context,
            MemberIndex(1),
            epoch_key(DKG.context, DKG.context.members[0]),
            seeded_rng(1),
        ),
        DKG,
        list(Input),
        {
            Phase.DEAL: ([], False),
            Phase.DEALT: ([Input.DEAL], False),
            Phase.COMPLAIN: ([Input.DEAL, Input.DEALS], False),
            Phase.JUSTIFY: ([Input.DEAL, Input.DEALS, Input.COMPLAINTS], False),
            Phase.FINISHED: (
                [Input.DEAL, Input.DEALS, Input.COMPLAINTS, Input.JUSTIFICATIONS],
                False,
            ),
            Phase.FAILED: ([Input.DEALS], True),
        },
        [Input.DEAL, Input.DEALS, Input.COMPLAINTS, Input.JUSTIFICATIONS],
    ),
    Role(
        "ReshareDealer",
        DEALER_TRANSITIONS,
        lambda: ReshareDealer(
            RESHARE.context,
            MemberIndex(1),
            OLD_SHARES[1],
            epoch_key(RESHARE.context, RESHARE.context.members[0]),
            seeded_rng(1),
        ),
        RESHARE,
        [Input.DEAL, Input.COMPLAINTS],
        {
            Phase.DEAL: ([], False),
            Phase.DEALT: ([Input.DEAL], False),
            Phase.FINISHED: ([Input.DEAL, Input.COMPLAINTS], False),
        },
        [Input.DEAL, Input.COMPLAINTS],
    ),
    Role(
        "ReshareReceiver",
        RECEIVER_TRANSITIONS,
        lambda: ReshareReceiver(
            RESHARE.context,
            MemberIndex(1),
            epoch_key(RESHARE.context, RESHARE.context.members[0]),
            seeded_rng(9),
        ),
        RESHARE,
        [Input.DEALS, Input.COMPLAINTS, Input.JUSTIFICATIONS],
        {
            Phase.DEAL: ([], False),
            Phase.COMPLAIN: ([Input.DEALS], False),
            Phase.JUSTIFY: ([Input.DEALS, Input.COMPLAINTS], False),
            Phase.FINISHED: ([Input.DEALS, Input.COMPLAINTS, Input.JUSTIFICATIONS], False),
            Phase.FAILED: ([Input.DEALS], True),
        },
        [Input.DEALS, Input.COMPLAINTS, Input.JUSTIFICATIONS],
    ),
]


def reach(role: Role, phase: Phase) -> StateMachine:
    machine = role.make()
    inputs, empty = role.paths[phase]
    for what in inputs:
        call(machine, what, role.board, empty=empty and what is Input.DEALS)
    assert machine.phase is phase
    return machine


def outcome_of(machine: StateMachine) -> object:
    outcome = getattr(machine, "outcome", None)
    if isinstance(outcome, DkgResult):
        assert outcome.share is not None
        return (outcome.digest, outcome.share.value, outcome.faults)
    if isinstance(outcome, DkgFailure):
        return (outcome.reason, outcome.qual)
    return machine.phase


def finish(role: Role, machine: StateMachine) -> object:
    """Complete the canonical path from wherever the machine is."""
    for what in role.finish:
        if (machine.phase, what) in role.table:
            call(machine, what, role.board)
    return outcome_of(machine)


CASES = [
    pytest.param(role, phase, what, id=f"{role.name}-{phase.name}-{what.name}")
    for role in ROLES
    for phase in role.paths
    for what in role.inputs
]


def test_every_phase_of_every_table_is_reachable_and_tested() -> None:
    for role in ROLES:
        named = {p for (p, _) in role.table} | {q for qs in role.table.values() for q in qs}
        assert named == set(role.paths), role.name
        assert {w for (_, w) in role.table} <= set(role.inputs)


@pytest.mark.parametrize(("role", "phase", "what"), CASES)
def test_phase_and_input(role: Role, phase: Phase, what: Input) -> None:
    machine = reach(role, phase)
    if (phase, what) in role.table:
        call(machine, what, role.board)
        assert machine.phase in role.table[(phase, what)]
        return
    twin = reach(role, phase)
    with pytest.raises(
        PhaseError, match=f"{what.value}\\(\\) is not allowed in phase {phase.name}"
    ):
        call(machine, what, role.board)
    assert machine.phase is phase
    assert finish(role, machine) == finish(role, twin)


@settings(max_examples=15)
@given(data=st.data())
def test_random_call_sequences_follow_the_table(data: st.DataObject) -> None:
    role = data.draw(st.sampled_from(ROLES), label="role")
    machine = role.make()
    for _ in range(data.draw(st.integers(1, 6), label="length")):
        what = data.draw(st.sampled_from(role.inputs))
        before = machine.phase
        if (before, what) in role.table:
            call(machine, what, role.board)
            assert machine.phase in role.table[(before, what)]
        else:
            with pytest.raises(PhaseError):
                call(machine, what, role.board)
            assert machine.phase is before


def test_the_docs_show_the_tables() -> None:
    text = DOCS.read_text()
    for table in (TRANSITIONS, DEALER_TRANSITIONS, RECEIVER_TRANSITIONS):
        assert state_diagram(table) in text
