"""Contract reads as one bare eth_call each, without web3's per-call machinery.

web3's `ContractFunction.call` looks the function up in the ABI, validates it, asks the RPC
node for its chain id and runs the middleware stack on every call: 5-8 ms of CPU a read,
which made chain reads about a sixth of a loaded node's CPU. A read needs none of that: this
plans each view function once (selector, input and output types), encodes and decodes with
web3's own codec and normalizers, and sends the eth_call through the provider, so callers get
exactly the values `ContractFunction.call` returned (addresses checksummed, one output
unwrapped) and the same errors (`CallReverted` with the decoded revert, `ChainError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from eth_typing import ABIFunction
from eth_utils.abi import function_abi_to_4byte_selector
from web3 import Web3
from web3._utils.abi import map_abi_data
from web3._utils.normalizers import BASE_RETURN_NORMALIZERS
from web3.types import RPCEndpoint

from contracts._tx import abi_type, revert_from
from contracts._types import BlockRef
from contracts.errors import CallReverted, ChainError


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """How to call one view function: its selector and ABI types."""

    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def plan_reads(abi: Sequence[dict[str, Any]]) -> dict[str, ReadPlan]:
    """A plan per view or pure function of `abi` (overloaded names are left to web3)."""
    functions = [e for e in abi if e.get("type") == "function"]
    names = [e["name"] for e in functions]
    plans: dict[str, ReadPlan] = {}
    for entry in functions:
        if entry.get("stateMutability") not in ("view", "pure") or names.count(entry["name"]) > 1:
            continue
        plans[entry["name"]] = ReadPlan(
            name=entry["name"],
            selector=function_abi_to_4byte_selector(cast(ABIFunction, entry)),
            inputs=tuple(abi_type(i) for i in entry["inputs"]),
            outputs=tuple(abi_type(o) for o in entry["outputs"]),
        )
    return plans


def encode_call(w3: Web3, plan: ReadPlan, args: Sequence[Any]) -> bytes:
    """The call data; raises what the codec raises for arguments that do not fit."""
    return plan.selector + w3.codec.encode(list(plan.inputs), list(args))


def read(w3: Web3, address: str, plan: ReadPlan, data: bytes, block: BlockRef) -> Any:
    """eth_call `data` (from `encode_call`) at `block` and decode the answer."""
    block_param = hex(block) if isinstance(block, int) else block
    response = w3.provider.make_request(
        RPCEndpoint("eth_call"), [{"to": address, "data": "0x" + data.hex()}, block_param]
    )
    error = response.get("error")
    if error is not None:
        raise _call_error(plan.name, error)
    result = response.get("result")
    if not isinstance(result, str):
        raise ChainError(f"{plan.name}: the RPC node answered without a result: {response}")
    raw = bytes.fromhex(result.removeprefix("0x"))
    if not raw and plan.outputs:
        raise ChainError(f"{plan.name}: empty answer: no contract at {address} at block {block}?")
    try:
        decoded = w3.codec.decode(list(plan.outputs), raw)
    except Exception as exc:  # eth_abi's DecodingError family
        raise ChainError(f"{plan.name}: cannot decode the answer: {exc}") from None
    values = map_abi_data(BASE_RETURN_NORMALIZERS, list(plan.outputs), decoded)
    return values[0] if len(values) == 1 else values


def _call_error(name: str, error: Any) -> Exception:
    if not isinstance(error, dict):
        return ChainError(f"{name}: the RPC node refused the call: {error}")
    message = str(error.get("message", ""))
    if error.get("code") == 3 or "revert" in message.lower():
        revert = revert_from(error.get("data"), message)
        return CallReverted(f"{name}: reverted: {revert}", revert)
    return ChainError(f"{name}: the RPC node refused the call: {message or error}")
