"""The shared base of the typed contract clients: reads pinned to a block, signed writes."""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar, Self

from web3 import Web3
from web3.contract import Contract

from contracts._artifacts import load_artifact
from contracts._hexargs import parse_address
from contracts._reads import ReadPlan, encode_call, plan_reads, read
from contracts._tx import Receipt, Transactor, call, logs_of, require_sender
from contracts._types import BlockRef


class ContractClient:
    """One deployed contract; `transactor` signs writes (None: the client is read-only)."""

    artifact: ClassVar[str] = ""
    argument: ClassVar[str] = "address"  # how errors name the address argument

    def __init__(self, w3: Web3, address: str, transactor: Transactor | None = None) -> None:
        self.w3 = w3
        self.address = parse_address(self.argument, address)
        self.contract: Contract = w3.eth.contract(
            address=self.address, abi=load_artifact(self.artifact).abi
        )
        self.transactor = transactor

    @property
    def sender(self) -> str:
        """The address that signs this client's writes."""
        return require_sender(self.transactor, "sender").address

    def with_transactor(self, transactor: Transactor) -> Self:
        return type(self)(self.w3, self.address, transactor)

    def _read(self, name: str, *args: Any, block: BlockRef) -> Any:
        plan = _plans(self.artifact).get(name)
        if plan is not None:
            try:
                data = encode_call(self.w3, plan, args)
            except Exception:
                pass  # web3's path below names the argument that does not fit
            else:
                return read(self.w3, self.address, plan, data, block)
        return call(self.contract.functions[name](*args), block)

    def _send(self, name: str, *args: Any) -> Receipt:
        return require_sender(self.transactor, name).send(self.contract.functions[name](*args))

    def event_args(self, receipt: Receipt, event: str) -> list[dict[str, Any]]:
        """The decoded arguments of `event` logs this contract emitted in `receipt`."""
        decoder = self.contract.events[event]()
        return [
            dict(decoder.process_log(log)["args"])
            for log in logs_of(receipt, self.address, decoder.topic)
        ]


@cache
def _plans(artifact: str) -> dict[str, ReadPlan]:
    return plan_reads(load_artifact(artifact).abi)
