"""Distributed key generation (design §3.2): joint-Feldman with complaints, one member's view.

Legal phase changes of a `DkgMember` (any other (phase, call) pair raises `PhaseError` and
changes nothing; docs/mpc-dkg.md draws this table):

    DEAL     --deal()--------------> DEALT
    DEAL     --on_deals()----------> COMPLAIN | FAILED     (a member that never dealt)
    DEALT    --on_deals()----------> COMPLAIN | FAILED
    COMPLAIN --on_complaints()-----> JUSTIFY
    JUSTIFY  --on_justifications()-> FINISHED | FAILED

Rules: the member does no I/O and reads no clock. The caller (the node's phaser) publishes what
the methods return and calls the next method when the chain says the phase deadline passed,
passing everything seen on the board: the epoch keys of the Keys phase (`EpochKeys`), the
deals and their sealed-share bundles, the complaints, the justifications.
FAILED after `on_deals` means fewer than t dealers passed the public checks; after
`on_justifications`, that |QUAL| < t. Both are decided from board data only, so every honest
member reaches the same phase.

Result: s_j = Σ_{d∈QUAL} s_{d,j}, A = Σ_{d∈QUAL} C_d (PK1 = A_0), PK2 = Σ_{d∈QUAL} P_d, and the
confirmation digest of `compute_digest`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
from mpc.encoding import frame
from mpc.epochkey import EpochKeyPair, EpochKeys
from mpc.errors import ProtocolMisuse
from mpc.group import G1, G2, Rng
from mpc.judge import DealJudge
from mpc.messages import Complaint, Confirmation, DealPublic, Justification, ShareBundle
from mpc.session import SessionContext, SessionKind
from mpc.sharebox import Encapsulate, mlkem_encapsulate
from mpc.sharing import (
    Polynomial,
    PublicPolynomial,
    Share,
    evaluate_at_index,
    sum_public_polynomials,
)
from mpc.types import MemberIndex

_DIGEST_LABEL: Final = b"tkms-dkg-confirm:v1"

TRANSITIONS: Final[Transitions] = {
    (Phase.DEAL, Input.DEAL): frozenset({Phase.DEALT}),
    (Phase.DEAL, Input.DEALS): frozenset({Phase.COMPLAIN, Phase.FAILED}),
    (Phase.DEALT, Input.DEALS): frozenset({Phase.COMPLAIN, Phase.FAILED}),
    (Phase.COMPLAIN, Input.COMPLAINTS): frozenset({Phase.JUSTIFY}),
    (Phase.JUSTIFY, Input.JUSTIFICATIONS): frozenset({Phase.FINISHED, Phase.FAILED}),
}


def compute_digest(
    session_id: bytes, qual: Sequence[int], public: PublicPolynomial, pk2: G2
) -> bytes:
    """SHA-256(frame("tkms-dkg-confirm:v1", session id, QUAL as u16s, A_0, ..., A_{t-1}, PK2))."""
    qual_bytes = b"".join(i.to_bytes(2, "big") for i in sorted(qual))
    parts = [c.to_bytes() for c in public.commitments]
    return hashlib.sha256(
        frame(_DIGEST_LABEL, session_id, qual_bytes, *parts, pk2.to_bytes())
    ).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class DkgResult:
    """A finished run as seen by `member`.

    `share` is None only if this member holds no valid share from some dealer in QUAL (its
    complaint never reached the board); it still knows the group's public data.
    """

    session_id: bytes
    member: MemberIndex
    qual: tuple[MemberIndex, ...]
    share: Share | None
    public: PublicPolynomial
    pk2: G2
    digest: bytes
    faults: tuple[Fault, ...]

    @property
    def threshold(self) -> int:
        return self.public.threshold

    def verification_key(self, member: MemberIndex) -> G1:
        """V_i = Σ_k i^k·A_k."""
        return evaluate_at_index(self.public.commitments, member)

    def confirmation(self) -> Confirmation:
        return Confirmation(session_id=self.session_id, member=self.member, digest=self.digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class DkgFailure:
    """A failed run: why, which dealers qualified, and every fault seen."""

    qual: tuple[MemberIndex, ...]
    reason: str
    faults: tuple[Fault, ...]


class DkgMember(StateMachine):
    """One member's DKG state machine; see the module docstring for its phases."""

    TRANSITIONS = TRANSITIONS
    __slots__ = (
        "_context",
        "_encapsulate",
        "_judge",
        "_key",
        "_me",
        "_outcome",
        "_poly",
        "_rng",
        "_secrets",
        "_session_id",
    )

    def __init__(
        self,
        context: SessionContext,
        me: MemberIndex,
        epoch_key: EpochKeyPair,
        rng: Rng = os.urandom,
        encapsulate: Encapsulate = mlkem_encapsulate,
    ) -> None:
        if context.kind is not SessionKind.DKG:
            raise ProtocolMisuse(f"DkgMember needs a DKG session, got {context.kind.name}")
        if not 1 <= me <= context.n:
            raise ProtocolMisuse(f"member index {me} outside 1..{context.n}")
        super().__init__()
        self._context, self._me, self._rng = context, me, rng
        self._key, self._encapsulate = epoch_key, encapsulate
        self._session_id = context.session_id
        self._poly: Polynomial | None = None
        self._secrets: dict[MemberIndex, bytes] = {}
        self._outcome: DkgResult | DkgFailure | None = None
        self._judge = DealJudge(
            context=context,
            session_id=self._session_id,
            me=me,
            epoch_key=epoch_key,
            expected_constant=None,
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
        """The result once FINISHED or FAILED, else None."""
        return self._outcome

    @property
    def opened(self) -> tuple[MemberIndex, ...]:
        """The dealers whose valid share for us we hold (so far)."""
        return tuple(sorted(self._judge.shares))

    def deal(self, keys: EpochKeys) -> DealOutput:
        """Sample f; return the public deal and a share sealed to every other member's key.

        `keys` are the epoch keys on the board once the Keys phase is over; ours must be
        among them (else ProtocolMisuse: a dealer without a posted key cannot deal).
        """
        self._require(Input.DEAL)
        check_own_key(self._context, keys, self._me, self._key)
        poly = Polynomial.random(self._context.threshold - 1, self._rng)
        out, secrets = make_deal(
            self._context,
            self._session_id,
            self._me,
            poly,
            dealer_key=self._key,
            keys=keys,
            rng=self._rng,
            encapsulate=self._encapsulate,
            skip=self._me,
        )
        self._poly, self._secrets = poly, secrets
        self._enter(Input.DEAL, Phase.DEALT)
        return out

    def on_deals(
        self, keys: EpochKeys, deals: Iterable[DealPublic], bundles: Iterable[ShareBundle]
    ) -> tuple[Complaint, ...]:
        """Judge every deal on the board and open our sealed shares; return our complaints."""
        self._require(Input.DEALS)
        own = None if self._poly is None else (self._me, self._poly.evaluate(self._me))
        complaints = self._judge.judge_deals(keys, deals, bundles, own)
        if len(self._judge.deals) < self._context.threshold:
            self._fail(Input.DEALS)
        else:
            self._enter(Input.DEALS, Phase.COMPLAIN)
        return complaints

    def on_complaints(self, complaints: Iterable[Complaint]) -> tuple[Justification, ...]:
        """Take every complaint on the board; return our justifications, if we were accused."""
        self._require(Input.COMPLAINTS)
        self._judge.judge_complaints(complaints)
        out: tuple[Justification, ...] = ()
        if self._poly is not None:
            accusers = self._judge.accusers_of(self._me)
            out = make_justifications(self._session_id, self._me, self._secrets, accusers)
        self._enter(Input.COMPLAINTS, Phase.JUSTIFY)
        return out

    def on_justifications(self, justifications: Iterable[Justification]) -> DkgResult | DkgFailure:
        """Take every justification on the board; decide QUAL and finish."""
        self._require(Input.JUSTIFICATIONS)
        self._judge.judge_justifications(justifications)
        qual = self._judge.qual
        if len(qual) < self._context.threshold:
            return self._fail(Input.JUSTIFICATIONS)
        deals = self._judge.deals
        public = sum_public_polynomials(deals[d].commitments for d in qual)
        pk2 = deals[qual[0]].p
        for d in qual[1:]:
            pk2 = pk2 + deals[d].p
        shares = self._judge.shares
        share = None
        if all(d in shares for d in qual):
            total = shares[qual[0]]
            for d in qual[1:]:
                total = total + shares[d]
            share = Share(self._me, total)
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

    def _fail(self, what: Input) -> DkgFailure:
        qual = self._judge.qual
        failure = DkgFailure(
            qual=qual,
            reason=f"only {len(qual)} qualified dealers, need {self._context.threshold}",
            faults=self._judge.faults,
        )
        self._outcome = failure
        self._enter(what, Phase.FAILED)
        return failure
