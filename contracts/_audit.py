"""Rebuilding the governance history from events: who allowed or revoked what, when, where.

The governance's own events come first; its `AppRegistered` and `AppFactorySet` events name
the app controllers and the factory, whose events are read too. The trail is complete only for
controllers running tkms's `AppAuth` (every change emits an event); a custom controller (any
IAppAuth, allowed for dstack compatibility) can change its decisions silently, so its app is
flagged. Only the governance's `appFactory` of the time is read as a factory: anyone can call
`registerApp`, and such a registrar's self-chosen events are not merged into the history.
`sender` is the transaction's signer; for an owner that is a multisig or timelock, the acting
contract is the owner at that block, which the ownership events in the same history show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from web3 import Web3
from web3.exceptions import Web3Exception

from contracts._codecheck import code_hash, is_deployed
from contracts._events import DEFAULT_CHUNK, ChainEvent, fetch_events
from contracts._governance import GovernanceClient
from contracts._hexargs import parse_address
from contracts._ownercall import jsonable
from contracts.errors import ContractsError


@dataclass(frozen=True)
class AuditEvent:
    block: int
    timestamp: int
    tx_hash: str
    log_index: int
    contract: str
    source: str  # governance | factory | app | custom-app (see AuditReader)
    event: str
    sender: str
    args: Mapping[str, Any]
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "time": datetime.fromtimestamp(self.timestamp, UTC).isoformat(),
            "tx_hash": self.tx_hash,
            "log_index": self.log_index,
            "contract": self.contract,
            "source": self.source,
            "event": self.event,
            "sender": self.sender,
            "args": {key: jsonable(value) for key, value in self.args.items()},
            "notes": list(self.notes),
        }

    def to_line(self) -> str:
        when = datetime.fromtimestamp(self.timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        args = " ".join(f"{key}={_short(jsonable(value))}" for key, value in self.args.items())
        notes = f" [{'; '.join(self.notes)}]" if self.notes else ""
        return (
            f"block {self.block} {when} {self.source} {self.contract} {self.event}"
            f"{' ' + args if args else ''} (by {self.sender}){notes}"
        )


def _short(value: Any) -> str:
    text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if text.startswith("0x") and len(text) > 70:
        return f"{text[:18]}...({(len(text) - 2) // 2} bytes)"
    return text


CUSTOM_CONTROLLER = "custom controller: decisions not audited"
Position = tuple[int, int]  # (block, log index): the order of events on chain


@dataclass(frozen=True)
class _FactoryTerm:
    """`address` was the governance's appFactory from `start` until `end` (None: still is)."""

    address: str
    start: Position
    end: Position | None

    def covers(self, position: Position) -> bool:
        return self.start < position and (self.end is None or position < self.end)


