"""Fetching and decoding the events of our contracts, oldest first, in block chunks.

Public RPC endpoints cap the block range of `eth_getLogs`, so ranges are read in chunks.
A log whose topic none of our ABIs knows (a dstack-style controller's own events) is kept
raw as event "unknown".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3._utils.events import get_event_data

from contracts._artifacts import load_artifact
from contracts.errors import InvalidInput

_ARTIFACTS = ("KmsGovernance", "AppAuth", "AppAuthFactory")
DEFAULT_CHUNK = 10_000


@dataclass(frozen=True)
class ChainEvent:
    block: int
    tx_hash: str
    log_index: int
    contract: str
    event: str
    args: Mapping[str, Any]


@cache
def event_table() -> dict[bytes, dict[str, Any]]:
    table: dict[bytes, dict[str, Any]] = {}
    for artifact in _ARTIFACTS:
        for entry in load_artifact(artifact).abi:
            if entry["type"] == "event":
                table.setdefault(bytes(event_abi_to_log_topic(cast(ABIEvent, entry))), entry)
    return table


def topic_of(name: str) -> bytes:
    for topic, entry in event_table().items():
        if entry["name"] == name:
            return topic
    raise InvalidInput("names", f"no event called {name!r} in our contracts")


def decode_logs(w3: Web3, logs: Iterable[Any]) -> list[ChainEvent]:
    decoded = []
    for log in logs:
        topics = log["topics"]
        known = event_table().get(bytes(topics[0])) if topics else None
        if known is None:
            name, args = "unknown", {"topics": [bytes(t) for t in topics]}
        else:
            name, args = known["name"], dict(get_event_data(w3.codec, known, log)["args"])
        decoded.append(
            ChainEvent(
                block=int(log["blockNumber"]),
                tx_hash="0x" + bytes(log["transactionHash"]).hex(),
                log_index=int(log["logIndex"]),
                contract=to_checksum_address(log["address"]),
                event=name,
                args=args,
            )
        )
    return decoded


def fetch_events(
    w3: Web3,
    addresses: Sequence[str],
    from_block: int,
    to_block: int | None = None,
    *,
    names: Sequence[str] = (),
    chunk: int = DEFAULT_CHUNK,
) -> list[ChainEvent]:
    """Events of `addresses` in [from_block, to_block] (default: the head), oldest first."""
    if chunk < 1:
        raise InvalidInput("chunk", f"must be >= 1, got {chunk}")
    end = w3.eth.block_number if to_block is None else to_block
    topics = [["0x" + topic_of(name).hex() for name in names]] if names else None
    logs: list[Any] = []
    for low in range(from_block, end + 1, chunk):
        params: dict[str, Any] = {
            "address": list(addresses),
            "fromBlock": low,
            "toBlock": min(end, low + chunk - 1),
        }
        if topics:
            params["topics"] = topics
        logs.extend(w3.eth.get_logs(params))  # type: ignore[arg-type]
    events = decode_logs(w3, logs)
    return sorted(events, key=lambda e: (e.block, e.log_index))
