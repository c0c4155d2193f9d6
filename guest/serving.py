"""Which keys the guest agent serves now, decided from its chain view (sans-I/O).

The chain watch (`guest.watch`) feeds a `Policy` what the agent's RPC shows (`ChainReading`)
and how its requests to the network went; the policy answers with what to do next (`Fetch` a
generation's keys, `Confirm` that the network still derives the app's keys) and with a
`Serving` snapshot that the API consults on every key request. No I/O and no clock here:
`now` is passed in (monotonic seconds).

Key generations (design §3.3). Unless the config pins one, the agent holds the latest
generation L and, while generation L-1 is retiring (not yet retired), L-1 too. A request
without a generation gets the oldest held generation whose retirement window is still open
(block <= `retireAfter`), so apps see the new generation only after the window; otherwise the
latest. A request may name either generation. A retired generation is refused (410).

Live revocation. With the app's `liveRevocationBlocks` N > 0 the agent re-derives every
max(1, N // 2) blocks (`Confirm`; any successful derivation counts, start-up's too) and
serves keys only while the network confirmed them within the last N blocks. A refusal by so
many members that no t of them could derive (a revoked compose hash, a removed device...)
withholds every key at once (403); unanswered requests withhold them once N blocks passed
since the last confirmation (503). Opting in while running counts N blocks from then.

Stale view: when the RPC shows no new block for `stale_seconds`, what depends on the view is
refused (503): every key under live revocation, and the generations older than the latest
(nobody can tell whether they were retired meanwhile). Without either, an agent serves what
it fetched at boot whatever the chain does, as dstack's does. A `Serving` snapshot that
depends on the view expires `stale_seconds` after it was made, so a watch that stops running
fails closed too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from contracts import GenerationStatus

FORBIDDEN = 403
NOT_HELD = 404
GONE = 410
UNAVAILABLE = 503


class KeysWithheld(Exception):
    """The agent does not serve these keys now: `status` is the HTTP status, the message why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    #: Stable across readings ("revoked", "stale", ...): what transitions are logged by.
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class GenerationState:
    status: GenerationStatus
    retire_after: int


