"""Judging the deals of one run from one receiver's point of view (DKG and reshare alike).

Rules of this module:

* Whether a dealer is in QUAL depends only on what every member sees on the board (the deals,
  complaints and justifications on chain), so all honest members compute the same QUAL. What
  only this member sees (its encrypted shares) can only lead to a complaint, which the board
  then settles. `FaultKind.is_local` marks those faults.
* Checks run in a fixed order per dealer and the first failure is the one recorded: session,
  index, duplicate/equivocation, number of commitments, constant term (reshare), proof of
  knowledge, consistency of P. Consistency of P is checked for all dealers at once with a random
  linear combination (one pairing check instead of one per dealer); only if that fails is each
  dealer checked alone.
* Each method reads its inputs fully and computes into locals before it assigns any state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from mpc.dealenc import DealKeyPair, decrypt_share
from mpc.dealing import Fault, FaultKind, deal_info, pok_binding
from mpc.errors import DecryptionError
from mpc.group import G1, G2, Rng, Scalar, pairing_product_is_one
from mpc.messages import Complaint, DealPublic, EncryptedShare, Justification
from mpc.schnorr import is_valid_knowledge_proof
from mpc.session import SessionContext
from mpc.sharing import evaluate_at_index
from mpc.types import MemberIndex


def _fault(member: MemberIndex, kind: FaultKind, detail: str) -> Fault:
    return Fault(member=member, kind=kind, detail=detail)


class DealJudge:
    """Judges the deals of one run from the point of view of receiver `me`.

    `expected_constant(dealer)` is None for a DKG; for a reshare it gives V_i of the old
    committee, which the dealer's D_0 must equal.
    """

    __slots__ = (
        "_context",
        "_deals",
        "_excluded",
        "_expected_constant",
        "_faults",
        "_key",
        "_me",
        "_pending",
        "_rng",
        "_session_id",
        "_shares",
    )

    def __init__(
        self,
        *,
        context: SessionContext,
        session_id: bytes,
        me: MemberIndex,
        deal_key: DealKeyPair,
        expected_constant: Callable[[int], G1] | None,
        rng: Rng,
    ) -> None:
        self._context, self._session_id, self._me = context, session_id, me
        self._key, self._expected_constant, self._rng = deal_key, expected_constant, rng
        self._faults: list[Fault] = []
        self._deals: dict[MemberIndex, DealPublic] = {}  # dealers that passed the public checks
        self._shares: dict[MemberIndex, Scalar] = {}  # valid shares for `me`, by dealer
        self._pending: set[tuple[MemberIndex, MemberIndex]] = set()  # (dealer, accuser)
        self._excluded: set[MemberIndex] = set()

    @property
    def faults(self) -> tuple[Fault, ...]:
        return tuple(self._faults)

    @property
    def qual(self) -> tuple[MemberIndex, ...]:
        return tuple(sorted(d for d in self._deals if d not in self._excluded))

    @property
    def deals(self) -> Mapping[MemberIndex, DealPublic]:
        return self._deals

    @property
    def shares(self) -> Mapping[MemberIndex, Scalar]:
        return self._shares

    def accusers_of(self, dealer: MemberIndex) -> tuple[MemberIndex, ...]:
        """The accusers whose complaint against `dealer` awaits a justification."""
        return tuple(sorted(a for d, a in self._pending if d == dealer))

    def judge_deals(
        self,
        deals: Iterable[DealPublic],
        shares: Iterable[EncryptedShare],
        own: tuple[MemberIndex, Scalar] | None = None,
    ) -> tuple[Complaint, ...]:
        """Judge the deals and our shares; return the complaints we must publish."""
        deals, shares = list(deals), list(shares)  # read inputs fully before changing state
        faults: list[Fault] = []
        candidates = self._public_checks(deals, faults)
        for dealer in self._inconsistent_p(candidates):
            faults.append(_fault(dealer, FaultKind.INCONSISTENT_G2, "e(C_0, G2) != e(G1, P)"))
            del candidates[dealer]
        received: dict[MemberIndex, list[bytes]] = {}
        for s in shares:
            if s.session_id == self._session_id and s.recipient == self._me:
                received.setdefault(s.dealer, []).append(s.ciphertext)
        valid: dict[MemberIndex, Scalar] = {}
        complaints = []
        for dealer, deal in candidates.items():
            if own is not None and own[0] == dealer:
                options: list[Scalar | None] = [own[1]]
            else:
                options = [self._open(dealer, ct) for ct in received.get(dealer, [])]
            expected = evaluate_at_index(deal.commitments.commitments, self._me)
            good = [v for v in options if v is not None and G1.base_mul(v) == expected]
            if good:
                valid[dealer] = good[0]
                continue
            kind = FaultKind.BAD_SHARE if options else FaultKind.MISSING_SHARE
            detail = "share not on commitments" if options else "no share received"
            faults.append(_fault(dealer, kind, detail))
            complaints.append(
                Complaint(session_id=self._session_id, accuser=self._me, dealer=dealer)
            )
        self._deals, self._shares = candidates, valid
        self._faults.extend(faults)
        return tuple(complaints)

    def _open(self, dealer: MemberIndex, ciphertext: bytes) -> Scalar | None:
        try:
            return decrypt_share(
                ciphertext, self._key, info=deal_info(self._context, dealer, self._me)
            )
        except DecryptionError:
            return None

    def _public_checks(
        self, deals: list[DealPublic], faults: list[Fault]
    ) -> dict[MemberIndex, DealPublic]:
        count = self._context.dealer_count
        by_dealer: dict[MemberIndex, list[DealPublic]] = {}
        for d in deals:
            if d.session_id != self._session_id:
                faults.append(
                    _fault(d.dealer, FaultKind.WRONG_SESSION, "deal from another session")
                )
            elif d.dealer > count:
                detail = f"dealer index outside 1..{count}"
                faults.append(_fault(d.dealer, FaultKind.UNKNOWN_MEMBER, detail))
            else:
                by_dealer.setdefault(d.dealer, []).append(d)
        candidates: dict[MemberIndex, DealPublic] = {}
        for dealer in map(MemberIndex, range(1, count + 1)):
            got = by_dealer.get(dealer, [])
            problem = self._first_problem(dealer, got)
            if problem is None:
                candidates[dealer] = got[0]
            else:
                faults.append(_fault(dealer, *problem))
        return candidates

    def _first_problem(
        self, dealer: MemberIndex, got: list[DealPublic]
    ) -> tuple[FaultKind, str] | None:
        """The first public check that `dealer`'s deal(s) fail, in the documented order."""
        if not got:
            return FaultKind.MISSING_DEAL, "no deal published"
        if len(got) > 1 and len(distinct := {g.to_bytes() for g in got}) > 1:
            return FaultKind.EQUIVOCATION, f"{len(distinct)} different deals"
        deal, t = got[0], self._context.threshold
        if deal.commitments.threshold != t:
            detail = f"{deal.commitments.threshold} commitments, expected {t}"
            return FaultKind.WRONG_COMMITMENT_COUNT, detail
        c0 = deal.commitments.public_key
        if self._expected_constant is not None and c0 != self._expected_constant(dealer):
            return FaultKind.WRONG_CONSTANT_TERM, "D_0 is not the dealer's verification key V_i"
        binding = pok_binding(self._context, self._session_id, dealer)
        if not is_valid_knowledge_proof(deal.proof, c0, binding=binding):
            return FaultKind.BAD_PROOF, "proof of knowledge of a_0 does not verify"
        return None

    def _inconsistent_p(self, deals: Mapping[MemberIndex, DealPublic]) -> list[MemberIndex]:
        """Dealers whose P is not a_0·G2, i.e. e(C_0, G2) != e(G1, P).

        Batch: with random 128-bit r_d, e(Σ r_d·C_0, G2)·e(-G1, Σ r_d·P) == 1 holds for a bad
        set with probability <= 2^-128 (all points are in prime-order subgroups, by decoding).
        """
        if not deals:
            return []
        g1, g2 = -G1.generator(), G2.generator()
        if len(deals) > 1:
            rs = [Scalar(int.from_bytes(self._rng(16), "big") | 1) for _ in deals]
            c0 = G1.msm([d.commitments.public_key for d in deals.values()], rs)
            p = G2.msm([d.p for d in deals.values()], rs)
            if pairing_product_is_one([(c0, g2), (g1, p)]):
                return []
        return [
            dealer
            for dealer, d in deals.items()
            if not pairing_product_is_one([(d.commitments.public_key, g2), (g1, d.p)])
        ]

    def judge_complaints(self, complaints: Iterable[Complaint]) -> None:
        """Record the complaints on the board that need a justification."""
        complaints = list(complaints)
        n = self._context.n
        faults, pending = [], set()
        for c in complaints:
            if c.session_id != self._session_id:
                detail = "complaint from another session"
                faults.append(_fault(c.accuser, FaultKind.WRONG_SESSION, detail))
            elif c.accuser > n:
                detail = f"accuser index outside 1..{n}"
                faults.append(_fault(c.accuser, FaultKind.UNKNOWN_MEMBER, detail))
            elif c.dealer in self._deals:  # complaints against excluded dealers need no answer
                pending.add((c.dealer, c.accuser))
        self._faults.extend(faults)
        self._pending = pending

    def judge_justifications(self, justifications: Iterable[Justification]) -> None:
        """Exclude every dealer with a complaint not answered by a share on its commitments."""
        justifications = list(justifications)
        answered: dict[tuple[MemberIndex, MemberIndex], Scalar] = {}
        wrong: set[tuple[MemberIndex, MemberIndex]] = set()
        for js in justifications:
            key = (js.dealer, js.accuser)
            if js.session_id != self._session_id or key not in self._pending or key in answered:
                continue
            expected = evaluate_at_index(self._deals[js.dealer].commitments.commitments, js.accuser)
            if G1.base_mul(js.share) == expected:
                answered[key] = js.share
            else:
                wrong.add(key)
        faults, excluded = [], set()
        for dealer, accuser in sorted(self._pending):
            if (dealer, accuser) in answered:
                continue
            excluded.add(dealer)
            if (dealer, accuser) in wrong:
                detail = f"share revealed for member {accuser} is not on the commitments"
                faults.append(_fault(dealer, FaultKind.BAD_JUSTIFICATION, detail))
            else:
                detail = f"no justification for the complaint of member {accuser}"
                faults.append(_fault(dealer, FaultKind.UNANSWERED_COMPLAINT, detail))
        shares = dict(self._shares)
        for (dealer, accuser), value in answered.items():
            if accuser == self._me:  # a justified share replaces the one we could not open
                shares[dealer] = value
        self._faults.extend(faults)
        self._excluded, self._shares = excluded, shares
