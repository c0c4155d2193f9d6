"""Epoch life cycles on a real anvil: DKG, reshare, refresh, rotation, timeouts, the digest rule."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from web3 import Web3

from contracts import (
    MIN_PHASE_BLOCKS,
    EpochInfo,
    EpochKind,
    EpochStatus,
    GenerationStatus,
    GovernanceClient,
    InvalidInput,
    Phase,
    TransactionFailed,
)
from tests.contracts.conftest import PHASES, Poly, mine, mine_until

AsSigner = Callable[[int], GovernanceClient]
DIGEST = b"\xd1" * 32
OTHER_DIGEST = b"\xd2" * 32
PROOF = b"\x77" * 80
SHARES = b"\x5a" * 300  # stand-in sealed shares: the contract only hashes them
REVEAL = b"\x33" * 112


def to_deal(w3: Web3, info: EpochInfo) -> None:
    mine_until(w3, info.keys_deadline + 1)


def deal_all(w3: Web3, as_signer: AsSigner, info: EpochInfo, dealers: list[int]) -> None:
    to_deal(w3, info)
    for i in dealers:
        commitments = [bytes([i, j]) * 24 for j in range(info.threshold)]
        as_signer(i).send_submit_deal(
            info.epoch, commitments, bytes([i]) * 96, PROOF, SHARES + bytes([i])
        )


def to_confirm(w3: Web3, info: EpochInfo) -> None:
    mine_until(w3, info.justify_deadline + 1)


def run_epoch(
    w3: Web3,
    governance: GovernanceClient,
    as_signer: AsSigner,
    kind: EpochKind,
    members: list[int],
    threshold: int,
    dealers: list[int],
    poly: Poly,
) -> EpochInfo:
    """Proposes, deals, confirms with every member; returns the epoch as it ends."""
    addresses = [as_signer(i).sender for i in members]
    _, epoch = governance.send_propose_epoch(kind, addresses, threshold, PHASES)
    info = governance.get_epoch(epoch)
    deal_all(w3, as_signer, info, dealers)
    to_confirm(w3, info)
    for i in members[:threshold]:
        as_signer(i).send_confirm(epoch, DIGEST, poly.points, poly.pk2)
    return governance.get_epoch(epoch)


def test_dkg_runs_through_every_phase_and_activates_generation_1(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    _, epoch = governance.send_propose_epoch(EpochKind.DKG, committee[:3], 2, PHASES)
    info = governance.get_epoch(epoch)
    assert (info.status, info.generation, info.dealers) == (EpochStatus.RUNNING, 1, info.members)
    assert (info.participants, info.keys_posted) == (3, 0)
    assert governance.get_phase(epoch) is Phase.KEYS
    assert governance.get_running_epoch() == epoch
    for i in (2, 3, 4):  # once every participant posted its key, the Deal phase begins at once
        as_signer(i).send_post_epoch_key(epoch, bytes([i]) * 1296)
    assert governance.get_phase(epoch) is Phase.DEAL
    assert governance.get_epoch(epoch).keys_posted == 3
    deal_all(w3, as_signer, info, [2, 3, 4])
    assert governance.fetch_deal_shares(
        epoch, committee[1], deal=governance.get_deal(epoch, committee[1])
    ) == SHARES + bytes([3])
    assert governance.fetch_epoch_key(epoch, committee[2]) == bytes([4]) * 1296
    assert governance.get_deal(epoch, committee[1]).commitments == (
        bytes([3, 0]) * 24,
        bytes([3, 1]) * 24,
    )
    mine_until(w3, info.complaint_deadline + 2)
    assert governance.get_phase(epoch, block=info.deal_deadline + 1) is Phase.COMPLAIN
    assert governance.get_phase(epoch, block=info.complaint_deadline + 1) is Phase.JUSTIFY
    assert governance.get_phase(epoch, block=info.deal_deadline) is Phase.DEAL
    to_confirm(w3, info)
    poly = Poly.make(9, 2)
    as_signer(2).send_confirm(epoch, DIGEST, poly.points, poly.pk2)
    assert governance.get_epoch(epoch).status is EpochStatus.RUNNING
    as_signer(4).send_confirm(epoch, DIGEST, poly.points, poly.pk2)
    done = governance.get_epoch(epoch)
    assert (done.status, done.digest, done.public_polynomial, done.pk2) == (
        EpochStatus.ACTIVE,
        DIGEST,
        poly.points,
        poly.pk2,
    )
    generation = governance.get_generation(1)
    assert (generation.status, generation.active_epoch) == (GenerationStatus.ACTIVE, epoch)
    assert (generation.pk1, generation.pk2) == (poly.points[0], poly.pk2)
    assert (governance.get_latest_generation(), governance.get_running_epoch()) == (1, 0)
    assert governance.get_phase(epoch) is Phase.FINISHED
    with pytest.raises(TransactionFailed, match=r"EpochNotRunning\(epoch=1, status=2\)"):
        as_signer(3).send_confirm(epoch, DIGEST, poly.points, poly.pk2)

    # What a node's chain watcher reads: the epoch's events, oldest first, filtered by name.
    events = governance.get_events(info.proposed_at, names=["DealSubmitted", "EpochActivated"])
    assert [(e.event, e.args["epoch"]) for e in events] == [("DealSubmitted", 1)] * 3 + [
        ("EpochActivated", 1)
    ]
    assert [e.args["dealer"] for e in events[:3]] == committee[:3]
    assert events[3].args["publicPolynomial"] == b"".join(poly.points)
    everything = governance.get_events(info.proposed_at, done.finished_at)
    assert [e.event for e in everything][:2] == ["EpochProposed", "EpochKeyPosted"]
    assert [e.event for e in everything][-3:] == ["Confirmed", "Confirmed", "EpochActivated"]
    with pytest.raises(InvalidInput, match="names: no event called 'Nope' in our contracts"):
        governance.get_events(0, names=["Nope"])


def test_minority_digest_or_forged_polynomial_never_activates(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    _, epoch = governance.send_propose_epoch(EpochKind.DKG, committee[:4], 3, PHASES)
    info = governance.get_epoch(epoch)
    deal_all(w3, as_signer, info, [2, 3, 4, 5])
    to_confirm(w3, info)
    honest, forged = Poly.make(1, 3), Poly.make(2, 3)
    as_signer(2).send_confirm(epoch, DIGEST, honest.points, honest.pk2)
    as_signer(3).send_confirm(epoch, OTHER_DIGEST, honest.points, honest.pk2)
    # The honest digest with a forged polynomial is a bucket of its own.
    as_signer(4).send_confirm(epoch, DIGEST, forged.points, forged.pk2)
    assert governance.get_epoch(epoch).status is EpochStatus.RUNNING
    assert governance.get_vote_count(epoch, DIGEST, honest.points, honest.pk2) == 1
    assert governance.get_vote_count(epoch, DIGEST, forged.points, forged.pk2) == 1
    with pytest.raises(TransactionFailed, match="AlreadyConfirmed"):
        as_signer(4).send_confirm(epoch, DIGEST, honest.points, honest.pk2)
    as_signer(5).send_confirm(epoch, DIGEST, honest.points, honest.pk2)
    assert governance.get_epoch(epoch).status is EpochStatus.RUNNING  # 2 of 3 needed
    mine_until(w3, info.confirm_deadline + 1)
    with pytest.raises(TransactionFailed, match=r"WrongPhase\(epoch=1, expected=5, actual=6\)"):
        as_signer(6).send_confirm(epoch, DIGEST, honest.points, honest.pk2)
    governance.send_timeout_epoch(epoch)
    assert governance.get_epoch(epoch).status is EpochStatus.FAILED
    assert governance.get_latest_generation() == 0


def test_complaints_and_justifications_follow_the_phases(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    _, epoch = governance.send_propose_epoch(EpochKind.DKG, committee[:3], 2, PHASES)
    info = governance.get_epoch(epoch)
    deal_all(w3, as_signer, info, [2, 3])
    with pytest.raises(TransactionFailed, match=r"WrongPhase\(epoch=1, expected=3, actual=2\)"):
        as_signer(4).send_complain(epoch, committee[0], REVEAL)
    mine_until(w3, info.deal_deadline + 1)
    with pytest.raises(TransactionFailed, match="WrongPhase"):
        as_signer(2).send_submit_deal(epoch, Poly.make(1, 2).points, b"\x01" * 96, PROOF, SHARES)
    as_signer(4).send_complain(epoch, committee[0], REVEAL)
    as_signer(4).send_complain(epoch, committee[2], REVEAL)  # a dealer that never dealt
    with pytest.raises(TransactionFailed, match="ComplaintExists"):
        as_signer(4).send_complain(epoch, committee[0], REVEAL)
    with pytest.raises(TransactionFailed, match=f"NotAMember\\(epoch=1, caller={committee[4]}\\)"):
        as_signer(6).send_complain(epoch, committee[0], REVEAL)
    with pytest.raises(TransactionFailed, match=f"NotADealer\\(epoch=1, caller={committee[4]}\\)"):
        as_signer(2).send_complain(epoch, committee[4], REVEAL)
    with pytest.raises(InvalidInput, match="reveal: expected 112 bytes, got 111"):
        as_signer(3).send_complain(epoch, committee[0], REVEAL[1:])
    with pytest.raises(TransactionFailed, match="WrongPhase"):
        as_signer(2).send_justify(epoch, committee[2], b"\x05" * 32)
    mine_until(w3, info.complaint_deadline + 1)
    with pytest.raises(TransactionFailed, match="NoSuchComplaint"):
        as_signer(3).send_justify(epoch, committee[2], b"\x05" * 32)
    with pytest.raises(InvalidInput, match="answer: expected 32 bytes, got 31"):
        as_signer(2).send_justify(epoch, committee[2], b"\x05" * 31)
    as_signer(2).send_justify(epoch, committee[2], b"\x05" * 32)
    with pytest.raises(TransactionFailed, match="AlreadyJustified"):
        as_signer(2).send_justify(epoch, committee[2], b"\x06" * 32)
    complaints = governance.get_complaints(epoch)
    assert [(c.accuser, c.accused, c.reveal, c.justified, c.answer) for c in complaints] == [
        (committee[2], committee[0], REVEAL, True, b"\x05" * 32),
        (committee[2], committee[2], REVEAL, False, b""),
    ]


def test_a_removed_member_can_no_longer_complain(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    _, epoch = governance.send_propose_epoch(EpochKind.DKG, committee[:3], 2, PHASES)
    info = governance.get_epoch(epoch)
    mine_until(w3, info.deal_deadline + 1)
    governance.send_remove_node(committee[2])
    with pytest.raises(TransactionFailed, match=f"NodeNotApproved\\(node={committee[2]}\\)"):
        as_signer(4).send_complain(epoch, committee[0], REVEAL)
    as_signer(3).send_complain(epoch, committee[0], REVEAL)
    assert len(governance.get_complaints(epoch)) == 1


def test_deal_rules_lengths_duplicates_and_removed_dealers(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    _, epoch = governance.send_propose_epoch(EpochKind.DKG, committee[:3], 3, PHASES)
    good = Poly.make(1, 3)
    with pytest.raises(TransactionFailed, match=r"WrongPhase\(epoch=1, expected=2, actual=1\)"):
        as_signer(2).send_submit_deal(epoch, good.points, good.pk2, PROOF, SHARES)
    to_deal(w3, governance.get_epoch(epoch))
    with pytest.raises(
        TransactionFailed, match=r"InvalidLength\(field=.commitments., length=96, min=144"
    ):
        as_signer(2).send_submit_deal(epoch, good.points[:2], good.pk2, PROOF, SHARES)
    with pytest.raises(InvalidInput, match=r"commitments\[1\]: expected 48 bytes, got 47"):
        as_signer(2).send_submit_deal(
            epoch, [good.points[0], b"\x01" * 47], good.pk2, PROOF, SHARES
        )
    with pytest.raises(TransactionFailed, match=r"InvalidLength\(field=.proof., length=0"):
        as_signer(2).send_submit_deal(epoch, good.points, good.pk2, b"", SHARES)
    with pytest.raises(InvalidInput, match="shares: must not be empty"):
        as_signer(2).send_submit_deal(epoch, good.points, good.pk2, PROOF, b"")
    with pytest.raises(TransactionFailed, match=r"InvalidLength\(field=.shares., length=73729"):
        as_signer(2).send_submit_deal(epoch, good.points, good.pk2, PROOF, bytes(73729))
    as_signer(2).send_submit_deal(epoch, good.points, good.pk2, PROOF, SHARES)
    with pytest.raises(TransactionFailed, match="DealAlreadySubmitted"):
        as_signer(2).send_submit_deal(epoch, good.points, good.pk2, PROOF, SHARES)
    with pytest.raises(TransactionFailed, match="NotADealer"):
        as_signer(6).send_submit_deal(epoch, good.points, good.pk2, PROOF, SHARES)
    governance.send_remove_node(committee[1])
    with pytest.raises(TransactionFailed, match=f"NodeNotApproved\\(node={committee[1]}\\)"):
        as_signer(3).send_submit_deal(epoch, good.points, good.pk2, PROOF, SHARES)
    deal = governance.get_deal(epoch, committee[0])
    assert governance.fetch_deal_shares(epoch, committee[0], deal=deal) == SHARES
    assert governance.get_deal(epoch, committee[2]).shares_hash == bytes(32)


def test_timeout_only_after_the_confirm_deadline_then_a_new_epoch_may_start(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    _, epoch = governance.send_propose_epoch(EpochKind.DKG, committee[:3], 2, PHASES)
    info = governance.get_epoch(epoch)
    with pytest.raises(TransactionFailed, match="EpochInProgress"):
        governance.send_propose_epoch(EpochKind.DKG, committee[:3], 2, PHASES)
    mine_until(w3, info.confirm_deadline)
    with pytest.raises(
        TransactionFailed, match=f"DeadlineNotPassed\\(epoch=1, deadline={info.confirm_deadline}"
    ):
        as_signer(9).send_timeout_epoch(epoch)
    mine(w3, 1)
    assert governance.get_phase(epoch) is Phase.EXPIRED
    receipt = as_signer(9).send_timeout_epoch(epoch)  # anyone may
    assert governance.event_args(receipt, "EpochFailed") == [{"epoch": 1, "reason": 0}]
    failed = governance.get_epoch(epoch)
    assert (failed.status, failed.finished_at) == (EpochStatus.FAILED, receipt.block)
    with pytest.raises(TransactionFailed, match=r"EpochNotRunning\(epoch=1, status=4\)"):
        governance.send_timeout_epoch(epoch)
    _, second = governance.send_propose_epoch(EpochKind.DKG, committee[:3], 2, PHASES)
    assert (second, governance.get_epoch(second).generation) == (2, 1)


def test_only_the_owner_proposes_or_cancels_and_cancel_is_one_call(
    governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    with pytest.raises(TransactionFailed, match=f"NotOwner\\(caller={committee[0]}\\)"):
        as_signer(2).send_propose_epoch(EpochKind.DKG, committee[:3], 2, PHASES)
    _, epoch = governance.send_propose_epoch(EpochKind.DKG, committee[:3], 2, PHASES)
    with pytest.raises(TransactionFailed, match="NotOwner"):
        as_signer(2).send_cancel_epoch(epoch)
    receipt = governance.send_cancel_epoch(epoch)
    assert governance.event_args(receipt, "EpochFailed") == [{"epoch": 1, "reason": 1}]
    assert governance.get_running_epoch() == 0
    with pytest.raises(TransactionFailed, match=r"NoSuchEpoch\(epoch=7\)"):
        governance.send_cancel_epoch(7)


@pytest.mark.parametrize(
    ("members", "threshold", "phases", "error"),
    [
        ([0, 1], 3, PHASES, r"threshold: must be 1..2, got 3"),
        ([0, 1], 0, PHASES, r"threshold: must be 1..2, got 0"),
        ([0, 0], 1, PHASES, "DuplicateMember"),
        ([0, 1], 1, (3, 3, 2, 3, 3), "complain phase of 2 blocks, at least 3"),
        ([0, 1], 1, (3, 3, 3, 3), r"need 5 lengths"),
        ([0, 9], 1, PHASES, "NodeNotApproved"),
    ],
)
def test_propose_rejects_bad_committees(
    governance: GovernanceClient,
    as_signer: AsSigner,
    committee: list[str],
    members: list[int],
    threshold: int,
    phases: tuple[int, int, int, int, int],
    error: str,
) -> None:
    outsider = as_signer(9).sender
    addresses = [committee[m] if m < 9 else outsider for m in members]
    with pytest.raises((TransactionFailed, InvalidInput), match=error):
        governance.send_propose_epoch(EpochKind.DKG, addresses, threshold, phases)
    assert governance.get_epoch_count() == 0


def test_the_contract_itself_rejects_a_threshold_above_the_committee(
    governance: GovernanceClient, committee: list[str]
) -> None:
    """The client checks the threshold too; send the raw call to reach the contract's check."""
    assert governance.transactor is not None
    propose = governance.contract.functions.proposeEpoch(0, committee[:2], 3, list(PHASES))
    with pytest.raises(TransactionFailed, match=r"InvalidThreshold\(threshold=3, members=2\)"):
        governance.transactor.send(propose)


