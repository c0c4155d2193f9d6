"""Handlers of the governance owner's `tkms chain ...` commands: epochs, generations, the
refresh schedule, ownership, and `status`.

Each command reads the governance state at one block, checks everything the contract would
revert on (`contracts._preflight`: a clear error, exit 2 for a malformed argument and 1 for a
state that rules the action out, nothing sent), then either sends the call and prints the
transaction and the resulting state, or, with `--calldata`, prints the call for the owner to
make through its multisig or timelock after simulating it as the owner.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from contracts._commands import EXIT_OK, emit, governance_client
from contracts._governance import GovernanceClient
from contracts._ownercall import owner_call, print_call
from contracts._preflight import (
    check_interval,
    parse_phases,
    plan_accept,
    plan_cancel,
    plan_epoch,
    plan_retire,
    plan_timeout,
    plan_transfer,
    require_owner,
)
from contracts._state import GovernanceState, describe_epoch, read_state
from contracts._tx import Receipt
from contracts._types import EpochKind
from contracts.cliargs import connect, signing_transactor
from contracts.errors import InvalidInput

Handler = Callable[[argparse.Namespace], int]
KINDS = {kind.name.lower(): kind for kind in EpochKind}


class _Context:
    """The chain, the governance read at one block, and who signs (None with --calldata)."""

    def __init__(self, args: argparse.Namespace, *, signs: bool = True) -> None:
        self.args = args
        self.w3 = connect(args.rpc)
        self.calldata = bool(getattr(args, "calldata", False))
        transactor = signing_transactor(self.w3, args) if signs and not self.calldata else None
        self.client: GovernanceClient = governance_client(self.w3, args, transactor)
        self.signer = transactor.address if transactor is not None else None
        self.state: GovernanceState = read_state(self.client)

    def after(self, receipt: Receipt) -> GovernanceState:
        return read_state(self.client, receipt.block)

    def call(self, function: str, *call_args: Any, sender: str | None = None) -> dict[str, Any]:
        """`--calldata`: the call for the owner (or `sender`) to make, simulated as it now."""
        caller = sender or self.state.owner
        return owner_call(self.w3, self.client.contract, function, *call_args, caller=caller)


def _tx(receipt: Receipt) -> dict[str, Any]:
    return {"tx_hash": receipt.tx_hash, "block": receipt.block, "gas_used": receipt.gas_used}


def _tx_line(receipt: Receipt) -> str:
    return f"tx {receipt.tx_hash} in block {receipt.block} ({receipt.gas_used} gas)"


def run_status(args: argparse.Namespace) -> int:
    context = _Context(args, signs=False)
    emit(args, context.state.to_json(), context.state.to_text())
    return EXIT_OK


def _addresses(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [a for value in values for a in value.split(",") if a.strip()]


def run_propose_epoch(args: argparse.Namespace) -> int:
    context = _Context(args)
    kind = KINDS[args.kind]
    plan = plan_epoch(
        context.state,
        kind=kind,
        signer=context.signer,
        members=_addresses(args.members),
        add=_addresses(args.add) or [],
        remove=_addresses(args.remove) or [],
        threshold=args.threshold,
        phases=parse_phases(args.phases),
    )
    if context.calldata:
        return print_call(
            args,
            context.call(
                "proposeEpoch",
                int(kind),
                list(plan.members),
                plan.threshold,
                list(plan.phase_blocks),
            ),
        )
    receipt, epoch = context.client.send_propose_epoch(
        kind, plan.members, plan.threshold, plan.phase_blocks
    )
    info = context.client.get_epoch(epoch, block=receipt.block)
    who = " (the scheduled refresh: anyone may propose it)" if plan.scheduled_refresh else ""
    document = {"epoch": epoch, **_tx(receipt), **context.after(receipt).to_json()}
    emit(
        args,
        document,
        f"proposed {_tx_line(receipt)}{who}\n{describe_epoch(info)}\n"
        "the committee's nodes run it now; `tkms chain status` shows its progress",
    )
    return EXIT_OK


def run_cancel_epoch(args: argparse.Namespace) -> int:
    context = _Context(args)
    epoch = plan_cancel(context.state, args.epoch, context.signer)
    if context.calldata:
        return print_call(args, context.call("cancelEpoch", epoch))
    receipt = context.client.send_cancel_epoch(epoch)
    info = context.client.get_epoch(epoch, block=receipt.block)
    emit(
        args,
        {"epoch": epoch, "status": info.status.name, **_tx(receipt)},
        f"cancelled epoch {epoch} ({info.kind.name}): {info.status.name}; {_tx_line(receipt)}\n"
        "its nodes erase its epoch keys; a new epoch may be proposed",
    )
    return EXIT_OK


def run_timeout_epoch(args: argparse.Namespace) -> int:
    context = _Context(args)
    epoch = plan_timeout(context.state, args.epoch)
    receipt = context.client.send_timeout_epoch(epoch)
    info = context.client.get_epoch(epoch, block=receipt.block)
    emit(
        args,
        {"epoch": epoch, "status": info.status.name, **_tx(receipt)},
        f"timed out epoch {epoch} ({info.kind.name}): {info.status.name}; {_tx_line(receipt)}",
    )
    return EXIT_OK


def run_retire_generation(args: argparse.Namespace) -> int:
    context = _Context(args)
    generation = plan_retire(context.state, args.generation, context.signer)
    if context.calldata:
        return print_call(args, context.call("retireGeneration", generation))
    receipt = context.client.send_retire_generation(generation)
    status = context.client.get_generation(generation, block=receipt.block).status
    emit(
        args,
        {"generation": generation, "status": status.name, **_tx(receipt)},
        f"generation {generation} is {status.name}; {_tx_line(receipt)}\n"
        f"nodes erase their shares of generation {generation}: its keys can no longer be derived",
    )
    return EXIT_OK


def run_set_retirement_window(args: argparse.Namespace) -> int:
    context = _Context(args)
    require_owner(context.state, context.signer, "set the retirement window")
    blocks = check_interval(args.blocks, "--blocks")
    if context.calldata:
        return print_call(args, context.call("setRetirementWindow", blocks))
    before = context.state.retirement_window
    receipt = context.client.send_set_retirement_window(blocks)
    after = context.client.get_retirement_window(block=receipt.block)
    emit(
        args,
        {"retirement_window": after, "previous": before, **_tx(receipt)},
        f"retirement window {before} -> {after} blocks; {_tx_line(receipt)}\n"
        "it applies from the next rotation on (a retiring generation keeps its end block)",
    )
    return EXIT_OK


def run_set_refresh_schedule(args: argparse.Namespace) -> int:
    context = _Context(args)
    require_owner(context.state, context.signer, "set the refresh schedule")
    if args.off:
        interval, phases = 0, (0, 0, 0, 0, 0)
    else:
        if args.interval is None:
            raise InvalidInput("--interval", "required (or --off)")
        if args.interval < 1:
            raise InvalidInput(
                "--interval", f"must be at least 1 block (--off stops), got {args.interval}"
            )
        interval = check_interval(args.interval, "--interval")
        phases = parse_phases(args.phases) or context.state.refresh.phase_blocks
        if not any(phases):
            raise InvalidInput("--phases", "required the first time a schedule is set")
    if context.calldata:
        return print_call(args, context.call("setRefreshSchedule", interval, list(phases)))
    receipt = context.client.send_set_refresh_schedule(interval, phases)
    state = context.after(receipt)
    text = (
        "refresh schedule off: only the owner proposes refreshes"
        if not interval
        else f"refresh every {interval} blocks after the last epoch, phases "
        f"{','.join(map(str, phases))}; next due at block {state.refresh_due_at} "
        "(anyone may propose it then: tkms keeper)"
    )
    emit(
        args,
        {**state.to_json()["refresh_schedule"], **_tx(receipt)},
        f"{text}; {_tx_line(receipt)}",
    )
    return EXIT_OK


def run_transfer_ownership(args: argparse.Namespace) -> int:
    context = _Context(args)
    if args.cancel:
        require_owner(context.state, context.signer, "cancel an ownership transfer")
        target = "0x" + "00" * 20
    else:
        if args.to is None:
            raise InvalidInput("--to", "required (or --cancel)")
        target = plan_transfer(context.state, args.to, context.signer)
    if context.calldata:
        return print_call(args, context.call("transferOwnership", target))
    receipt = context.client.send_transfer_ownership(target)
    state = context.after(receipt)
    text = (
        "pending ownership transfer cancelled"
        if args.cancel
        else f"{target} may now accept ownership (tkms chain accept-ownership, signed by it); "
        f"until then {state.owner} stays the owner"
    )
    emit(
        args,
        {"owner": state.owner, "pending_owner": state.to_json()["pending_owner"], **_tx(receipt)},
        f"{text}; {_tx_line(receipt)}",
    )
    return EXIT_OK


def run_accept_ownership(args: argparse.Namespace) -> int:
    context = _Context(args)
    plan_accept(context.state, context.signer)
    if context.calldata:
        return print_call(args, context.call("acceptOwnership", sender=context.state.pending_owner))
    receipt = context.client.send_accept_ownership()
    owner = context.client.get_owner(block=receipt.block)
    emit(
        args,
        {"owner": owner, **_tx(receipt)},
        f"{owner} is the governance owner now; {_tx_line(receipt)}",
    )
    return EXIT_OK


def run_keeper(args: argparse.Namespace) -> int:
    import signal
    import threading
    from datetime import UTC, datetime

    from contracts._keeper import Keeper

    w3 = connect(args.rpc)
    client = governance_client(w3, args, signing_transactor(w3, args))
    stop = threading.Event()

    def report(entry: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps({"time": datetime.now(UTC).isoformat(), **entry}), flush=True)
        else:
            detail = " ".join(f"{k}={v}" for k, v in entry.items() if k != "event")
            print(f"{entry['event']} {detail}".rstrip(), flush=True)

    schedule = client.get_refresh_schedule()
    report(
        {
            "event": "keeper_started",
            "governance": client.address,
            "keeper": client.sender,
            "refresh_interval": schedule.interval,
            "refresh_due_at": client.get_refresh_due_at(),
        }
    )
    keeper = Keeper(client, report)
    if args.once:
        keeper.tick()
        return EXIT_OK
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    keeper.run(args.poll, stop)
    report({"event": "keeper_stopped"})
    return EXIT_OK
