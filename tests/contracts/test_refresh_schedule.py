"""The refresh schedule on a real anvil: anyone may propose the owner's scheduled REFRESH once due.

Proactive refresh must not need an online owner key (the owner is meant to be a multisig or a
timelock), so `setRefreshSchedule(interval, phases)` lets anyone propose exactly that refresh
(same committee and threshold, the schedule's phases) `interval` blocks after the last epoch
ended; everything else stays the owner's.
"""

from __future__ import annotations

import pytest
from web3 import Web3

from contracts import (
    EpochKind,
    EpochStatus,
    GovernanceClient,
    InvalidInput,
    RefreshSchedule,
    TransactionFailed,
)
from tests.contracts.conftest import PHASES, Poly, mine_until
from tests.contracts.test_epochs import AsSigner, run_epoch

SCHEDULE = (3, 4, 3, 3, 5)
INTERVAL = 20


def _dkg(w3: Web3, governance: GovernanceClient, as_signer: AsSigner) -> int:
    info = run_epoch(
        w3, governance, as_signer, EpochKind.DKG, [2, 3, 4], 2, [2, 3, 4], Poly.make(1, 2)
    )
    assert info.status is EpochStatus.ACTIVE
    return info.finished_at


def test_anyone_proposes_the_scheduled_refresh_once_due_and_only_that(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    finished = _dkg(w3, governance, as_signer)
    keeper = as_signer(9)  # not a node, not the owner
    members = committee[:3]
    with pytest.raises(TransactionFailed, match=f"NotOwner\\(caller={keeper.sender}\\)"):
        keeper.send_propose_epoch(EpochKind.REFRESH, members, 2, SCHEDULE)  # no schedule yet
    with pytest.raises(TransactionFailed, match="NotOwner"):
        keeper.send_set_refresh_schedule(INTERVAL, SCHEDULE)
    receipt = governance.send_set_refresh_schedule(INTERVAL, SCHEDULE)
    assert governance.event_args(receipt, "RefreshScheduleSet") == [
        {"interval": INTERVAL, "phaseBlocks": list(SCHEDULE)}
    ]
    assert governance.get_refresh_schedule() == RefreshSchedule(
        interval=INTERVAL, phase_blocks=SCHEDULE
    )
    due = finished + INTERVAL
    assert governance.get_refresh_due_at() == due

    mine_until(w3, due - 1)  # gas estimates run at the latest block
    with pytest.raises(TransactionFailed, match=f"RefreshNotDue\\(dueAt={due}\\)"):
        keeper.send_propose_epoch(EpochKind.REFRESH, members, 2, SCHEDULE)
    mine_until(w3, due)
    with pytest.raises(TransactionFailed, match="RefreshPhasesDiffer"):
        keeper.send_propose_epoch(EpochKind.REFRESH, members, 2, (3, 4, 3, 3, 6))
    with pytest.raises(TransactionFailed, match="NotOwner"):  # other kinds stay the owner's
        keeper.send_propose_epoch(EpochKind.RESHARE, members, 2, SCHEDULE)
    with pytest.raises(TransactionFailed, match="RefreshChangesCommittee"):
        keeper.send_propose_epoch(EpochKind.REFRESH, committee[:4], 2, SCHEDULE)
    with pytest.raises(TransactionFailed, match="RefreshChangesCommittee"):
        keeper.send_propose_epoch(EpochKind.REFRESH, members, 3, SCHEDULE)
    receipt, epoch = keeper.send_propose_epoch(EpochKind.REFRESH, members, 2, SCHEDULE)
    assert receipt.block == due + 1
    info = governance.get_epoch(epoch)
    assert (info.kind, info.members, info.threshold, info.generation) == (
        EpochKind.REFRESH,
        tuple(members),
        2,
        1,
    )
    assert info.keys_deadline - info.proposed_at == SCHEDULE[0]
    assert info.confirm_deadline - info.justify_deadline == SCHEDULE[4]
    assert governance.get_refresh_due_at() is None  # an epoch runs
    with pytest.raises(TransactionFailed, match="EpochInProgress"):
        as_signer(8).send_propose_epoch(EpochKind.REFRESH, members, 2, SCHEDULE)


def test_the_interval_counts_from_the_last_epoch_whatever_its_outcome(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    """A failed refresh is retried no sooner than the schedule: a keeper cannot make the
    committee pay for epoch after epoch."""
    _dkg(w3, governance, as_signer)
    governance.send_set_refresh_schedule(INTERVAL, SCHEDULE)
    mine_until(w3, governance.get_refresh_due_at() or 0)
    _, epoch = as_signer(9).send_propose_epoch(EpochKind.REFRESH, committee[:3], 2, SCHEDULE)
    mine_until(w3, governance.get_epoch(epoch).confirm_deadline + 1)
    timed_out = as_signer(9).send_timeout_epoch(epoch)
    due = timed_out.block + INTERVAL
    assert governance.get_refresh_due_at() == due
    mine_until(w3, due - 1)
    with pytest.raises(TransactionFailed, match=f"RefreshNotDue\\(dueAt={due}\\)"):
        as_signer(9).send_propose_epoch(EpochKind.REFRESH, committee[:3], 2, SCHEDULE)
    # The owner is never bound by the schedule, and interval 0 turns it off.
    governance.send_set_refresh_schedule(0, (0, 0, 0, 0, 0))
    assert governance.get_refresh_due_at() is None
    mine_until(w3, due + 5)
    with pytest.raises(TransactionFailed, match="NotOwner"):
        as_signer(9).send_propose_epoch(EpochKind.REFRESH, committee[:3], 2, SCHEDULE)
    _, refresh = governance.send_propose_epoch(EpochKind.REFRESH, committee[:3], 2, PHASES)
    assert governance.get_epoch(refresh).status is EpochStatus.RUNNING


def test_no_refresh_before_the_first_generation(
    governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    governance.send_set_refresh_schedule(1, SCHEDULE)
    with pytest.raises(TransactionFailed, match="NoActiveGeneration"):
        as_signer(9).send_propose_epoch(EpochKind.REFRESH, committee[:3], 2, SCHEDULE)


@pytest.mark.parametrize(
    ("interval", "phases", "error"),
    [
        (10, (3, 3, 2, 3, 3), "complain phase of 2 blocks, at least 3"),
        (-1, SCHEDULE, "interval: must be a whole number of blocks"),
        (2**64, SCHEDULE, "interval: must be a whole number of blocks"),
    ],
)
def test_a_schedule_that_could_never_be_proposed_is_refused_before_sending(
    governance: GovernanceClient,
    interval: int,
    phases: tuple[int, int, int, int, int],
    error: str,
) -> None:
    with pytest.raises(InvalidInput, match=error):
        governance.send_set_refresh_schedule(interval, phases)
    assert governance.get_refresh_schedule().interval == 0
