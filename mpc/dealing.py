"""What DKG and resharing share: phases and their tables, faults, making a deal and answering
complaints. Judging the deals of a run is `mpc.judge`.

Rules (h11-style) for the role classes in `mpc.dkg` and `mpc.reshare`:

* A peer that misbehaves is data, never an exception: a `Fault(member, kind, detail)`.
  Exceptions are for the caller's bugs (`ProtocolMisuse`, `PhaseError`), raised before any
  state changes: every public method calls `_require` first and `_enter` last.
* Every role has a table of legal (phase, call) -> next phases at the top of its module;
  `state_diagram` draws it (docs/mpc-dkg.md shows the result, and a test compares).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mpc.dealenc import DealPublicKey, compute_deal_info, encrypt_share
from mpc.errors import PhaseError, ProtocolMisuse
from mpc.group import G2, Rng
from mpc.messages import DealPublic, EncryptedShare, Justification
from mpc.schnorr import compute_binding, prove_knowledge
from mpc.session import SessionContext
from mpc.sharing import Polynomial
from mpc.types import MemberIndex


class Phase(enum.Enum):
    """Where a role is in a run. FINISHED and FAILED are final."""

    DEAL = "deal"  # the run has started; our deal (if we deal) is not out yet
    DEALT = "dealt"  # our deal is out; waiting for the deal deadline
    COMPLAIN = "complain"  # deals judged; waiting for the complaint deadline
    JUSTIFY = "justify"  # complaints known; waiting for the justification deadline
    FINISHED = "finished"
    FAILED = "failed"


class Input(enum.Enum):
    """The calls that drive a role: one method each."""

    DEAL = "deal"
    DEALS = "on_deals"
    COMPLAINTS = "on_complaints"
    JUSTIFICATIONS = "on_justifications"


Transitions = Mapping[tuple[Phase, Input], frozenset[Phase]]


def state_diagram(table: Transitions) -> str:
    """A Mermaid state diagram of `table`; docs/mpc-dkg.md embeds these and a test compares."""
    order = list(Phase)
    lines = ["stateDiagram-v2", "    [*] --> DEAL"]
    finals: set[Phase] = set()
    for (phase, what), targets in table.items():
        for target in sorted(targets, key=order.index):
            lines.append(f"    {phase.name} --> {target.name}: {what.value}()")
            if target in (Phase.FINISHED, Phase.FAILED):
                finals.add(target)
    lines += [f"    {p.name} --> [*]" for p in sorted(finals, key=order.index)]
    return "\n".join(lines)


class FaultKind(enum.Enum):
    """Why a peer is blamed. Deal faults name the dealer; complaint faults the accuser."""

    WRONG_SESSION = "message from another session"
    UNKNOWN_MEMBER = "index outside the committee"
    MISSING_DEAL = "no deal"
    EQUIVOCATION = "several different deals"
    WRONG_COMMITMENT_COUNT = "wrong number of commitments"
    WRONG_CONSTANT_TERM = "constant term is not the dealer's old verification key"
    BAD_PROOF = "bad proof of knowledge"
    INCONSISTENT_G2 = "P does not match C_0"
    MISSING_SHARE = "no share for us"
    BAD_SHARE = "invalid share for us"
    UNANSWERED_COMPLAINT = "complaint not answered"
    BAD_JUSTIFICATION = "justification not on the commitments"

    @property
    def is_local(self) -> bool:
        """Seen only by this member; settled by a complaint, never excludes by itself."""
        return self in (FaultKind.MISSING_SHARE, FaultKind.BAD_SHARE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """A recorded misbehaviour: `Fault(member=2, kind=BAD_SHARE, detail="...")`."""

    member: MemberIndex
    kind: FaultKind
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DealOutput:
    """What `deal()` returns: publish `public` on the board, send each share to its recipient."""

    public: DealPublic
    shares: tuple[EncryptedShare, ...]


class StateMachine:
    """A phase plus the table of legal changes; subclasses set TRANSITIONS."""

    TRANSITIONS: Transitions
    __slots__ = ("_phase",)

    def __init__(self) -> None:
        self._phase = Phase.DEAL

    @property
    def phase(self) -> Phase:
        return self._phase

    def _require(self, what: Input) -> None:
        if (self._phase, what) not in self.TRANSITIONS:
            raise PhaseError(f"{what.value}() is not allowed in phase {self._phase.name}")

    def _enter(self, what: Input, phase: Phase) -> None:
        allowed = self.TRANSITIONS[(self._phase, what)]
        if phase not in allowed:  # a bug in this package, not in the caller
            raise AssertionError(f"illegal change {self._phase.name} -> {phase.name}")
        self._phase = phase


def pok_binding(context: SessionContext, session_id: bytes, dealer: int) -> bytes:
    return compute_binding(
        chain_id=context.chain_id,
        contract=context.contract,
        epoch=context.epoch,
        dealer=dealer,
        session_id=session_id,
    )


def deal_info(context: SessionContext, dealer: int, recipient: int) -> bytes:
    return compute_deal_info(
        chain_id=context.chain_id,
        contract=context.contract,
        epoch=context.epoch,
        dealer=dealer,
        recipient=recipient,
    )


def make_deal(
    context: SessionContext,
    session_id: bytes,
    dealer: MemberIndex,
    poly: Polynomial,
    recipient_keys: Sequence[DealPublicKey],
    rng: Rng,
    skip: int | None = None,
) -> DealOutput:
    """Commit to `poly`, prove knowledge of its secret, encrypt a share to each recipient."""
    public = DealPublic(
        session_id=session_id,
        dealer=dealer,
        commitments=poly.commitments(),
        p=G2.base_mul(poly.secret),
        proof=prove_knowledge(
            poly.secret, binding=pok_binding(context, session_id, dealer), rng=rng
        ),
    )
    shares = tuple(
        EncryptedShare(
            session_id=session_id,
            dealer=dealer,
            recipient=MemberIndex(j),
            ciphertext=encrypt_share(poly.evaluate(j), key, info=deal_info(context, dealer, j)),
        )
        for j, key in enumerate(recipient_keys, start=1)
        if j != skip
    )
    return DealOutput(public=public, shares=shares)


def check_recipient_keys(context: SessionContext, keys: Sequence[DealPublicKey]) -> None:
    if len(keys) != context.n:
        raise ProtocolMisuse(f"need {context.n} recipient deal keys, got {len(keys)}")


def make_justifications(
    session_id: bytes, dealer: MemberIndex, poly: Polynomial, accusers: Iterable[MemberIndex]
) -> tuple[Justification, ...]:
    """Answer each accuser's complaint with its share, in the clear.

    Only complaints the judge accepted are answered: a share for an index outside the
    committee would hand out one more point of the dealer's polynomial.
    """
    return tuple(
        Justification(session_id=session_id, dealer=dealer, accuser=j, share=poly.evaluate(j))
        for j in sorted(set(accusers))
    )
