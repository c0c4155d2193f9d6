"""`tkms keeper`: makes the governance's permissionless calls when they fall due.

Anyone may make them, so the keeper needs only a funded account, never the owner's key (which
belongs in a multisig or a timelock):

* the scheduled refresh: once `refreshInterval` blocks passed since the last epoch ended
  (`setRefreshSchedule`), `proposeEpoch(REFRESH, the latest generation's committee, its
  threshold, the schedule's phases)`: every share changes, the group key does not;
* `timeoutEpoch` for a running epoch past its Confirm deadline (its nodes do it too);
* `retireGeneration` for a generation whose retirement window has passed.

Each pass (`Keeper.tick`) reads the chain at one block and sends what is due, one call at a
time. A call someone else made first (the chain then refuses ours with `EpochInProgress`,
`RefreshNotDue`, `EpochNotRunning`, `GenerationNotRetiring`) is reported as such; an RPC
failure is reported and the next pass tries again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from web3.exceptions import Web3Exception

from contracts._governance import GovernanceClient
from contracts._types import EpochKind, GenerationStatus
from contracts.errors import ContractsError, TransactionFailed

Report = Callable[[dict[str, Any]], None]
#: The chain refused because the call was already made (by another keeper, a node, the owner).
ALREADY_DONE = frozenset(
    {"EpochInProgress", "RefreshNotDue", "EpochNotRunning", "GenerationNotRetiring"}
)


class Keeper:
    def __init__(self, client: GovernanceClient, report: Report) -> None:
        self.client = client
        self.report = report

    def tick(self) -> list[dict[str, Any]]:
        """One pass at the head: sends every call that is due; returns what it reported."""
        done: list[dict[str, Any]] = []

        def say(event: str, **detail: Any) -> None:
            entry = {"event": event, **detail}
            done.append(entry)
            self.report(entry)

        try:
            head = int(self.client.w3.eth.block_number)
            self._epochs(head, say)
            self._retirements(head, say)
        except (ContractsError, Web3Exception, OSError) as exc:
            say("keeper_chain_error", error=str(exc), action="retrying at the next pass")
        return done

    def _epochs(self, head: int, say: Callable[..., None]) -> None:
        client = self.client
        running = client.get_running_epoch(block=head)
        if running:
            info = client.get_epoch(running, block=head)
            if head > info.confirm_deadline:
                self._send(
                    say,
                    "epoch_timed_out",
                    lambda: client.send_timeout_epoch(running),
                    epoch=running,
                )
            return
        due = client.get_refresh_due_at(block=head)
        latest = client.get_latest_generation(block=head)
        if due is None or head < due or latest == 0:
            return
        committee = client.get_epoch(
            client.get_generation(latest, block=head).active_epoch, block=head
        )
        phases = client.get_refresh_schedule(block=head).phase_blocks

        def propose() -> Any:
            receipt, epoch = client.send_propose_epoch(
                EpochKind.REFRESH, committee.members, committee.threshold, phases
            )
            return receipt, {"epoch": epoch}

        self._send(
            say,
            "refresh_proposed",
            propose,
            generation=latest,
            members=len(committee.members),
            threshold=committee.threshold,
            due_at=due,
        )

    def _retirements(self, head: int, say: Callable[..., None]) -> None:
        client = self.client
        for generation in range(1, client.get_latest_generation(block=head)):
            info = client.get_generation(generation, block=head)
            if info.status is GenerationStatus.RETIRING and head > info.retire_after:
                self._send(
                    say,
                    "generation_retired",
                    partial(client.send_retire_generation, generation),
                    generation=generation,
                )

    def _send(
        self, say: Callable[..., None], event: str, send: Callable[[], Any], **detail: Any
    ) -> None:
        try:
            result = send()
        except TransactionFailed as exc:
            if exc.error_name in ALREADY_DONE:
                say(f"{event.split('_')[0]}_already_done", reason=exc.error_name, **detail)
                return
            raise
        receipt, extra = result if isinstance(result, tuple) else (result, {})
        say(event, tx_hash=receipt.tx_hash, block=receipt.block, **detail, **extra)

    def run(self, poll: float, stop: threading.Event) -> None:
        """Passes every `poll` seconds until `stop` is set."""
        while not stop.is_set():
            started = time.monotonic()
            self.tick()
            stop.wait(max(0.0, poll - (time.monotonic() - started)))
