"""Rebuilding the governance history from events: who allowed or revoked what, when, where.

The governance's own events come first; its `AppRegistered` events name the app controllers
and their registrars (the factory), whose events are read too. Logs are fetched in block chunks
(public RPC endpoints cap ranges) and returned oldest first. `sender` is the transaction's
signer; for an owner that is a multisig or timelock, the acting contract is the owner at that
block, which the ownership events in the same history show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3._utils.events import get_event_data

from contracts._artifacts import load_artifact
from contracts._hexargs import parse_address

_ARTIFACTS = ("KmsGovernance", "AppAuth", "AppAuthFactory")


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


def _event_table() -> dict[bytes, dict[str, Any]]:
    table: dict[bytes, dict[str, Any]] = {}
    for artifact in _ARTIFACTS:
        for entry in load_artifact(artifact).abi:
            if entry["type"] == "event":
                table.setdefault(bytes(event_abi_to_log_topic(cast(ABIEvent, entry))), entry)
    return table


class AuditReader:
    """Reads the history of one governance deployment."""

    def __init__(self, w3: Web3, governance: str, *, chunk: int = 10_000) -> None:
        self.w3 = w3
        self.governance = parse_address("governance", governance)
        self.chunk = chunk
        self._events = _event_table()
        self._senders: dict[bytes, str] = {}
        self._times: dict[int, int] = {}
        self._sources: dict[str, str] = {self.governance: "governance"}

    def _logs(self, addresses: list[str], start: int, end: int) -> list[Any]:
        logs: list[Any] = []
        for low in range(start, end + 1, self.chunk):
            high = min(end, low + self.chunk - 1)
            params = {"address": addresses, "fromBlock": low, "toBlock": high}
            logs.extend(self.w3.eth.get_logs(params))  # type: ignore[arg-type]
        return logs

    def history(self, *, from_block: int = 0, to_block: int | None = None) -> list[AuditEvent]:
        end = self.w3.eth.block_number if to_block is None else to_block
        governance_events = self._decode(self._logs([self.governance], from_block, end))
        for item in governance_events:
            if item.event == "AppRegistered":
                self._sources.setdefault(str(item.args["appId"]), "app")
                self._sources.setdefault(str(item.args["registrar"]), "factory")
            if item.event == "AppFactorySet":
                self._sources.setdefault(str(item.args["appFactory"]), "factory")
        related = sorted(set(self._sources) - {self.governance})
        others = self._decode(self._logs(related, from_block, end)) if related else []
        return sorted(governance_events + others, key=lambda e: (e.block, e.log_index))

    def _decode(self, logs: Iterable[Any]) -> list[AuditEvent]:
        decoded = []
        for log in logs:
            topics = log["topics"]
            known = self._events.get(bytes(topics[0])) if topics else None
            contract = to_checksum_address(log["address"])
            if known is None:
                # A dstack-style controller may emit events we have no ABI for: keep them raw.
                name, args = "unknown", {"topics": [bytes(t) for t in topics]}
            else:
                name = known["name"]
                args = dict(get_event_data(self.w3.codec, known, log)["args"])
            decoded.append(
                AuditEvent(
                    block=int(log["blockNumber"]),
                    timestamp=self._time(int(log["blockNumber"])),
                    tx_hash="0x" + bytes(log["transactionHash"]).hex(),
                    log_index=int(log["logIndex"]),
                    contract=contract,
                    source=self._sources.get(contract, "app"),
                    event=name,
                    sender=self._sender(bytes(log["transactionHash"])),
                    args=args,
                )
            )
        return decoded

    def _time(self, block: int) -> int:
        if block not in self._times:
            self._times[block] = int(self.w3.eth.get_block(block)["timestamp"])
        return self._times[block]

    def _sender(self, tx_hash: bytes) -> str:
        if tx_hash not in self._senders:
            self._senders[tx_hash] = str(self.w3.eth.get_transaction(tx_hash)["from"])  # type: ignore[arg-type]
        return self._senders[tx_hash]


def read_history(w3: Web3, governance: str, *, from_block: int = 0) -> list[AuditEvent]:
    """The governance history, oldest first."""
    return AuditReader(w3, governance).history(from_block=from_block)
