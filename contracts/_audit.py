"""Rebuilding the governance history from events: who allowed or revoked what, when, where.

The governance's own events come first; its `AppRegistered` and `AppFactorySet` events name
the app controllers and the factory, whose events are read too. `sender` is the transaction's
signer; for an owner that is a multisig or timelock, the acting contract is the owner at that
block, which the ownership events in the same history show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from web3 import Web3

from contracts._events import DEFAULT_CHUNK, ChainEvent, fetch_events
from contracts._hexargs import parse_address


@dataclass(frozen=True)
class AuditEvent:
    block: int
    timestamp: int
    tx_hash: str
    log_index: int
    contract: str
    source: str  # governance | app | factory
    event: str
    sender: str
    args: Mapping[str, Any]

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
            "args": {key: _jsonable(value) for key, value in self.args.items()},
        }

    def to_line(self) -> str:
        when = datetime.fromtimestamp(self.timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        args = " ".join(f"{key}={_short(_jsonable(value))}" for key, value in self.args.items())
        return (
            f"block {self.block} {when} {self.source} {self.contract} {self.event}"
            f"{' ' + args if args else ''} (by {self.sender})"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _short(value: Any) -> str:
    text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if text.startswith("0x") and len(text) > 70:
        return f"{text[:18]}...({(len(text) - 2) // 2} bytes)"
    return text


class AuditReader:
    """Reads the history of one governance deployment."""

    def __init__(self, w3: Web3, governance: str, *, chunk: int = DEFAULT_CHUNK) -> None:
        self.w3 = w3
        self.governance = parse_address("governance", governance)
        self.chunk = chunk
        self._senders: dict[str, str] = {}
        self._times: dict[int, int] = {}
        self._sources: dict[str, str] = {self.governance: "governance"}

    def history(self, *, from_block: int = 0, to_block: int | None = None) -> list[AuditEvent]:
        end = self.w3.eth.block_number if to_block is None else to_block
        own = fetch_events(self.w3, [self.governance], from_block, end, chunk=self.chunk)
        for item in own:
            if item.event == "AppRegistered":
                self._sources.setdefault(str(item.args["appId"]), "app")
                self._sources.setdefault(str(item.args["registrar"]), "factory")
            if item.event == "AppFactorySet":
                self._sources.setdefault(str(item.args["appFactory"]), "factory")
        related = sorted(set(self._sources) - {self.governance})
        others = (
            fetch_events(self.w3, related, from_block, end, chunk=self.chunk) if related else []
        )
        merged = sorted(own + others, key=lambda e: (e.block, e.log_index))
        return [self._annotate(event) for event in merged]

    def _annotate(self, event: ChainEvent) -> AuditEvent:
        return AuditEvent(
            block=event.block,
            timestamp=self._time(event.block),
            tx_hash=event.tx_hash,
            log_index=event.log_index,
            contract=event.contract,
            source=self._sources.get(event.contract, "app"),
            event=event.event,
            sender=self._sender(event.tx_hash),
            args=event.args,
        )

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
