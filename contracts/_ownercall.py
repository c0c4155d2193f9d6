"""`--calldata`: a call printed for an owner that cannot sign here (a multisig, a timelock).

The call is encoded and simulated as that owner at the head (`eth_call` from its address), so
what the multisig's signers are asked to approve is known to succeed now; a revert is refused
with its decoded reason and nothing is printed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from contracts._tx import revert_of
from contracts.errors import Refused


def owner_call(
    w3: Web3, contract: Contract, function: str, *args: Any, caller: str
) -> dict[str, Any]:
    """The call `caller` should make, checked by simulating it as `caller` now."""
    data = contract.encode_abi(function, args=list(args))
    try:
        w3.eth.call({"from": caller, "to": contract.address, "data": data})
    except ContractLogicError as exc:
        raise Refused(
            f"{function} would revert if {caller} made it now: {revert_of(exc)}"
        ) from None
    return {
        "to": contract.address,
        "value": 0,
        "data": data,
        "function": function,
        "args": [jsonable(a) for a in args],
        "from": caller,
    }


def print_call(args: argparse.Namespace, call: dict[str, Any]) -> int:
    if getattr(args, "json", False):
        print(json.dumps(call, indent=2))
    else:
        print(
            f"call for {call['from']} to make (through its multisig or timelock); simulated "
            f"as {call['from']} at the head, it succeeds:\n"
            f"  to     {call['to']}\n  value  0\n  data   {call['data']}\n"
            f"  ({call['function']}({', '.join(map(str, call['args']))}))"
        )
    return 0


def jsonable(value: Any) -> Any:
    """Bytes as 0x-hex, recursively: call arguments and event arguments as JSON."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
