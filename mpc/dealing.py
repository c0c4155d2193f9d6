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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mpc.epochkey import EpochKeyPair, EpochKeys
from mpc.errors import PhaseError, ProtocolMisuse
from mpc.group import G2, Rng
from mpc.messages import DealPublic, Justification, ShareBundle
from mpc.schnorr import compute_binding, prove_knowledge
from mpc.session import SessionContext
from mpc.sharebox import Encapsulate, SealedShare, pair_context, seal_share
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
    MISSING_KEY = "no usable epoch key from the dealer"
    BAD_PROOF = "bad proof of knowledge"
    MISSING_CIPHERTEXTS = "no sealed shares on the board"
    BAD_CIPHERTEXTS = "sealed shares do not match the members' keys"
    INCONSISTENT_G2 = "P does not match C_0"
    BAD_SHARE = "invalid share for us"
    BAD_COMPLAINT = "complaint without a valid reveal"
    UNANSWERED_COMPLAINT = "complaint not answered"
    BAD_JUSTIFICATION = "revealed share does not open or is not on the commitments"

    @property
    def is_local(self) -> bool:
        """Seen only by this member; settled by a complaint, never excludes by itself."""
        return self is FaultKind.BAD_SHARE

    @property
    def names_accuser(self) -> bool:
        """The fault's index is an accuser's (a member), not a dealer's."""
        return self is FaultKind.BAD_COMPLAINT


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """A recorded misbehaviour: `Fault(member=2, kind=BAD_SHARE, detail="...")`."""

    member: MemberIndex
    kind: FaultKind
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DealOutput:
    """What `deal()` returns: publish both on the board (the node sends them in one write)."""

    public: DealPublic
    bundle: ShareBundle


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


def make_deal(
    context: SessionContext,
    session_id: bytes,
    dealer: MemberIndex,
    poly: Polynomial,
    *,
    dealer_key: EpochKeyPair,
    keys: EpochKeys,
    rng: Rng,
    encapsulate: Encapsulate,
    skip: int | None = None,
) -> tuple[DealOutput, dict[MemberIndex, bytes]]:
    """Commit to `poly`, prove knowledge of its secret, seal a share to every member with a key.

    Returns the output and the ML-KEM secret of each sealed share (the dealer's to keep, for
    answering complaints).
    """
    public = DealPublic(
        session_id=session_id,
        dealer=dealer,
        commitments=poly.commitments(),
        p=G2.base_mul(poly.secret),
        proof=prove_knowledge(
            poly.secret, binding=pok_binding(context, session_id, dealer), rng=rng
        ),
    )
    entries: list[SealedShare | None] = []
    secrets: dict[MemberIndex, bytes] = {}
    for j, key in enumerate(keys.members, start=1):
        if key is None or j == skip:
            entries.append(None)
            continue
        sealed, secrets[MemberIndex(j)] = seal_share(
            poly.evaluate(j),
            dealer=dealer_key,
            recipient=key,
            recipient_index=j,
            pair=pair_context(session_id, dealer, j),
            encapsulate=encapsulate,
        )
        entries.append(sealed)
    bundle = ShareBundle(session_id=session_id, dealer=dealer, entries=tuple(entries))
    return DealOutput(public=public, bundle=bundle), secrets


def check_own_key(context: SessionContext, keys: EpochKeys, dealer: int, own: EpochKeyPair) -> None:
    """Raise ProtocolMisuse unless `keys` fit the run and hold our key as dealer `dealer`."""
    keys.check(context)
    if keys.dealer(dealer) != own.public_key:
        raise ProtocolMisuse(f"our epoch key is not on the board as dealer {dealer}'s key")


def make_justifications(
    session_id: bytes,
    dealer: MemberIndex,
    secrets: Mapping[MemberIndex, bytes],
    accusers: Iterable[MemberIndex],
) -> tuple[Justification, ...]:
    """Answer each accuser's complaint with the ML-KEM secret of its sealed share.

    Only complaints whose reveal verified are answered (`mpc.judge.answerable`): the answer
    opens the accuser's share for everyone, which is harmless only once the accuser itself
    published its half of the key.
    """
    return tuple(
        Justification(session_id=session_id, dealer=dealer, accuser=j, kem_secret=secrets[j])
        for j in sorted(set(accusers))
        if j in secrets
    )