@pytest.mark.parametrize("phase", range(5))
def test_the_contract_refuses_phases_shorter_than_its_minimum(
    governance: GovernanceClient, committee: list[str], phase: int
) -> None:
    """F-10: a 1- or 2-block phase leaves nodes no block to judge and publish in; refused."""
    assert governance.transactor is not None
    assert MIN_PHASE_BLOCKS == 3
    short = [3] * 5
    short[phase] = 2
    propose = governance.contract.functions.proposeEpoch(0, committee[:2], 1, short)
    with pytest.raises(
        TransactionFailed, match=rf"PhaseTooShort\(phase={phase}, blocks=2, minimum=3\)"
    ):
        governance.transactor.send(propose)
    assert governance.get_epoch_count() == 0
    _, epoch = governance.send_propose_epoch(EpochKind.DKG, committee[:2], 1, (3, 3, 3, 3, 3))
    info = governance.get_epoch(epoch)
    assert info.confirm_deadline - info.proposed_at == 15


def test_epoch_keys_come_from_participants_once_and_only_in_the_keys_phase(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    _, epoch = governance.send_propose_epoch(EpochKind.DKG, committee[:3], 2, PHASES)
    info = governance.get_epoch(epoch)
    with pytest.raises(
        TransactionFailed, match=f"NotAParticipant\\(epoch=1, caller={committee[4]}"
    ):
        as_signer(6).send_post_epoch_key(epoch, b"\x01" * 112)
    with pytest.raises(TransactionFailed, match=r"InvalidLength\(field=.key., length=2049"):
        as_signer(2).send_post_epoch_key(epoch, bytes(2049))
    receipt = as_signer(2).send_post_epoch_key(epoch, b"\x02" * 1296)
    key_hash = governance.get_epoch_key_hash(epoch, committee[0])
    assert key_hash == Web3.keccak(b"\x02" * 1296)
    assert governance.event_args(receipt, "EpochKeyPosted") == [
        {"epoch": 1, "node": committee[0], "keyHash": key_hash}
    ]
    with pytest.raises(TransactionFailed, match="EpochKeyAlreadyPosted"):
        as_signer(2).send_post_epoch_key(epoch, b"\x03" * 1296)
    assert governance.fetch_epoch_key(epoch, committee[1]) is None  # not posted
    assert governance.get_phase(epoch) is Phase.KEYS  # 1 of 3 keys
    mine_until(w3, info.keys_deadline + 1)
    assert governance.get_phase(epoch) is Phase.DEAL  # the deadline ends the Keys phase anyway
    with pytest.raises(TransactionFailed, match=r"WrongPhase\(epoch=1, expected=1, actual=2\)"):
        as_signer(3).send_post_epoch_key(epoch, b"\x03" * 1296)
    assert governance.fetch_epoch_key(epoch, committee[0]) == b"\x02" * 1296


def test_a_reshare_counts_dealers_that_leave_among_the_key_posters(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    run_epoch(w3, governance, as_signer, EpochKind.DKG, [2, 3, 4], 2, [2, 3, 4], Poly.make(1, 2))
    _, epoch = governance.send_propose_epoch(EpochKind.RESHARE, committee[2:], 2, PHASES)
    info = governance.get_epoch(epoch)
    assert info.participants == 5  # members 4, 5, 6 and the leaving dealers 2 and 3
    for i in (2, 3, 4, 5, 6):
        assert governance.get_phase(epoch) is Phase.KEYS
        as_signer(i).send_post_epoch_key(epoch, bytes([i]) * 112)
    assert governance.get_phase(epoch) is Phase.DEAL


def test_kinds_need_the_right_generation_state(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    for kind in (EpochKind.RESHARE, EpochKind.REFRESH, EpochKind.ROTATE):
        with pytest.raises(TransactionFailed, match="NoActiveGeneration"):
            governance.send_propose_epoch(kind, committee[:3], 2, PHASES)
    run_epoch(w3, governance, as_signer, EpochKind.DKG, [2, 3, 4], 2, [2, 3, 4], Poly.make(1, 2))
    with pytest.raises(TransactionFailed, match=r"GenerationExists\(generation=1\)"):
        governance.send_propose_epoch(EpochKind.DKG, committee[:3], 2, PHASES)
    with pytest.raises(TransactionFailed, match="RefreshChangesCommittee"):
        governance.send_propose_epoch(EpochKind.REFRESH, committee[1:4], 2, PHASES)
    with pytest.raises(TransactionFailed, match="RefreshChangesCommittee"):
        governance.send_propose_epoch(EpochKind.REFRESH, committee[:3], 3, PHASES)


def test_reshare_moves_the_key_to_a_new_committee_and_keeps_it(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    group = Poly.make(1, 2)
    first = run_epoch(w3, governance, as_signer, EpochKind.DKG, [2, 3, 4], 2, [2, 3, 4], group)
    _, epoch = governance.send_propose_epoch(EpochKind.RESHARE, committee[1:], 3, PHASES)
    info = governance.get_epoch(epoch)
    assert (info.generation, info.previous_epoch, info.previous_threshold) == (1, first.epoch, 2)
    assert info.dealers == first.members  # the old committee deals its shares
    to_deal(w3, info)
    with pytest.raises(TransactionFailed, match="NotADealer"):
        as_signer(6).send_submit_deal(epoch, Poly.make(6, 3).points, b"\x06" * 96, PROOF, SHARES)
    deal_all(w3, as_signer, info, [2, 3, 4])
    to_confirm(w3, info)
    moved = Poly.make(5, 3, pk1=group.points[0])
    wrong_key = Poly.make(5, 3)
    with pytest.raises(TransactionFailed, match=r"GroupKeyChanged\(epoch=2\)"):
        as_signer(3).send_confirm(epoch, DIGEST, wrong_key.points, group.pk2)
    with pytest.raises(TransactionFailed, match="GroupKeyChanged"):
        as_signer(3).send_confirm(epoch, DIGEST, moved.points, moved.pk2)
    for i in (3, 4, 5):
        as_signer(i).send_confirm(epoch, DIGEST, moved.points, group.pk2)
    assert governance.get_epoch(epoch).status is EpochStatus.ACTIVE
    assert governance.get_epoch(first.epoch).status is EpochStatus.SUPERSEDED
    generation = governance.get_generation(1)
    assert (generation.active_epoch, generation.pk1) == (epoch, group.points[0])
    assert governance.get_latest_generation() == 1
    # Old shares stay readable at an earlier block: nodes can still serve from a pinned view.
    assert governance.get_generation(1, block=info.proposed_at).active_epoch == first.epoch


def test_refresh_keeps_committee_and_threshold(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    group = Poly.make(1, 2)
    first = run_epoch(w3, governance, as_signer, EpochKind.DKG, [2, 3, 4], 2, [2, 3, 4], group)
    fresh = Poly.make(8, 2, pk1=group.points[0])
    second = run_epoch(
        w3,
        governance,
        as_signer,
        EpochKind.REFRESH,
        [2, 3, 4],
        2,
        [2, 3, 4],
        Poly(fresh.points, group.pk2),
    )
    assert (second.kind, second.status, second.generation) == (
        EpochKind.REFRESH,
        EpochStatus.ACTIVE,
        1,
    )
    assert second.public_polynomial[1] != first.public_polynomial[1]
    assert governance.get_generation(1).active_epoch == second.epoch


def test_rotation_starts_a_new_generation_and_the_old_one_retires_after_its_window(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    run_epoch(w3, governance, as_signer, EpochKind.DKG, [2, 3, 4], 2, [2, 3, 4], Poly.make(1, 2))
    rotated = run_epoch(
        w3, governance, as_signer, EpochKind.ROTATE, [3, 4, 5], 2, [3, 4, 5], Poly.make(2, 2)
    )
    assert (rotated.generation, governance.get_latest_generation()) == (2, 2)
    old, new = governance.get_generation(1), governance.get_generation(2)
    assert old.status is GenerationStatus.RETIRING
    assert (
        old.retire_after
        == rotated.finished_at + governance.get_retirement_window()
        == rotated.finished_at + 5
    )
    assert (new.status, new.pk1) == (GenerationStatus.ACTIVE, Poly.make(2, 2).points[0])
    with pytest.raises(
        TransactionFailed,
        match=f"RetirementWindowOpen\\(generation=1, retireAfter={old.retire_after}",
    ):
        as_signer(9).send_retire_generation(1)
    with pytest.raises(TransactionFailed, match=r"GenerationNotRetiring\(generation=2, status=1\)"):
        governance.send_retire_generation(2)
    mine_until(w3, old.retire_after + 1)
    receipt = as_signer(9).send_retire_generation(1)
    assert governance.event_args(receipt, "GenerationRetired") == [{"generation": 1}]
    assert governance.get_generation(1).status is GenerationStatus.RETIRED


def test_the_owner_may_retire_a_previous_generation_at_once(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    governance.send_set_retirement_window(1000)
    run_epoch(w3, governance, as_signer, EpochKind.DKG, [2, 3, 4], 2, [2, 3, 4], Poly.make(1, 2))
    run_epoch(w3, governance, as_signer, EpochKind.ROTATE, [2, 3, 4], 2, [2, 3, 4], Poly.make(2, 2))
    with pytest.raises(TransactionFailed, match="NotOwner"):
        as_signer(2).send_set_retirement_window(1)
    governance.send_retire_generation(1)
    assert governance.get_generation(1).status is GenerationStatus.RETIRED
    mine(w3, 1)
