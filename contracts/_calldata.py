"""Reading bytes the contract only hashed: an argument of the call that posted them.

Epoch keys and sealed shares are large, so `EpochManager` stores only their keccak256 (and
the block of the call) and emits an event; the bytes themselves stay in the transaction's
calldata, which every node can fetch. Reading one back:

    the event log (topics: event, epoch, poster) -> its transaction
    -> the transaction's input decoded as our function -> the argument -> keccak256 == stored

Outcomes differ in kind:

* `bytes`: the argument, and its hash matches what the contract stored;
* None: posted, but the bytes cannot be had from the transaction (it did not call our
  contract directly, it decodes as something else, or its hash differs). Every node sees the
  same transaction, so every node gets the same None: callers treat it like malformed data;
* ChainError: the RPC node could not say (no answer, no such log or transaction although the
  contract recorded one): transient, try again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_utils.crypto import keccak

from contracts.errors import ChainError

if TYPE_CHECKING:
    from contracts._base import ContractClient

#: The posted bytes; None when they cannot be recovered (see the module docstring).
Posted = bytes | None


@dataclass(frozen=True, slots=True)
class Posting:
    """Which event announces the post, which function carried it, and which argument."""

    event: str
    function: str
    argument: str


def _topic(value: int | str) -> str:
    raw = value.to_bytes(32, "big") if isinstance(value, int) else bytes.fromhex(value[2:])
    return "0x" + raw.rjust(32, b"\0").hex()


def posted_argument(
    client: ContractClient,
    posting: Posting,
    *,
    epoch: int,
    poster: str,
    blocks: tuple[int, int],
    expected_hash: bytes,
) -> Posted:
    """The argument `posting` names, from the call `poster` made for `epoch` in `blocks`
    (first, last; one post per poster and epoch, so at most one log matches)."""
    w3, address = client.w3, client.address
    topic = client.contract.events[posting.event]().topic
    try:
        logs = w3.eth.get_logs(
            {
                "address": address,
                "fromBlock": blocks[0],
                "toBlock": blocks[1],
                "topics": [topic, _topic(epoch), _topic(poster)],
            }
        )
    except Exception as exc:  # web3 and transport errors alike: the RPC node did not answer
        raise ChainError(f"{posting.event} of {poster} in epoch {epoch}: {exc}") from None
    if not logs:
        raise ChainError(f"no {posting.event} log of {poster} in blocks {blocks} (epoch {epoch})")
    tx_hash = logs[0]["transactionHash"]
    try:
        tx: Any = w3.eth.get_transaction(tx_hash)
    except Exception as exc:
        raise ChainError(f"transaction 0x{bytes(tx_hash).hex()}: {exc}") from None
    if tx is None:
        raise ChainError(f"transaction 0x{bytes(tx_hash).hex()} not found")
    if str(tx.get("to") or "").lower() != address.lower():
        return None  # posted through another contract: the bytes are not in our call's input
    try:
        function, args = client.contract.decode_function_input(tx["input"])
    except Exception:  # eth_abi's decoding errors: the input is not a call of ours
        return None
    if function.fn_name != posting.function or int(args.get("epochId", -1)) != epoch:
        return None
    value = bytes(args[posting.argument])
    return value if keccak(value) == expected_hash else None
