"""The in-process epoch harness (`tests.node.epoch_harness`) with the faults this package needs.

`FaultNetwork` adds to `Network` (there is no peer traffic to cut in an epoch: everything
goes through the chain; `tests/reliability/test_partition.py` cuts real peer ports):

* `crashed`: a node whose epoch manager dies (a StorageError on a full disk, say) no longer
  takes the whole test's task group down with it: the exception is kept here by node name,
  as a supervisor would see the exit of a node process.
* `kill_when(node, predicate)`: cancel a node's manager at the first head where `predicate`
  holds, which is how the phase-kill tests pick their moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from contracts import EpochInfo, EpochKind
from node.chainview import ChainView
from node.epochs import EpochManager
from node.identity import load_identity
from node.journal import Journal
from node.sealing import FileSealer
from node.shares import ShareStore
from tests.node.epoch_harness import Network, Node

__all__ = ["SLOW_PHASES", "FaultNetwork", "leaves"]

#: Keys, Deal, Complain, Justify, Confirm in blocks of 0.25 s: longer than the harness default so
#: five managers in one process still meet every deadline on 2 busy cores.
SLOW_PHASES = (8, 20, 12, 12, 16)
SETTLE_TIMEOUT = 120.0


class FaultNetwork(Network):
    """`Network` with crash capture and kills at a chosen moment."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.crashed: dict[str, BaseException] = {}

    def start(self, node: Node) -> EpochManager:
        """As `Network.start`, with the crash captured in `crashed`."""
        assert self._group is not None and node.task is None
        self.crashed.pop(node.name, None)
        sealer = FileSealer.open(node.data_dir, create=False)
        identity = load_identity(node.data_dir, sealer)
        node.journal = Journal.open(node.data_dir / "journal.sqlite3", sealer)
        node.shares = ShareStore(node.data_dir / "shares", sealer)
        node.manager = EpochManager(
            identity=identity,
            client=node.client,
            watcher=self.watcher,
            journal=node.journal,
            shares=node.shares,
            metrics=node.metrics,
            confirmations=self.confirmations,
        )
        self.live[node.raw_address] = node.manager
        node.task = self._group.create_task(self._supervised(node, node.manager))
        return node.manager

    async def _supervised(self, node: Node, manager: EpochManager) -> None:
        try:
            await manager.run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the node "process" exits; the test inspects why
            self.live.pop(node.raw_address, None)
            self.crashed[node.name] = exc

    async def propose_slow(self, kind: EpochKind, members: list[Node], threshold: int) -> EpochInfo:
        return await self.propose(kind, members, threshold, phases=SLOW_PHASES)

    async def settle(self, epoch: int, allow_crashed: set[str] | None = None) -> EpochInfo:
        """`wait_settled`, failing at once if a node crashed that was not meant to."""
        waiting = asyncio.create_task(self.wait_settled(epoch, timeout=SETTLE_TIMEOUT))
        try:
            while not waiting.done():
                unexpected = set(self.crashed) - (allow_crashed or set())
                if unexpected:
                    found = {n: repr(self.crashed[n]) for n in sorted(unexpected)}
                    raise AssertionError(f"nodes crashed while settling epoch {epoch}: {found}")
                await asyncio.sleep(0.2)
            return waiting.result()
        finally:
            waiting.cancel()

    async def wait_crashed(self, node: Node, timeout: float = 30.0) -> BaseException:
        await self.wait_until(lambda: node.name in self.crashed, f"{node.name} to fail", timeout)
        return self.crashed[node.name]

    async def kill_when(
        self, node: Node, predicate: Callable[[ChainView], bool], timeout: float = 40.0
    ) -> ChainView:
        """Cancel `node`'s manager (a SIGKILL, as far as its state goes) once `predicate(view)`."""
        view = await asyncio.wait_for(self.watcher.wait_for_view(predicate), timeout)
        await self.stop(node)
        return view


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside `exc` (task groups wrap what their tasks raise)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]
