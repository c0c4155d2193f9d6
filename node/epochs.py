"""The epoch manager: follows the chain and takes part in every epoch that names this node.

design §3.2-3.3. At each new head `step` settles the epoch we were running if the chain ended
it, opens the running epoch if it concerns us, and has `node.epoch_run.EpochDriver` advance it
through its phases (that module has the phase table and the publishing rules). Everything of
an epoch travels through the chain; nothing comes from peers. The manager also answers the
services: `share_for` hands out our key share of an active epoch, `status` and `progress`
report where we are.

Rules (docs/node-epochs.md has the details):

* Shares of superseded epochs and of retired generations are erased at every head
  (forward secrecy), and dropped from the in-memory cache with them.
* Epochs left open in the journal by a restart are settled first, from the chain.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

from contracts import GenerationStatus, GovernanceClient
from mpc.group import Rng
from mpc.sharing import Share
from node.chainview import RPC_ERRORS, ChainView, ChainWatcher, Committee
from node.epoch_run import EpochDriver
from node.epoch_state import Run, Stage
from node.identity import NodeIdentity
from node.journal import Journal
from node.logs import get_logger
from node.metrics import NodeMetrics
from node.shares import ShareStore

__all__ = ["DEFAULT_CONFIRMATIONS", "EpochManager", "EpochStatus", "Stage"]

#: Blocks below the head at which the board counts as settled (node config
#: `chain.confirmations`): a reorg this shallow cannot change what a phase is judged on.
DEFAULT_CONFIRMATIONS = 2

_log = get_logger("tkms.epochs")


@dataclass(frozen=True, slots=True)
class EpochStatus:
    """A snapshot for Admin.Status and the EpochStatus RPC."""

    running_epoch: int  # the epoch we take part in now, 0 if none
    phase: str  # "idle" or the Stage we are in, lower case
    member_index: int  # ours in the running epoch, 0 if not a member
    dealer_index: int  # ours among its dealers, 0 if not a dealer
    generation: int  # latest generation on chain
    active_epoch: int  # its active epoch
    holds_share: bool  # we hold a share of that epoch
    last_epoch: int  # the last epoch we finished, 0 if none
    last_outcome: str  # its outcome ("active", "failed", "abandoned"), "" if none
    last_qual: tuple[int, ...]  # its QUAL as we computed it
    faults: int  # faults recorded against peers since start


def _newer_than(head: int) -> Callable[[ChainView], bool]:
    return lambda view: view.head > head


class EpochManager:
    """Follows the `ChainWatcher` and takes part in every epoch that names this node."""

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        client: GovernanceClient,
        watcher: ChainWatcher,
        journal: Journal,
        shares: ShareStore,
        metrics: NodeMetrics,
        rng: Rng = os.urandom,
        confirmations: int = DEFAULT_CONFIRMATIONS,
    ) -> None:
        self._client, self._watcher = client, watcher
        self._journal, self._shares, self._metrics = journal, shares, metrics
        self._address = identity.eth_address
        self._run: Run | None = None
        self._cache: dict[tuple[int, int], Share] = {}
        self._started = False
        self._driver = EpochDriver(
            identity=identity,
            client=client,
            journal=journal,
            shares=shares,
            metrics=metrics,
            rng=rng,
            cache=self._cache,
            confirmations=confirmations,
        )

    # The loop
    async def run(self) -> None:
        """Forever: at each new head, advance the running epoch and tidy the shares."""
        seen = -1
        while True:
            view = await self._watcher.wait_for_view(_newer_than(seen))
            seen = view.head
            await self.step(view)

    async def step(self, view: ChainView) -> None:
        """One pass over `view` (the loop calls it; tests may too)."""
        if not self._started:
            self._started = True
            for epoch in self._journal.open_epochs():
                if epoch != view.running_epoch:
                    run = await self._driver.open(epoch, view)
                    if run is not None:
                        await self._driver.settle(
                            run, view
                        )  # if the chain is unreachable: next start
        run = self._run
        if (
            run is not None
            and run.epoch != view.running_epoch
            and await self._driver.settle(run, view)
        ):
            self._run = None
        if (
            self._run is None
            and view.running_epoch
            and view.running_epoch not in self._driver.ignored
        ):
            self._run = await self._driver.open(view.running_epoch, view)
        if self._run is not None:
            await self._driver.advance(self._run, view)
        await self._tidy(view)
        self._update_metrics(view)

    async def _tidy(self, view: ChainView) -> None:
        """Erase shares of superseded epochs and of retired generations (forward secrecy)."""
        for generation, epoch in self._shares.list():
            committee = view.committees.get(generation)
            if committee is not None:
                if epoch >= committee.epoch:
                    continue
            else:
                try:
                    status = await asyncio.to_thread(
                        self._client.get_generation, generation, block=view.head
                    )
                except RPC_ERRORS:
                    continue
                if status.status is not GenerationStatus.RETIRED:
                    continue
            self._shares.erase(generation, epoch)
            self._cache.pop((generation, epoch), None)
            _log.info("share_erased", generation=generation, epoch=epoch)

    def _update_metrics(self, view: ChainView) -> None:
        m = self._metrics
        committee = view.committee()
        m.epoch.set(committee.epoch if committee else 0)
        m.generation.set(view.latest_generation)
        m.epoch_phase.clear()
        if self._run is not None:
            m.epoch_phase.labels(epoch=str(self._run.epoch), phase=self._run.stage.name).set(1)

    # For the Peer and Kms services
    def share_for(self, generation: int = 0) -> tuple[Committee, Share] | None:
        """Our key share of the ACTIVE epoch of `generation` (0 = latest), if we hold one."""
        view = self._watcher.view
        committee = view.committee(generation) if view is not None else None
        if committee is None:
            return None
        index = committee.index_of(self._address)
        key = (committee.generation, committee.epoch)
        if index is None:
            return None
        share = self._cache.get(key)
        if share is None and key in self._shares.list():
            share = self._cache[key] = self._shares.load(*key)
        if share is None or share.member != index:
            return None
        return committee, share

    def progress(self, epoch: int) -> tuple[str, tuple[int, ...]]:
        """For the Peer `EpochStatus` RPC: our phase in `epoch` and the dealers whose shares
        we opened (only while we run it: nothing of them is kept afterwards).

        The phase is a `Stage` name while we run the epoch, its outcome once it ended,
        "unknown" if we never took part.
        """
        run = self._run
        if run is not None and run.epoch == epoch:
            judge = run.judge
            opened = judge.opened if judge is not None else ()
            return run.stage.name.lower(), opened
        record = self._journal.epoch(epoch)
        outcome = record.outcome if record is not None else None
        return ("unknown" if record is None else outcome.value if outcome else "pending"), ()

    def status(self) -> EpochStatus:
        view = self._watcher.view
        committee = view.committee() if view is not None else None
        run = self._run
        return EpochStatus(
            running_epoch=run.epoch if run else 0,
            phase=run.stage.name.lower() if run else "idle",
            member_index=run.member if run else 0,
            dealer_index=run.dealer if run else 0,
            generation=view.latest_generation if view else 0,
            active_epoch=committee.epoch if committee else 0,
            holds_share=self.share_for() is not None,
            last_epoch=self._driver.last[0],
            last_outcome=self._driver.last[1],
            last_qual=self._driver.last[2],
            faults=self._driver.faults,
        )
