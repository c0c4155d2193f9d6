"""Resharing and refresh (design §3.3): the same group key, a new committee and/or threshold.

Two roles. A `ReshareDealer` is an old member i: it deals g_i with g_i(0) = s_i and degree t'-1
(commitments D_i, P_i = s_i·G2) and answers complaints. A `ReshareReceiver` is a new member j:
it judges the deals and computes its new share. A node in both committees runs both.

Legal phase changes (any other (phase, call) pair raises `PhaseError` and changes nothing):

    ReshareDealer:    DEAL     --deal()--------------> DEALT
                      DEALT    --on_complaints()-----> FINISHED
    ReshareReceiver:  DEAL     --on_deals()----------> COMPLAIN | FAILED
                      COMPLAIN --on_complaints()-----> JUSTIFY
                      JUSTIFY  --on_justifications()-> FINISHED | FAILED

Checks beyond the DKG's (`mpc.dealing`): D_{i,0} must equal V_i, old member i's verification
key under the old public polynomial stated in the session context (never taken from a
dealer), and the complaint rules are the same. QUAL' needs at least t_old dealers, the OLD
threshold, else the run fails.

The λ set: exactly the first t_old dealers of QUAL' by index. Every member computes the same
QUAL' from board data, so they all pick the same set; t_old points determine the old
polynomial, so more would add cost and no security. With λ the Lagrange coefficients at 0 over
that set: s'_j = Σ λ_i·g_i(j), A'_k = Σ λ_i·D_{i,k}, PK2' = Σ λ_i·P_i. The run fails unless
A'_0 == PK1 and PK2' == PK2 of the previous committee: the group key never changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Final

from mpc.dealing import (
    DealOutput,
    Fault,
    Input,
    Phase,
    StateMachine,
    Transitions,
    check_own_key,
    make_deal,
    make_justifications,
)
from mpc.dkg import DkgFailure, DkgResult, compute_digest
from mpc.epochkey import EpochKeyPair, EpochKeys
from mpc.errors import ProtocolMisuse
from mpc.group import G1, G2, Rng, Scalar
from mpc.judge import DealJudge, answerable
from mpc.messages import Complaint, DealPublic, Justification, ShareBundle
from mpc.session import PreviousCommittee, SessionContext, SessionKind
from mpc.sharebox import Encapsulate, mlkem_encapsulate
from mpc.sharing import (
    Polynomial,
    PublicPolynomial,
    Share,
    evaluate_at_index,
    lagrange_coefficients_at_zero,
)
from mpc.types import MemberIndex

DEALER_TRANSITIONS: Final[Transitions] = {
    (Phase.DEAL, Input.DEAL): frozenset({Phase.DEALT}),
    (Phase.DEALT, Input.COMPLAINTS): frozenset({Phase.FINISHED}),
}
RECEIVER_TRANSITIONS: Final[Transitions] = {
    (Phase.DEAL, Input.DEALS): frozenset({Phase.COMPLAIN, Phase.FAILED}),
    (Phase.COMPLAIN, Input.COMPLAINTS): frozenset({Phase.JUSTIFY}),
    (Phase.JUSTIFY, Input.JUSTIFICATIONS): frozenset({Phase.FINISHED, Phase.FAILED}),
}


def _previous(context: SessionContext) -> PreviousCommittee:
    if context.kind is SessionKind.DKG or context.previous is None:
        raise ProtocolMisuse("resharing needs a RESHARE or REFRESH session")
    return context.previous


class ReshareDealer(StateMachine):
    """Old member `me` dealing its share `share` to the new committee."""

    TRANSITIONS = DEALER_TRANSITIONS
    __slots__ = (
        "_bundle",
        "_context",
        "_encapsulate",
        "_key",
        "_keys",
        "_me",
        "_poly",
        "_rng",
        "_secrets",
        "_session_id",
    )

    def __init__(
        self,
        context: SessionContext,
        me: MemberIndex,
        share: Share,
        epoch_key: EpochKeyPair,
        rng: Rng = os.urandom,
        encapsulate: Encapsulate = mlkem_encapsulate,
    ) -> None:
        previous = _previous(context)
        if not 1 <= me <= len(previous.members):
            raise ProtocolMisuse(f"old member index {me} outside 1..{len(previous.members)}")
        if share.member != me:
            raise ProtocolMisuse(f"share of member {share.member} given to dealer {me}")
        if G1.base_mul(share.value) != evaluate_at_index(previous.public.commitments, me):
            raise ProtocolMisuse("our share is not on the previous committee's public polynomial")
        super().__init__()
        self._context, self._me, self._rng = context, me, rng
        self._key, self._encapsulate = epoch_key, encapsulate
        self._session_id = context.session_id
        # Fixed here, once: the deal comes from this polynomial.
        self._poly = Polynomial.random(context.threshold - 1, rng, secret=share.value)
        self._keys: EpochKeys | None = None
        self._bundle: ShareBundle | None = None
        self._secrets: dict[MemberIndex, bytes] = {}

    @property
    def session_id(self) -> bytes:
        return self._session_id

    def deal(self, keys: EpochKeys) -> DealOutput:
        """The public deal and a share sealed to each new member's key (new-committee order)."""
        self._require(Input.DEAL)
        check_own_key(self._context, keys, self._me, self._key)
        out, secrets = make_deal(
            self._context,
            self._session_id,
            self._me,
            self._poly,
            dealer_key=self._key,
            keys=keys,
            rng=self._rng,
            encapsulate=self._encapsulate,
        )
        self._keys, self._bundle, self._secrets = keys, out.bundle, secrets
        self._enter(Input.DEAL, Phase.DEALT)
        return out

    def on_complaints(self, complaints: Iterable[Complaint]) -> tuple[Justification, ...]:
        """Answer the complaints against us that count (their reveal verifies)."""
        self._require(Input.COMPLAINTS)
        assert self._keys is not None and self._bundle is not None  # DEALT
        accusers = answerable(
            complaints,
            context=self._context,
            session_id=self._session_id,
            keys=self._keys,
            bundle=self._bundle,
        )
        out = make_justifications(self._session_id, self._me, self._secrets, accusers)
        self._enter(Input.COMPLAINTS, Phase.FINISHED)
        return out


