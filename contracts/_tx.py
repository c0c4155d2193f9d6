"""Sending transactions and decoding reverts into named custom errors.

Every write is signed locally (the key never goes to the RPC node), estimated first (a revert
then costs nothing and carries its reason), and awaited. A transaction that reverts once mined
is replayed with eth_call at its block to recover the reason, and the error carries its hash.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_typing import ABIError
from eth_utils.abi import function_abi_to_4byte_selector
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, Web3RPCError

from contracts._artifacts import all_abis
from contracts._types import BlockRef
from contracts.errors import CallReverted, ChainError, InvalidInput, Revert, TransactionFailed

_PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
}


def abi_type(entry: dict[str, Any]) -> str:
    if entry["type"].startswith("tuple"):
        inner = ",".join(abi_type(c) for c in entry["components"])
        return f"({inner}){entry['type'][5:]}"
    return str(entry["type"])


@cache
def _error_table() -> dict[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    table: dict[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
    for abi in all_abis():
        for entry in abi:
            if entry["type"] == "error":
                selector = function_abi_to_4byte_selector(cast(ABIError, entry))
                names = tuple(i["name"] for i in entry["inputs"])
                types = tuple(abi_type(i) for i in entry["inputs"])
                table[selector] = (entry["name"], names, types)
    table[bytes.fromhex("08c379a0")] = ("Error", ("message",), ("string",))
    table[bytes.fromhex("4e487b71")] = ("Panic", ("code",), ("uint256",))
    return table


def decode_revert(data: str | bytes | None) -> Revert | None:
    """Decodes revert data into a `Revert`, or None if there is none or it is unknown."""
    if data is None:
        return None
    raw = (
        bytes.fromhex(data[2:] if data.startswith("0x") else data)
        if isinstance(data, str)
        else data
    )
    if len(raw) < 4:
        return None
    known = _error_table().get(raw[:4])
    if known is None:
        return Revert(name="unknown", raw="0x" + raw.hex())
    name, names, types = known
    try:
        values = abi_decode(list(types), raw[4:])
    except Exception:
        return Revert(name=name, raw="0x" + raw.hex())
    args = {
        key: to_checksum_address(value) if kind == "address" else value
        for key, kind, value in zip(names, types, values, strict=True)
    }
    if name == "Panic":
        args["meaning"] = _PANIC_CODES.get(int(args["code"]), "unknown panic")
    return Revert(name=name, args=args, raw="0x" + raw.hex())


def revert_from(data: object, message: str | None) -> Revert | None:
    """The revert an RPC error carries: its data decoded, else its message (None: neither)."""
    decoded = decode_revert(data if isinstance(data, str) else None)
    if decoded is None and message:
        return Revert(name="Error", args={"message": message})
    return decoded


def revert_of(exc: ContractLogicError) -> Revert | None:
    return revert_from(exc.data, exc.message)


def call(fn: ContractFunction, block: BlockRef = "latest") -> Any:
    """eth_call at `block`; a revert becomes CallReverted with the decoded error."""
    try:
        return fn.call(block_identifier=block)  # type: ignore[arg-type]
    except ContractLogicError as exc:
        revert = revert_of(exc)
        raise CallReverted(f"{fn.fn_name}: reverted: {revert}", revert) from None
    except Web3RPCError as exc:
        raise ChainError(f"{fn.fn_name}: the RPC node refused the call: {exc}") from None


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block: int
    gas_used: int
    logs: tuple[Any, ...]
    contract_address: str | None = None


class Transactor:
    """Signs and sends contract calls from one local account.

    With `chain_id`, transactions are signed for that chain only, and the first send checks
    the RPC serves it (`ChainError` otherwise, nothing signed); without, for whatever chain the
    RPC reports.
    """

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        timeout: float = 120.0,
        chain_id: int | None = None,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.timeout = timeout
        self.pinned_chain_id = chain_id
        self._chain_id: int | None = None
        # One nonce at a time: two threads sending from one account would pick the same nonce.
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return str(self.account.address)

    def send(
        self, fn: ContractFunction | ContractConstructor, *, gas: int | None = None
    ) -> Receipt:
        """Signs, sends and awaits `fn`; raises TransactionFailed on a revert."""
        with self._lock:
            return self._send(fn, gas)

    def _send(self, fn: ContractFunction | ContractConstructor, gas: int | None) -> Receipt:
        name = fn.fn_name if isinstance(fn, ContractFunction) else "constructor"
        if self._chain_id is None:
            served = int(self.w3.eth.chain_id)
            if self.pinned_chain_id is not None and served != self.pinned_chain_id:
                raise ChainError(
                    f"{name}: the RPC serves chain {served}, not {self.pinned_chain_id}: "
                    "nothing was signed"
                )
            self._chain_id = served
        base: dict[str, Any] = {"from": self.address, "chainId": self._chain_id}
        base["nonce"] = self.w3.eth.get_transaction_count(self.account.address, "pending")
        if gas is not None:
            base["gas"] = gas
        try:
            tx = fn.build_transaction(base)  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise TransactionFailed(name, revert_of(exc), None) from None
        if gas is None:
            # Estimates can fall short when storage refunds are involved (re-registering a node
            # rewrites its slots): a margin costs nothing unused and avoids out-of-gas reverts.
            tx["gas"] = int(tx["gas"]) * 5 // 4 + 20_000
        signed = self.account.sign_transaction(tx)  # type: ignore[arg-type]
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Web3RPCError as exc:
            raise ChainError(f"{name}: the RPC node refused the transaction: {exc}") from None
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        hex_hash = "0x" + bytes(tx_hash).hex()
        if receipt["status"] != 1:
            raise TransactionFailed(name, self._replay(tx, receipt["blockNumber"]), hex_hash)
        return Receipt(
            tx_hash=hex_hash,
            block=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            logs=tuple(receipt["logs"]),
            contract_address=receipt.get("contractAddress"),
        )

    def _replay(self, tx: Any, block: int) -> Revert | None:
        replay = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        try:
            self.w3.eth.call(replay, block)  # type: ignore[arg-type]
        except ContractLogicError as exc:
            return revert_of(exc)
        return None


def logs_of(receipt: Receipt, address: str, topic: str) -> list[Any]:
    """The logs in `receipt` emitted by `address` whose first topic is `topic` (0x-hex)."""
    wanted = bytes.fromhex(topic.removeprefix("0x"))
    return [
        log
        for log in receipt.logs
        if str(log["address"]).lower() == address.lower()
        and log["topics"]
        and bytes(log["topics"][0]) == wanted
    ]


def require_sender(transactor: Transactor | None, action: str) -> Transactor:
    if transactor is None:
        raise InvalidInput("account", f"{action} needs a signing account; this client is read-only")
    return transactor