@dataclass(frozen=True, slots=True)
class ChainReading:
    """What the agent's RPC shows at one block."""

    head: int
    latest: int
    #: The app's `liveRevocationBlocks` (0: off, also for controllers that have none).
    live_revocation_blocks: int
    #: The generations `Policy.watched` asked for.
    generations: Mapping[int, GenerationState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Fetch:
    """Fetch this generation's keys (start-up, or a rotation seen while running)."""

    generation: int


@dataclass(frozen=True, slots=True)
class Confirm:
    """Re-derive the app's keys from this generation's committee, at chain head `head`."""

    generation: int
    head: int


Action = Fetch | Confirm


@dataclass(frozen=True, slots=True)
class Serving:
    """What the API serves: an immutable snapshot, replaced whole by the watch."""

    held: tuple[int, ...]
    #: The generation of requests that name none; 0 when none can be served (`no_default`).
    default: int
    refusals: Mapping[int, Refusal] = field(default_factory=dict)
    no_default: Refusal | None = None
    #: Every key withheld (live revocation), whatever the generation.
    withheld: Refusal | None = None
    #: Monotonic time after which the snapshot is too old to trust (None: it never depends
    #: on the chain view).
    expires: float | None = None

    @classmethod
    def fixed(cls, generation: int) -> Serving:
        """One generation, independent of the chain (no watch: dstack's behaviour)."""
        return cls(held=(generation,), default=generation)

    def generation(self, requested: int, now: float) -> int:
        """The generation to serve for `requested` (0: the default), or KeysWithheld."""
        if self.expires is not None and now > self.expires:
            raise KeysWithheld(
                UNAVAILABLE,
                "keys withheld: the agent's chain watch has not updated its view in time, so "
                "it cannot tell whether the app's keys may still be served",
            )
        if self.withheld is not None:
            raise KeysWithheld(self.withheld.status, self.withheld.message)
        if requested == 0:
            if self.default == 0:
                assert self.no_default is not None
                raise KeysWithheld(self.no_default.status, self.no_default.message)
            requested = self.default
        elif requested not in self.held:
            raise KeysWithheld(
                NOT_HELD,
                f"generation {requested} is not served by this agent: it holds "
                f"{_listing(self.held)}, and serves generation {self.default or 'none'} by "
                "default",
            )
        refusal = self.refusals.get(requested)
        if refusal is not None:
            raise KeysWithheld(refusal.status, refusal.message)
        return requested

    def summary(self) -> tuple[object, ...]:
        """What a transition changes (no block numbers or ages, which change every reading)."""
        return (
            self.held,
            self.default,
            tuple(sorted((g, r.kind) for g, r in self.refusals.items())),
            self.no_default and self.no_default.kind,
            self.withheld and self.withheld.kind,
        )

    def describe(self) -> str:
        if self.withheld is not None:
            return self.withheld.message
        parts = [
            f"serving generation {self.default} by default"
            if self.default
            else self.no_default.message
            if self.no_default
            else "no default generation",
        ]
        served = [g for g in self.held if g not in self.refusals and g != self.default]
        if served:
            parts.append(f"generation {_listing(served)} on request")
        parts += [f"generation {g} refused: {r.kind}" for g, r in sorted(self.refusals.items())]
        return "; ".join(parts)


def _listing(generations: Collection[int]) -> str:
    return ", ".join(str(g) for g in sorted(generations)) or "none"


def confirm_interval(blocks: int) -> int:
    """Blocks between re-derivations for `liveRevocationBlocks` = `blocks` (> 0)."""
    return max(1, blocks // 2)


class Policy:
    """The agent's decisions from its chain view and its requests' outcomes (module doc)."""

    def __init__(self, *, pinned: int, stale_seconds: float, now: float) -> None:
        self.pinned = pinned
        self.stale_seconds = stale_seconds
        self.held: set[int] = set()
        self.reading: ChainReading | None = None
        self._advanced_at = now
        self._unreachable = ""
        self._confirmed_at: int | None = None
        self._next_confirm = 0
        self._refusal: tuple[int, str] | None = None
        self._failure = ""
        self.fetch_problems: dict[int, str] = {}

    # -- what to read and fetch ------------------------------------------------------------

    def watched(self, latest: int) -> set[int]:
        """The generations whose state a reading with latest generation `latest` must hold."""
        candidates = set(self.held)
        if not self.pinned:
            candidates.add(latest - 1)
        elif not self.held:
            candidates.add(self.pinned)
        return {g for g in candidates if 1 <= g < latest}

    def wanted(self) -> set[int]:
        """The generations whose keys the agent should hold now."""
        if self.pinned:
            return {self.pinned}
        reading = self._require_reading()
        wanted = {reading.latest}
        previous = reading.generations.get(reading.latest - 1)
        if previous is not None and previous.status is GenerationStatus.RETIRING:
            wanted.add(reading.latest - 1)
        return wanted

    def _require_reading(self) -> ChainReading:
        if self.reading is None:
            raise RuntimeError("the policy has no chain reading yet")
        return self.reading

    def _state(self, generation: int) -> GenerationState | None:
        return self._require_reading().generations.get(generation)

    def retired(self) -> set[int]:
        """Held generations that are retired on chain (their keys may be dropped)."""
        return {
            g
            for g in self.held
            if (s := self._state(g)) is not None and s.status is GenerationStatus.RETIRED
        }

    # -- inputs ------------------------------------------------------------------------------

    def observe(self, reading: ChainReading, now: float) -> list[Action]:
        """A fresh reading; returns what to do (the watch skips what is already under way)."""
        before = self.reading
        if before is None or reading.head > before.head:
            self._advanced_at = now
        self._unreachable = ""
        blocks = reading.live_revocation_blocks
        was_on = before is not None and before.live_revocation_blocks > 0
        if blocks and not was_on and self._confirmed_at is not None:
            # Opted in while running: confirm now, and count N blocks from here.
            self._confirmed_at = max(self._confirmed_at, reading.head)
            self._next_confirm = reading.head
        if not blocks:
            self._refusal, self._failure = None, ""
        self.reading = reading
        actions: list[Action] = [Fetch(g) for g in sorted(self.wanted() - self.held)]
        target = self._confirm_generation()
        if blocks and target and reading.head >= self._next_confirm:
            actions.append(Confirm(target, reading.head))
        return actions

    def _confirm_generation(self) -> int:
        """The newest held generation that is not retired (its nodes still hold shares)."""
        return max(self.held - self.retired(), default=0)

    def unreachable(self, why: str) -> None:
        """A reading failed; the view goes stale once no block came for `stale_seconds`."""
        self._unreachable = why

    def fetched(self, generation: int, head: int) -> None:
        """`generation`'s keys arrived, derived at chain head `head` (a confirmation too)."""
        self.held.add(generation)
        self.fetch_problems.pop(generation, None)
        self.confirmed(head)

    def fetch_failed(self, generation: int, why: str) -> None:
        self.fetch_problems[generation] = why

    def confirmed(self, head: int) -> None:
        """The network derived the app's keys at head `head`."""
        self._confirmed_at = head if self._confirmed_at is None else max(self._confirmed_at, head)
        self._next_confirm = max(self._next_confirm, head + self._interval())
        self._refusal, self._failure = None, ""

    def refused(self, head: int, why: str) -> None:
        """Enough members refused the app's keys at head `head` that no t could derive them."""
        self._refusal = (head, why)
        self._next_confirm = head + self._interval()

    def unconfirmed(self, head: int, why: str) -> None:
        """A re-derivation failed without a refusal (nodes down, timeouts): retry next block."""
        self._failure = why
        self._next_confirm = head + 1

    def _interval(self) -> int:
        blocks = self.reading.live_revocation_blocks if self.reading is not None else 0
        return confirm_interval(blocks) if blocks else 1

    # -- output ------------------------------------------------------------------------------

    def stale(self, now: float) -> str:
        """Why the view is stale ("" if it is not)."""
        age = now - self._advanced_at
        if age <= self.stale_seconds:
            return ""
        cause = f": {self._unreachable}" if self._unreachable else ""
        return (
            f"the chain view is stale (no new block from the agent's RPC for {age:.0f} s, "
            f"bound {self.stale_seconds:g} s{cause})"
        )

    def serving(self, now: float) -> Serving:
        reading = self._require_reading()
        stale = self.stale(now)
        held = tuple(sorted(self.held))
        refusals = self._refusals(reading, stale)
        default = self._default(reading, refusals)
        no_default = None
        if default == 0:
            latest = reading.latest
            problem = self.fetch_problems.get(latest, "not fetched yet")
            no_default = Refusal(
                UNAVAILABLE,
                "not-fetched",
                f"no generation to serve by default: generation {latest}'s keys: {problem}",
            )
        withheld = self._withheld(reading, stale)
        depends = bool(reading.live_revocation_blocks) or any(g < reading.latest for g in held)
        return Serving(
            held=held,
            default=default,
            refusals=refusals,
            no_default=no_default,
            withheld=withheld,
            expires=now + self.stale_seconds if depends else None,
        )

    def _refusals(self, reading: ChainReading, stale: str) -> dict[int, Refusal]:
        refusals: dict[int, Refusal] = {}
        for g in self.held:
            state = reading.generations.get(g)
            if state is not None and state.status is GenerationStatus.RETIRED:
                refusals[g] = Refusal(
                    GONE,
                    "retired",
                    f"generation {g} was retired on chain: its keys are no longer served "
                    f"(generation {reading.latest} is the latest)",
                )
            elif stale and g < reading.latest:
                refusals[g] = Refusal(
                    UNAVAILABLE,
                    "stale",
                    f"generation {g} withheld: {stale}, so the agent cannot tell whether "
                    "it was retired",
                )
        return refusals

    def _default(self, reading: ChainReading, refusals: Mapping[int, Refusal]) -> int:
        if self.pinned:
            return self.pinned if self.pinned in self.held else 0
        in_window = [
            g
            for g in self.held
            if (s := reading.generations.get(g)) is not None
            and s.status is GenerationStatus.RETIRING
            and reading.head <= s.retire_after
        ]
        if in_window:
            return min(in_window)
        if reading.latest in self.held:
            return reading.latest
        # The latest generation's keys are not here yet (no link on chain, nodes down):
        # the newest generation still served stands in.
        return max((g for g in self.held if g not in refusals), default=0)

    def _withheld(self, reading: ChainReading, stale: str) -> Refusal | None:
        blocks = reading.live_revocation_blocks
        if not blocks:
            return None
        if self._refusal is not None:
            head, why = self._refusal
            return Refusal(
                FORBIDDEN,
                "revoked",
                f"keys withheld (live revocation): at block {head} the KMS network refused "
                f"this app's keys: {why}. Keys handed out before are beyond the agent's reach",
            )
        if stale:
            return Refusal(
                UNAVAILABLE,
                "stale",
                f"keys withheld (live revocation, {blocks} blocks): {stale}, so the agent "
                "cannot confirm the app may still have its keys",
            )
        confirmed = self._confirmed_at
        if confirmed is None or reading.head > confirmed + blocks:
            last = "never" if confirmed is None else f"at block {confirmed}"
            cause = f"; last attempt: {self._failure}" if self._failure else ""
            return Refusal(
                UNAVAILABLE,
                "unconfirmed",
                f"keys withheld (live revocation, {blocks} blocks): the network last "
                f"confirmed this app's keys {last}, and the chain is at block "
                f"{reading.head}{cause}",
            )
        return None
