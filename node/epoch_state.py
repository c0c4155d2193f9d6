"""The state of our part in one epoch (`Run`) and the small types around it, kept by
`node.epoch_run.EpochDriver` and read by `node.epochs.EpochManager`."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from contracts import EpochInfo, Receipt
from mpc.dealing import DealOutput, Fault, FaultKind
from mpc.dkg import DkgFailure, DkgMember, DkgResult
from mpc.encoding import frame
from mpc.epochkey import EpochKeyPair, EpochKeys
from mpc.reshare import ReshareDealer, ReshareReceiver
from node.board import Board
from node.epoch_secrets import RecordingKem
from node.journal import Published


class Stage(enum.IntEnum):
    """How far we processed an epoch; each stage names the phase whose end comes next."""

    KEYS = 0
    DEAL = 1  # the epoch keys are final
    COMPLAIN = 2  # deals judged
    JUSTIFY = 3  # complaints judged
    CONFIRM = 4  # justifications judged: the outcome is known
    CONFIRMED = 5


class SeededRng:
    """Bytes derived from a sealed seed, so the same seed rebuilds the same deal after a restart."""

    def __init__(self, seed: bytes) -> None:
        self._seed, self._counter = seed, 0

    def __call__(self, n: int) -> bytes:
        self._counter += 1
        block = frame(b"tkms-dealing-rng:v1", self._seed, self._counter.to_bytes(8, "big"))
        return hashlib.shake_256(block).digest(n)


@dataclass(frozen=True, slots=True)
class Write:
    """A chain write we owe: sent until mined or until its phase closes (`last_head`)."""

    kind: Published
    target: int
    payload: bytes
    send: Callable[[], Receipt]
    last_head: int  # the last head at which sending can still be mined in its phase


@dataclass(eq=False)
class Run:
    """Our part in one epoch: roles, machines, how far we got and the writes we still owe."""

    board: Board
    member: int  # 0 if not a member
    dealer: int  # 0 if not a dealer
    epoch_key: EpochKeyPair | None = None  # ours; None if we could not make one in time
    kem: RecordingKem | None = None  # the encapsulations of our deal (dealers)
    keys: EpochKeys | None = None  # the keys on the board, once final
    dkg: DkgMember | None = None
    old_dealer: ReshareDealer | None = None
    receiver: ReshareReceiver | None = None
    deal: DealOutput | None = None  # our deal, once built
    no_deal: bool = False  # we are a dealer but cannot deal (logged once)
    abandoned: bool = False
    stage: Stage = Stage.KEYS
    outcome: DkgResult | DkgFailure | None = None
    faults_seen: int = 0
    writes: list[Write] = field(default_factory=list)

    @property
    def info(self) -> EpochInfo:
        return self.board.info

    @property
    def epoch(self) -> int:
        return self.board.info.epoch

    @property
    def judge(self) -> DkgMember | ReshareReceiver | None:
        return self.dkg or self.receiver

    @property
    def dealing(self) -> DkgMember | ReshareDealer | None:
        return self.dkg if self.dealer and self.dkg is not None else self.old_dealer


#: Faults whose index may be an accuser's rather than a dealer's: no address is named for them.
_AMBIGUOUS_FAULTS = frozenset({FaultKind.WRONG_SESSION, FaultKind.UNKNOWN_MEMBER})


def blamed_peer(run: Run, fault: Fault) -> str:
    """The address of the peer a fault blames ("" when the index names no known peer).

    Indices are per epoch (and in a reshare dealers and members are different lists), so
    the address is what lets an operator follow one peer's misbehaviour across epochs.
    """
    if fault.kind in _AMBIGUOUS_FAULTS:
        return ""
    if fault.kind.names_accuser:
        members = run.info.members
        return members[fault.member - 1] if 1 <= fault.member <= len(members) else ""
    if not 1 <= fault.member <= len(run.info.dealers):
        return ""
    return run.board.dealer_address(fault.member)
