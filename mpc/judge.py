"""Judging the deals of one run from one receiver's point of view (DKG and reshare alike).

Rules of this module:

* Whether a dealer is in QUAL depends only on what every member sees on the board (the
  epoch keys, deals, sealed-share bundles, complaints and justifications), so all honest
  members compute the same QUAL. What only this member can do (open its own sealed shares)
  can only lead to a complaint, which the board then settles. `FaultKind.is_local` marks
  those faults.
* Checks run in a fixed order per dealer and the first failure is the one recorded: session,
  index, duplicate/equivocation, number of commitments, constant term (reshare), epoch key,
  proof of knowledge, sealed shares present and matching the members' keys, then consistency
  of P for all dealers at once with a random linear combination (one pairing check instead of
  one per dealer; only if that fails is each dealer checked alone).
* A complaint counts only if its reveal verifies (DLEQ against both epoch keys): then the
  accused dealer must answer with the ML-KEM secret of that share, and everyone opens it. A
  share that opens and lies on the commitments keeps the dealer (and is the accuser's); any
  other answer, or none, excludes it. No honest pair's secrets ever reach the board.
* Each method reads its inputs fully and computes into locals before it assigns any state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from mpc.dealing import Fault, FaultKind, pok_binding
from mpc.epochkey import EpochKeyPair, EpochKeys
from mpc.errors import DecryptionError
from mpc.group import G1, G2, Rng, Scalar, pairing_product_is_one
from mpc.messages import Complaint, DealPublic, Justification, ShareBundle
from mpc.schnorr import is_valid_knowledge_proof
from mpc.session import SessionContext, SessionKind
from mpc.sharebox import (
    is_valid_reveal,
    open_revealed,
    open_share,
    pair_context,
    reveal_dh,
)
from mpc.sharing import evaluate_at_index
from mpc.types import MemberIndex

Pair = tuple[MemberIndex, MemberIndex]  # (dealer, accuser)
_M = TypeVar("_M", DealPublic, ShareBundle)


def _fault(member: MemberIndex, kind: FaultKind, detail: str) -> Fault:
    return Fault(member=member, kind=kind, detail=detail)


def expected_slots(context: SessionContext, keys: EpochKeys, dealer: int) -> list[bool]:
    """Which members a dealer must seal a share to: every member with a usable key, except
    the dealer itself in a DKG (it keeps its own share)."""
    skip = dealer if context.kind is SessionKind.DKG else None
    return [key is not None and j != skip for j, key in enumerate(keys.members, start=1)]


def complaint_problem(
    complaint: Complaint, *, session_id: bytes, keys: EpochKeys, bundle: ShareBundle
) -> str | None:
    """Why a complaint against `bundle`'s dealer does not count (None: it does)."""
    dealer, accuser = complaint.dealer, complaint.accuser
    sealed = bundle.entry(accuser)
    dealer_key, accuser_key = keys.dealer(dealer), keys.member(accuser)
    if sealed is None or dealer_key is None or accuser_key is None:
        return f"dealer {dealer} sealed no share to member {accuser}"
    pair = pair_context(session_id, dealer, accuser)
    if not is_valid_reveal(complaint.reveal, dealer=dealer_key, accuser=accuser_key, pair=pair):
        return "the revealed Diffie-Hellman secret does not verify"
    return None


def answerable(
    complaints: Iterable[Complaint],
    *,
    context: SessionContext,
    session_id: bytes,
    keys: EpochKeys,
    bundle: ShareBundle,
) -> list[MemberIndex]:
    """The accusers whose complaint against `bundle`'s dealer counts (for the dealer to answer)."""
    return [
        c.accuser
        for c in complaints
        if c.session_id == session_id
        and c.dealer == bundle.dealer
        and 1 <= c.accuser <= context.n
        and complaint_problem(c, session_id=session_id, keys=keys, bundle=bundle) is None
    ]


