"""Errors of the chain client.

ContractsError                  base; `diagnostics()` says what happened and what to check
├── InvalidInput (ValueError)   a malformed argument, named; nothing was sent
├── ArtifactError               compiled artifacts missing, unreadable or stale
├── CompileError                solc (npm) failed or reported errors
├── AnvilError                  the local chain did not start
├── UnexpectedContract          code on chain is not the contract tkms ships, or misbehaved
├── Refused                     the chain's state rules the action out; checked before sending
└── ChainError                  the chain refused
    ├── CallReverted            a read (eth_call) reverted
    ├── TransactionFailed       a write reverted, before sending (gas estimate) or once mined
    └── NoQuorum                fewer than k of m RPC endpoints agreed on a read (`_quorum`)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ContractsError(Exception):
    """Base class of every error raised by `contracts`."""

    def diagnostics(self) -> str:
        return str(self)


class InvalidInput(ContractsError, ValueError):
    """An argument is malformed; the message names it. Nothing was sent to the chain."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument
        self.problem = problem


class ArtifactError(ContractsError):
    """The committed compiled artifacts are missing, unreadable or do not match the sources."""


class CompileError(ContractsError):
    """The Solidity compiler failed."""


class AnvilError(ContractsError):
    """The local anvil chain could not be started."""


class UnexpectedContract(ContractsError):
    """A contract on chain is not the one tkms ships (its runtime code differs), or it did
    something other than what that contract does (an app owned by someone else)."""


class Refused(ContractsError):
    """What the chain holds now rules the action out, or it is not this signer's to take: found
    before anything was sent. The message says why and what to do instead."""


@dataclass(frozen=True)
class Revert:
    """A decoded revert: a custom error (`name` and `args`), `Error(string)`, or a panic."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    raw: str = "0x"

    def __str__(self) -> str:
        if self.name == "Error" and "message" in self.args:
            return str(self.args["message"])
        if self.name == "unknown":
            return f"unknown error {self.raw}"
        inner = ", ".join(f"{key}={_show(value)}" for key, value in self.args.items())
        return f"{self.name}({inner})"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and not value.startswith("0x"):
        return repr(value)
    return str(value)


class ChainError(ContractsError):
    """The chain refused a call or a transaction."""

    def __init__(self, message: str, revert: Revert | None = None) -> None:
        super().__init__(message)
        self.revert = revert

    @property
    def error_name(self) -> str | None:
        """The custom error's name (`NotOwner`, ...), `Error`, `Panic`, or None if unknown."""
        return self.revert.name if self.revert else None


class CallReverted(ChainError):
    """A read reverted."""


class TransactionFailed(ChainError):
    """A write reverted. `tx_hash` is None when the gas estimate already reverted (not sent)."""

    def __init__(
        self, function: str, revert: Revert | None, tx_hash: str | None, detail: str = ""
    ) -> None:
        reason = str(revert) if revert else (detail or "reverted without a reason")
        where = f"transaction {tx_hash} reverted" if tx_hash else "reverted before sending"
        super().__init__(f"{function}: {where}: {reason}", revert)
        self.function = function
        self.tx_hash = tx_hash

    def diagnostics(self) -> str:
        hint = (
            "the transaction was mined and reverted; the state it read changed after the estimate"
            if self.tx_hash
            else "the transaction was not sent; nothing changed"
        )
        return f"{self}\n({hint})"


class NoQuorum(ChainError):
    """Fewer than k of the m RPC endpoints gave the same answer (`contracts._quorum`): the read
    has no result. `disagreement` is True when endpoints answered differently (one of them
    lies or is on another chain), False when too few answered at all (unreachable)."""

    def __init__(self, method: str, detail: str, *, disagreement: bool = True) -> None:
        super().__init__(f"{method}: no quorum: {detail}")
        self.method = method
        self.disagreement = disagreement
