"""How `contracts._quorum` compares JSON-RPC answers: what two endpoints' answers must share to
count as the same answer (the fields consensus fixes, not a client's extras), how a read at
the head is pinned to the agreed block, and a short description of an answer for reports."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

#: Block fields fixed by consensus: equal on every honest endpoint, whatever its client.
_BLOCK_FIELDS: Final = (
    "number",
    "hash",
    "parentHash",
    "stateRoot",
    "receiptsRoot",
    "transactionsRoot",
    "timestamp",
    "baseFeePerGas",
    "gasUsed",
    "logsBloom",
)
_LOG_FIELDS: Final = ("address", "topics", "data", "blockNumber", "blockHash", "logIndex")
#: Tags resolved to the agreed head before a read is asked.
HEAD_TAGS: Final = ("latest", "pending")


def names_head(params: list[Any]) -> bool:
    for value in params:
        if value in HEAD_TAGS:
            return True
        if isinstance(value, dict) and any(
            value.get(k) in HEAD_TAGS for k in ("fromBlock", "toBlock")
        ):
            return True
    return False


def pinned(params: list[Any], block: str) -> list[Any]:
    """`params` with every head tag replaced by `block` (also in a filter's range)."""
    pinned: list[Any] = []
    for value in params:
        if value in HEAD_TAGS:
            value = block
        elif isinstance(value, dict):
            value = {
                k: block if k in ("fromBlock", "toBlock") and v in HEAD_TAGS else v
                for k, v in value.items()
            }
        pinned.append(value)
    return pinned


def answer_key(method: str, response: Mapping[str, Any]) -> str:
    """What two answers must share to count as the same answer (module docstring)."""
    error = response.get("error")
    if error is not None:
        if isinstance(error, Mapping):
            # Messages differ between clients; the code and a revert's data do not.
            return _canonical(["error", error.get("code"), error.get("data")])
        return _canonical(["error", error])
    result = response.get("result")
    if method in ("eth_getBlockByNumber", "eth_getBlockByHash") and isinstance(result, Mapping):
        result = {k: result.get(k) for k in _BLOCK_FIELDS}
    elif method == "eth_getLogs" and isinstance(result, list):
        result = [
            {k: log.get(k) for k in _LOG_FIELDS} if isinstance(log, Mapping) else log
            for log in result
        ]
    return _canonical(["result", result])


def _canonical(value: Any) -> str:
    # Hex is case-insensitive and the keys are ours, so one case compares them all.
    return json.dumps(value, sort_keys=True, separators=(",", ":")).lower()


def summary(response: Mapping[str, Any] | None) -> str:
    """A short description of an answer, for reports (never the whole of a large one)."""
    if response is None:
        return "nothing"
    if "error" in response:
        error = response["error"]
        message = error.get("message", "") if isinstance(error, Mapping) else error
        return f"error {str(message)[:80]!r}"
    result = response.get("result")
    if isinstance(result, Mapping) and "hash" in result:
        return f"hash {result.get('hash')} (number {result.get('number')})"
    if isinstance(result, list):
        return f"{len(result)} items ({_canonical(result)[:16]}…)"
    text = str(result)
    return text if len(text) <= 40 else f"{text[:20]}…{text[-8:]} ({len(text)} chars)"