class DealJudge:
    """Judges the deals of one run from the point of view of receiver `me`.

    `expected_constant(dealer)` is None for a DKG; for a reshare it gives V_i of the old
    committee, which the dealer's D_0 must equal. `epoch_key` is our key for this run.
    """

    __slots__ = (
        "_bundles",
        "_context",
        "_deals",
        "_excluded",
        "_expected_constant",
        "_faults",
        "_key",
        "_keys",
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
        epoch_key: EpochKeyPair,
        expected_constant: Callable[[int], G1] | None,
        rng: Rng,
    ) -> None:
        self._context, self._session_id, self._me = context, session_id, me
        self._key, self._expected_constant, self._rng = epoch_key, expected_constant, rng
        self._faults: list[Fault] = []
        self._keys: EpochKeys | None = None
        self._deals: dict[MemberIndex, DealPublic] = {}  # dealers that passed the public checks
        self._bundles: dict[MemberIndex, ShareBundle] = {}
        self._shares: dict[MemberIndex, Scalar] = {}  # valid shares for `me`, by dealer
        self._pending: dict[Pair, G1] = {}  # counted complaints -> the accuser's ss_dh
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

    @property
    def keys(self) -> EpochKeys | None:
        return self._keys

    def accusers_of(self, dealer: MemberIndex) -> tuple[MemberIndex, ...]:
        """The accusers whose complaint against `dealer` counts and awaits an answer."""
        return tuple(sorted(a for d, a in self._pending if d == dealer))

    def judge_deals(
        self,
        keys: EpochKeys,
        deals: Iterable[DealPublic],
        bundles: Iterable[ShareBundle],
        own: tuple[MemberIndex, Scalar] | None = None,
    ) -> tuple[Complaint, ...]:
        """Judge the deals and open our shares; return the complaints we must publish."""
        keys.check(self._context)
        deals, bundles = list(deals), list(bundles)  # read inputs fully before changing state
        faults: list[Fault] = []
        candidates = self._public_checks(keys, deals, bundles, faults)
        for dealer in self._inconsistent_p(candidates):
            faults.append(_fault(dealer, FaultKind.INCONSISTENT_G2, "e(C_0, G2) != e(G1, P)"))
            del candidates[dealer]
        ours = keys.member(self._me) == self._key.public_key
        valid: dict[MemberIndex, Scalar] = {}
        complaints = []
        for dealer, (deal, bundle) in candidates.items():
            if own is not None and own[0] == dealer:
                valid[dealer] = own[1]
                continue
            sealed = bundle.entry(self._me)
            dealer_key = keys.dealer(dealer)
            if not ours or sealed is None or dealer_key is None:
                continue  # no usable key of ours on the board: nobody sealed a share to us
            pair = pair_context(self._session_id, dealer, self._me)
            expected = evaluate_at_index(deal.commitments.commitments, self._me)
            try:
                value = open_share(sealed, me=self._key, dealer=dealer_key, pair=pair)
            except DecryptionError:
                detail = "sealed share does not open"
            else:
                if G1.base_mul(value) == expected:
                    valid[dealer] = value
                    continue
                detail = "share not on commitments"
            faults.append(_fault(dealer, FaultKind.BAD_SHARE, detail))
            reveal = reveal_dh(self._key, dealer_key, pair=pair, rng=self._rng)
            complaints.append(
                Complaint(
                    session_id=self._session_id, accuser=self._me, dealer=dealer, reveal=reveal
                )
            )
        self._keys = keys
        self._deals = {d: deal for d, (deal, _) in candidates.items()}
        self._bundles = {d: bundle for d, (_, bundle) in candidates.items()}
        self._shares = valid
        self._faults.extend(faults)
        return tuple(complaints)

    def _public_checks(
        self,
        keys: EpochKeys,
        deals: list[DealPublic],
        bundles: list[ShareBundle],
        faults: list[Fault],
    ) -> dict[MemberIndex, tuple[DealPublic, ShareBundle]]:
        count = self._context.dealer_count
        by_dealer = self._sort_by_dealer("deal", deals, faults)
        bundles_of = self._sort_by_dealer("sealed shares", bundles, faults)
        candidates: dict[MemberIndex, tuple[DealPublic, ShareBundle]] = {}
        for dealer in map(MemberIndex, range(1, count + 1)):
            got, sealed = by_dealer.get(dealer, []), bundles_of.get(dealer, [])
            problem = self._first_problem(keys, dealer, got, sealed)
            if problem is None:
                candidates[dealer] = (got[0], sealed[0])
            else:
                faults.append(_fault(dealer, *problem))
        return candidates

    def _sort_by_dealer(
        self, what: str, messages: list[_M], faults: list[Fault]
    ) -> dict[MemberIndex, list[_M]]:
        """Messages of this session from dealers in range, by dealer; the rest are faults."""
        count = self._context.dealer_count
        out: dict[MemberIndex, list[_M]] = {}
        for m in messages:
            if m.session_id != self._session_id:
                detail = f"{what} from another session"
                faults.append(_fault(m.dealer, FaultKind.WRONG_SESSION, detail))
            elif m.dealer > count:
                detail = f"dealer index outside 1..{count}"
                faults.append(_fault(m.dealer, FaultKind.UNKNOWN_MEMBER, detail))
            else:
                out.setdefault(m.dealer, []).append(m)
        return out

    def _first_problem(
        self,
        keys: EpochKeys,
        dealer: MemberIndex,
        got: list[DealPublic],
        sealed: list[ShareBundle],
    ) -> tuple[FaultKind, str] | None:
        """The first public check that `dealer`'s deal fails, in the documented order."""
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
        if keys.dealer(dealer) is None:
            return FaultKind.MISSING_KEY, "the dealer posted no usable epoch key"
        binding = pok_binding(self._context, self._session_id, dealer)
        if not is_valid_knowledge_proof(deal.proof, c0, binding=binding):
            return FaultKind.BAD_PROOF, "proof of knowledge of a_0 does not verify"
        if not sealed:
            return FaultKind.MISSING_CIPHERTEXTS, "no sealed shares published"
        if len(sealed) > 1 and len(distinct := {b.to_bytes() for b in sealed}) > 1:
            return FaultKind.EQUIVOCATION, f"{len(distinct)} different bundles of sealed shares"
        present = [e is not None for e in sealed[0].entries]
        expected = expected_slots(self._context, keys, dealer)
        if len(present) != len(expected):
            detail = f"{len(present)} sealed-share slots, expected {len(expected)}"
            return FaultKind.BAD_CIPHERTEXTS, detail
        wrong = [
            j for j, (p, e) in enumerate(zip(present, expected, strict=True), start=1) if p != e
        ]
        if wrong:
            return FaultKind.BAD_CIPHERTEXTS, f"wrong sealed-share slots for members {wrong}"
        return None

    def _inconsistent_p(
        self, deals: Mapping[MemberIndex, tuple[DealPublic, ShareBundle]]
    ) -> list[MemberIndex]:
        """Dealers whose P is not a_0·G2, i.e. e(C_0, G2) != e(G1, P).

        Batch: with random 128-bit r_d, e(Σ r_d·C_0, G2)·e(-G1, Σ r_d·P) == 1 holds for a bad
        set with probability <= 2^-128 (all points are in prime-order subgroups, by decoding).
        """
        if not deals:
            return []
        g1, g2 = -G1.generator(), G2.generator()
        publics = [d for d, _ in deals.values()]
        if len(deals) > 1:
            rs = [Scalar(int.from_bytes(self._rng(16), "big") | 1) for _ in deals]
            c0 = G1.msm([d.commitments.public_key for d in publics], rs)
            p = G2.msm([d.p for d in publics], rs)
            if pairing_product_is_one([(c0, g2), (g1, p)]):
                return []
        return [
            dealer
            for dealer, (d, _) in deals.items()
            if not pairing_product_is_one([(d.commitments.public_key, g2), (g1, d.p)])
        ]

    def judge_complaints(self, complaints: Iterable[Complaint]) -> None:
        """Record the complaints on the board that count and need an answer."""
        complaints = list(complaints)
        n, keys = self._context.n, self._keys
        faults: list[Fault] = []
        pending: dict[Pair, G1] = {}
        refused: set[Pair] = set()
        for c in complaints:
            pair = (c.dealer, c.accuser)
            if c.session_id != self._session_id:
                detail = "complaint from another session"
                faults.append(_fault(c.accuser, FaultKind.WRONG_SESSION, detail))
            elif c.accuser > n:
                detail = f"accuser index outside 1..{n}"
                faults.append(_fault(c.accuser, FaultKind.UNKNOWN_MEMBER, detail))
            elif c.dealer in self._bundles and keys is not None and pair not in pending:
                # complaints against excluded dealers need no answer
                problem = complaint_problem(
                    c, session_id=self._session_id, keys=keys, bundle=self._bundles[c.dealer]
                )
                if problem is None:
                    pending[pair] = c.reveal.shared
                elif pair not in refused:
                    refused.add(pair)
                    detail = f"complaint against dealer {c.dealer}: {problem}"
                    faults.append(_fault(c.accuser, FaultKind.BAD_COMPLAINT, detail))
        self._faults.extend(faults)
        self._pending = pending

    def judge_justifications(self, justifications: Iterable[Justification]) -> None:
        """Open every disputed share; exclude each dealer whose share does not check out."""
        justifications = list(justifications)
        answered: dict[Pair, Scalar] = {}
        wrong: set[Pair] = set()
        keys = self._keys
        for js in justifications:
            pair = (js.dealer, js.accuser)
            if js.session_id != self._session_id or pair not in self._pending or pair in answered:
                continue
            value = self._open_disputed(pair, js.kem_secret) if keys is not None else None
            if value is None:
                wrong.add(pair)
            else:
                answered[pair] = value
        faults, excluded = [], set()
        for dealer, accuser in sorted(self._pending):
            if (dealer, accuser) in answered:
                continue
            excluded.add(dealer)
            if (dealer, accuser) in wrong:
                detail = (
                    f"the share for member {accuser} does not open or is not on the commitments"
                )
                faults.append(_fault(dealer, FaultKind.BAD_JUSTIFICATION, detail))
            else:
                detail = f"no justification for the complaint of member {accuser}"
                faults.append(_fault(dealer, FaultKind.UNANSWERED_COMPLAINT, detail))
        shares = dict(self._shares)
        for (dealer, accuser), value in answered.items():
            if accuser == self._me:  # the opened share replaces the one we could not open
                shares[dealer] = value
        self._faults.extend(faults)
        self._excluded, self._shares = excluded, shares

    def _open_disputed(self, pair: Pair, kem_secret: bytes) -> Scalar | None:
        """The accuser's share opened from the two revealed halves, if it is on the commitments."""
        dealer, accuser = pair
        keys = self._keys
        assert keys is not None
        dealer_key, accuser_key = keys.dealer(dealer), keys.member(accuser)
        sealed = self._bundles[dealer].entry(accuser)
        assert dealer_key is not None and accuser_key is not None and sealed is not None
        try:
            value = open_revealed(
                sealed,
                ss_dh=self._pending[pair],
                kem_secret=kem_secret,
                dealer=dealer_key,
                recipient=accuser_key,
                pair=pair_context(self._session_id, dealer, accuser),
            )
        except DecryptionError:
            return None
        expected = evaluate_at_index(self._deals[dealer].commitments.commitments, accuser)
        return value if G1.base_mul(value) == expected else None