class ReshareReceiver(StateMachine):
    """New member `me` receiving a share of the unchanged group key."""

    TRANSITIONS = RECEIVER_TRANSITIONS
    __slots__ = ("_context", "_judge", "_me", "_outcome", "_previous", "_session_id")

    def __init__(
        self,
        context: SessionContext,
        me: MemberIndex,
        epoch_key: EpochKeyPair,
        rng: Rng = os.urandom,
    ) -> None:
        previous = _previous(context)
        if not 1 <= me <= context.n:
            raise ProtocolMisuse(f"new member index {me} outside 1..{context.n}")
        super().__init__()
        self._context, self._me, self._previous = context, me, previous
        self._session_id = context.session_id
        self._outcome: DkgResult | DkgFailure | None = None
        old_public = previous.public.commitments
        self._judge = DealJudge(
            context=context,
            session_id=self._session_id,
            me=me,
            epoch_key=epoch_key,
            expected_constant=lambda i: evaluate_at_index(old_public, i),
            rng=rng,
        )

    @property
    def session_id(self) -> bytes:
        return self._session_id

    @property
    def faults(self) -> tuple[Fault, ...]:
        return self._judge.faults

    @property
    def outcome(self) -> DkgResult | DkgFailure | None:
        return self._outcome

    @property
    def opened(self) -> tuple[MemberIndex, ...]:
        """The dealers whose valid share for us we hold (so far)."""
        return tuple(sorted(self._judge.shares))

    def on_deals(
        self, keys: EpochKeys, deals: Iterable[DealPublic], bundles: Iterable[ShareBundle]
    ) -> tuple[Complaint, ...]:
        """Judge the old members' deals and open our sealed shares; return our complaints."""
        self._require(Input.DEALS)
        complaints = self._judge.judge_deals(keys, deals, bundles)
        if len(self._judge.deals) < self._previous.threshold:
            self._fail(Input.DEALS, self._too_few())
        else:
            self._enter(Input.DEALS, Phase.COMPLAIN)
        return complaints

    def on_complaints(self, complaints: Iterable[Complaint]) -> None:
        """Take every complaint on the board (the dealers answer them)."""
        self._require(Input.COMPLAINTS)
        self._judge.judge_complaints(complaints)
        self._enter(Input.COMPLAINTS, Phase.JUSTIFY)

    def on_justifications(self, justifications: Iterable[Justification]) -> DkgResult | DkgFailure:
        """Take every justification on the board; decide QUAL' and the new share."""
        self._require(Input.JUSTIFICATIONS)
        self._judge.judge_justifications(justifications)
        qual = self._judge.qual
        old_t = self._previous.threshold
        if len(qual) < old_t:
            return self._fail(Input.JUSTIFICATIONS, self._too_few())
        chosen = qual[:old_t]
        lambdas = lagrange_coefficients_at_zero(chosen)
        public, pk2 = self._combine(chosen, [lambdas[i] for i in chosen])
        if public.public_key != self._previous.public.public_key:
            return self._fail(Input.JUSTIFICATIONS, "A'_0 differs from the group key PK1")
        if pk2 != self._previous.pk2:
            return self._fail(Input.JUSTIFICATIONS, "the combined P differs from PK2")
        shares = self._judge.shares
        share = None
        if all(i in shares for i in chosen):
            share = Share(self._me, sum((lambdas[i] * shares[i] for i in chosen), Scalar(0)))
        result = DkgResult(
            session_id=self._session_id,
            member=self._me,
            qual=qual,
            share=share,
            public=public,
            pk2=pk2,
            digest=compute_digest(self._session_id, qual, public, pk2),
            faults=self._judge.faults,
        )
        self._outcome = result
        self._enter(Input.JUSTIFICATIONS, Phase.FINISHED)
        return result

    def _combine(
        self, chosen: Sequence[MemberIndex], lambdas: Sequence[Scalar]
    ) -> tuple[PublicPolynomial, G2]:
        """A'_k = Σ λ_i·D_{i,k} and Σ λ_i·P_i over the λ set."""
        deals = [self._judge.deals[i] for i in chosen]
        public = PublicPolynomial(
            tuple(
                G1.msm([d.commitments.commitments[k] for d in deals], lambdas)
                for k in range(self._context.threshold)
            )
        )
        return public, G2.msm([d.p for d in deals], lambdas)

    def _too_few(self) -> str:
        have, need = len(self._judge.qual), self._previous.threshold
        return f"only {have} qualified old dealers, need the old threshold {need}"

    def _fail(self, what: Input, reason: str) -> DkgFailure:
        failure = DkgFailure(qual=self._judge.qual, reason=reason, faults=self._judge.faults)
        self._outcome = failure
        self._enter(what, Phase.FAILED)
        return failure