class AuditReader:
    """Reads the history of one governance deployment.

    Sources: `governance`; `factory`, the governance's `appFactory` while it was that (a
    contract that merely calls `registerApp` is a registrar: its events are not merged); `app`,
    a registered controller running tkms's AppAuth; `custom-app`, a registered controller
    running other code, which can change its decisions without an event (flagged
    `CUSTOM_CONTROLLER`). `notes` says what a line does not prove.
    """

    def __init__(self, w3: Web3, governance: str, *, chunk: int = DEFAULT_CHUNK) -> None:
        self.w3 = w3
        self.governance = parse_address("governance", governance)
        self.chunk = chunk
        self._senders: dict[str, str] = {}
        self._times: dict[int, int] = {}
        self.custom_controllers: dict[str, str] = {}  # app id -> runtime code hash
        self.foreign_registrars: set[str] = set()
        self._code_checks: dict[tuple[str, str], bool] = {}

    def history(self, *, from_block: int = 0, to_block: int | None = None) -> list[AuditEvent]:
        end = self.w3.eth.block_number if to_block is None else to_block
        own = fetch_events(self.w3, [self.governance], from_block, end, chunk=self.chunk)
        terms = self._factory_terms(own, from_block)
        apps = sorted({str(e.args["appId"]) for e in own if e.event == "AppRegistered"})
        for app in apps:
            if not self._runs(app, "AppAuth", end):
                self.custom_controllers[app] = code_hash(self.w3, app, block=end)
        factories = sorted({term.address for term in terms})
        related = factories + [app for app in apps if app not in factories]
        others = (
            fetch_events(self.w3, related, from_block, end, chunk=self.chunk) if related else []
        )
        history = []
        for event in sorted(own + others, key=lambda e: (e.block, e.log_index)):
            source, notes = self._judge(event, terms, end)
            if source is not None:
                history.append(self._annotate(event, source, notes))
        return history

    def _factory_terms(self, own: list[ChainEvent], from_block: int) -> list[_FactoryTerm]:
        current = self._factory_before(from_block)
        starts: list[tuple[Position, str]] = [((from_block, -1), current)] if current else []
        starts += [
            ((e.block, e.log_index), str(e.args["appFactory"]))
            for e in own
            if e.event == "AppFactorySet"
        ]
        terms = []
        for i, (start, factory) in enumerate(starts):
            stop = starts[i + 1][0] if i + 1 < len(starts) else None
            if int(factory, 16) != 0:
                terms.append(_FactoryTerm(factory, start, stop))
        return terms

    def _factory_before(self, block: int) -> str | None:
        """The appFactory when `block` begins (a node without old state: from the events)."""
        if block <= 0:
            return None
        governance = GovernanceClient(self.w3, self.governance)
        try:
            factory = governance.get_app_factory(block=block - 1)
        except (ContractsError, Web3Exception):
            sets = fetch_events(
                self.w3, [self.governance], 0, block - 1, names=["AppFactorySet"], chunk=self.chunk
            )
            factory = str(sets[-1].args["appFactory"]) if sets else "0x0"
        return factory if int(factory, 16) else None

    def _judge(
        self, event: ChainEvent, terms: list[_FactoryTerm], end: int
    ) -> tuple[str | None, tuple[str, ...]]:
        """(source, notes) of `event`; source None: not ours to show."""
        position = (event.block, event.log_index)
        if event.contract == self.governance:
            notes: list[str] = []
            if event.event == "AppRegistered":
                registrar = str(event.args["registrar"])
                if not any(t.address == registrar and t.covers(position) for t in terms):
                    self.foreign_registrars.add(registrar)
                    notes.append(f"registrar {registrar} is not the app factory")
                if str(event.args["appId"]) in self.custom_controllers:
                    notes.append(CUSTOM_CONTROLLER)
            return "governance", tuple(notes)
        if any(t.address == event.contract and t.covers(position) for t in terms):
            if self._runs(event.contract, "AppAuthFactory", end):
                return "factory", ()
            return "factory", ("factory code is not tkms's AppAuthFactory",)
        if event.contract in self.custom_controllers:
            return "custom-app", (CUSTOM_CONTROLLER,)
        if any(t.address == event.contract for t in terms):
            return None, ()  # a former or later factory's events, outside its term
        return "app", ()

    def _annotate(self, event: ChainEvent, source: str, notes: tuple[str, ...]) -> AuditEvent:
        return AuditEvent(
            block=event.block,
            timestamp=self._time(event.block),
            tx_hash=event.tx_hash,
            log_index=event.log_index,
            contract=event.contract,
            source=source,
            event=event.event,
            sender=self._sender(event.tx_hash),
            args=event.args,
            notes=notes,
        )

    def _runs(self, address: str, artifact: str, block: int) -> bool:
        key = (address, artifact)
        if key not in self._code_checks:
            self._code_checks[key] = is_deployed(self.w3, address, artifact, block=block)
        return self._code_checks[key]

    def _time(self, block: int) -> int:
        if block not in self._times:
            self._times[block] = int(self.w3.eth.get_block(block)["timestamp"])
        return self._times[block]

    def _sender(self, tx_hash: str) -> str:
        if tx_hash not in self._senders:
            transaction = self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            self._senders[tx_hash] = str(transaction["from"])
        return self._senders[tx_hash]


def read_history(w3: Web3, governance: str, *, from_block: int = 0) -> list[AuditEvent]:
    """The governance history, oldest first."""
    return AuditReader(w3, governance).history(from_block=from_block)
