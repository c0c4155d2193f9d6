"""The gateway's view of governance: the head it has read, the simulator flag, and what changed.

Registration asks two things of the chain: may simulator quotes count (`simulatorAllowed`), and
does governance approve this app's boot info (`isAppAllowed`). The first is the same for every
registration, so it is not read per request (a junk request would cost a chain read before its
quote is even checked): `GovernanceView.refresh()` reads the head every few seconds, and reads
the flag again only when a governance event may have changed it. A registration uses the view
(`current()`) after its evidence verified, and asks for approval at the view's head. A view
older than `max_age` is refused (`ChainUnavailable`): registration fails closed when the gateway
cannot follow the chain.

`refresh(apps)` also says what changed since the last head (`Changes`): a governance event that
can change approvals (anything but DKG, epoch and node-registry events), or an event of an
app's own controller (an AppAuth emits one for every change; app id = controller address). The
revocation watch (`gateway.revocation`) rechecks the routes those touch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final, Protocol

from web3 import Web3

from contracts import AppBootInfo, AuthDecision, GovernanceClient

#: Governance events that cannot change whether an app is allowed (DKG, epochs, nodes).
QUIET_EVENTS: Final = frozenset(
    {
        "EpochProposed",
        "DealSubmitted",
        "ComplaintFiled",
        "ComplaintJustified",
        "Confirmed",
        "EpochActivated",
        "EpochSuperseded",
        "EpochFailed",
        "GenerationRetiring",
        "GenerationRetired",
        "RetirementWindowSet",
        "NodeRegistered",
        "NodeApproved",
        "NodeRemoved",
        "KmsMeasurementAdded",
        "KmsMeasurementRemoved",
    }
)


class ChainUnavailable(Exception):
    """The gateway has no recent view of the chain; the message says why."""


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed between two heads: `governance` (every app may be affected), `apps`."""

    governance: bool
    apps: frozenset[bytes]

    @property
    def any(self) -> bool:
        return self.governance or bool(self.apps)


NO_CHANGES: Final = Changes(False, frozenset())


class GovernanceReads(Protocol):
    """The chain reads the gateway makes; `ChainGovernance` makes them on a real chain."""

    def head(self) -> int: ...

    def simulator_allowed(self, block: int) -> bool: ...

    def is_app_allowed(self, info: AppBootInfo, block: int) -> AuthDecision: ...

    def changes(self, first: int, last: int, apps: Collection[bytes]) -> Changes: ...


class ChainGovernance:
    """`GovernanceReads` over `contracts.GovernanceClient`.

    Logs are classified by address and first topic only, never decoded: an app's controller
    can emit anything, and a log that fails to decode must not stop the gateway following the
    chain."""

    def __init__(self, client: GovernanceClient, *, chunk: int = 10_000) -> None:
        self._client = client
        self._chunk = chunk
        self._address = bytes.fromhex(client.address.removeprefix("0x"))
        events = client.contract.events
        self._quiet = {
            bytes.fromhex(str(events[name]().topic).removeprefix("0x")) for name in QUIET_EVENTS
        }

    def head(self) -> int:
        return int(self._client.w3.eth.block_number)

    def simulator_allowed(self, block: int) -> bool:
        return self._client.get_simulator_allowed(block=block)

    def is_app_allowed(self, info: AppBootInfo, block: int) -> AuthDecision:
        return self._client.is_app_allowed(info, block=block)

    def changes(self, first: int, last: int, apps: Collection[bytes]) -> Changes:
        addresses = [self._client.address, *(_checksum(app) for app in apps)]
        governance = False
        touched: set[bytes] = set()
        for low in range(first, last + 1, self._chunk):
            params: Any = {
                "address": addresses,
                "fromBlock": low,
                "toBlock": min(last, low + self._chunk - 1),
            }
            for log in self._client.w3.eth.get_logs(params):
                source = bytes.fromhex(str(log["address"]).removeprefix("0x"))
                if source != self._address:
                    touched.add(source)
                elif not log["topics"] or bytes(log["topics"][0]) not in self._quiet:
                    governance = True
        return Changes(governance, frozenset(touched))


def _checksum(app_id: bytes) -> str:
    return str(Web3.to_checksum_address("0x" + app_id.hex()))


@dataclass(frozen=True, slots=True)
class ChainState:
    """What the gateway last read: the head, the simulator flag there, and when (monotonic)."""

    head: int
    simulator_allowed: bool
    read_at: float


class GovernanceView:
    """The latest `ChainState`, refreshed by `refresh()` (blocking, one caller at a time);
    `current()` and `is_app_allowed()` may be called from any thread."""

    def __init__(
        self,
        reads: GovernanceReads,
        *,
        max_age: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reads = reads
        self.max_age = max_age
        self._clock = clock
        self._state: ChainState | None = None
        self._refreshing = threading.Lock()

    def refresh(self, apps: Collection[bytes] = ()) -> Changes:
        """Read the head; what changed since the last one (for the first read: everything).
        Raises what the chain client raises; the previous state stays until it ages out."""
        with self._refreshing:
            head = self.reads.head()
            previous = self._state
            if previous is None:
                changes = Changes(True, frozenset(apps))
            elif head <= previous.head:
                changes = NO_CHANGES
            else:
                changes = self.reads.changes(previous.head + 1, head, apps)
            if previous is None or changes.governance:
                simulator = self.reads.simulator_allowed(head)
            else:
                simulator = previous.simulator_allowed
            self._state = ChainState(
                max(head, previous.head if previous else 0), simulator, self._clock()
            )
            return changes

    def current(self) -> ChainState:
        """The state to judge by, or `ChainUnavailable` if there is none younger than max_age."""
        state = self._state
        if state is None:
            raise ChainUnavailable("the gateway has not read the chain yet")
        age = self._clock() - state.read_at
        if age > self.max_age:
            raise ChainUnavailable(
                f"the gateway's view of the chain is {age:.0f}s old (bound {self.max_age:.0f}s)"
            )
        return state

    def is_app_allowed(self, info: AppBootInfo, block: int) -> AuthDecision:
        return self.reads.is_app_allowed(info, block)
