"""The confirmation rule as a property: an epoch activates exactly when `threshold` members
have voted for the same (digest, polynomial, PK2), with that bucket's data, and never earlier."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from contracts import EpochKind, EpochStatus, GovernanceClient, TransactionFailed
from tests.contracts.conftest import PHASES, Poly, mine_until

AsSigner = Callable[[int], GovernanceClient]
BUCKETS = [(bytes([0xD0 + b]) * 32, Poly.make(0x60 + b, 5)) for b in range(3)]


@st.composite
def elections(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """A threshold and a sequence of (member account, bucket) votes, each member at most once."""
    threshold = draw(st.integers(1, 5))
    voters = draw(st.permutations([2, 3, 4, 5, 6]))
    count = draw(st.integers(1, 5))
    return threshold, [(voter, draw(st.integers(0, 2))) for voter in voters[:count]]


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(election=elections())
def test_activation_happens_at_the_first_bucket_to_reach_the_threshold(
    w3: Web3,
    governance: GovernanceClient,
    as_signer: AsSigner,
    committee: list[str],
    election: tuple[int, list[tuple[int, int]]],
) -> None:
    threshold, votes = election
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    try:
        _, epoch = governance.send_propose_epoch(EpochKind.DKG, committee, threshold, PHASES)
        mine_until(w3, governance.get_epoch(epoch).justify_deadline + 1)
        tally: Counter[int] = Counter()
        winner = None
        for voter, bucket in votes:
            digest, poly = BUCKETS[bucket]
            points = poly.points[:threshold]
            if winner is not None:
                try:
                    as_signer(voter).send_confirm(epoch, digest, points, poly.pk2)
                except TransactionFailed as exc:
                    assert exc.error_name == "EpochNotRunning"
                else:
                    raise AssertionError("a vote after activation was accepted")
                continue
            as_signer(voter).send_confirm(epoch, digest, points, poly.pk2)
            tally[bucket] += 1
            status = governance.get_epoch(epoch).status
            if tally[bucket] >= threshold:
                winner = bucket
                assert status is EpochStatus.ACTIVE
            else:
                assert status is EpochStatus.RUNNING
        final = governance.get_epoch(epoch)
        if winner is None:
            assert final.status is EpochStatus.RUNNING
            assert governance.get_latest_generation() == 0
        else:
            digest, poly = BUCKETS[winner]
            assert (final.digest, final.public_polynomial) == (digest, poly.points[:threshold])
            assert governance.get_generation(1).pk1 == poly.points[0]
    finally:
        w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
