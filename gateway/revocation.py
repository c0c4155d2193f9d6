"""Revocation reaches the gateway: routes whose approval is gone are dropped, their connections
closed, without waiting for the registration to lapse.

Every `poll` seconds the watch refreshes the chain view (`gateway.chain`) with the app ids of
the routes. A governance event that can change approvals (`AppRemoved`, `OsImageRemoved`,
`SimulatorAllowedSet`, `TcbStatusDisallowed`, `AdvisoryBlocked`, ...) makes it recheck every
route; an event of an app's own controller (`ComposeHashRemoved`, `DeviceRemoved`, ...) that
app's routes; and every `recheck` seconds it rechecks all of them whatever the events said (a
custom controller may change its answer without an event). A route is dropped when governance
no longer approves the boot info it registered with, at the view's head, or when it came with
a simulator quote and simulators are no longer allowed; its open connections are ended at once
(`Proxy.close_instances`).

A chain the watch cannot read changes nothing: routes stay until their ttl, and since their
renewals fail closed (`UNAVAILABLE`), they lapse then.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from contracts import AppBootInfo, AuthDecision
from gateway.chain import ChainState
from gateway.registration import Approval, Registrar

log = structlog.get_logger("tkms.gateway.revocation")


@dataclass(frozen=True, slots=True)
class Revoked:
    """A route dropped by the watch, why, and how many open connections it ended."""

    instance_id: bytes
    app_id: bytes
    reason: str
    closed: int


class RevocationWatch:
    """Runs beside the proxy on its event loop; chain reads run in worker threads."""

    def __init__(
        self,
        registrar: Registrar,
        close_instances: Callable[[Iterable[bytes]], int],
        *,
        poll: float = 5.0,
        recheck: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registrar = registrar
        self._close = close_instances
        self.poll = poll
        self.recheck = recheck
        self._clock = clock
        self._last_full = clock()
        self._failing = False

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every `poll` seconds until `stop` is set."""
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll)

    async def tick(self) -> list[Revoked]:
        """One round: refresh the view, recheck what it says changed; the routes dropped."""
        registrar = self._registrar
        routes = registrar.table.snapshot()
        try:
            changes = await asyncio.to_thread(registrar.chain.refresh, {r.app_id for r in routes})
            state = registrar.chain.current()
        except Exception as exc:  # kept as they are; renewals fail closed meanwhile
            self._chain_failed(exc)
            return []
        now = self._clock()
        full = now - self._last_full >= self.recheck
        if full:
            self._last_full = now
        judged = [
            (r.instance_id, r.app_id, approval)
            for r in routes
            if (full or changes.governance or r.app_id in changes.apps)
            and (approval := registrar.approvals.get(r.instance_id)) is not None
        ]
        verdicts: list[tuple[bytes, bytes, Approval, str]] = []
        if judged:
            try:
                verdicts = await asyncio.to_thread(_judge, registrar, judged, state)
            except Exception as exc:
                self._chain_failed(exc)
                return []
        if self._failing:
            log.info("chain_readable_again", head=state.head)
            self._failing = False
        revoked = [self._drop(*verdict) for verdict in verdicts]
        live = {r.instance_id for r in registrar.table.snapshot()}
        for instance_id in [i for i in registrar.approvals if i not in live]:
            del registrar.approvals[instance_id]  # expired routes
        return [r for r in revoked if r is not None]

    def _drop(
        self, instance_id: bytes, app_id: bytes, approval: Approval, reason: str
    ) -> Revoked | None:
        registrar = self._registrar
        if registrar.approvals.get(instance_id) is not approval:
            return None  # registered again meanwhile, with what was judged then
        registrar.table.remove(instance_id)
        del registrar.approvals[instance_id]
        closed = self._close([instance_id])
        log.info(
            "route_revoked",
            app_id=app_id.hex(),
            instance=instance_id.hex(),
            reason=reason,
            connections_closed=closed,
        )
        return Revoked(instance_id, app_id, reason, closed)

    def _chain_failed(self, exc: Exception) -> None:
        if not self._failing:
            log.warning("chain_unreadable", error=str(exc)[:300])
        self._failing = True


def _judge(
    registrar: Registrar,
    judged: list[tuple[bytes, bytes, Approval]],
    state: ChainState,
) -> list[tuple[bytes, bytes, Approval, str]]:
    """The routes among `judged` that governance no longer approves at `state`, with why."""
    decisions: dict[AppBootInfo, AuthDecision] = {}
    verdicts = []
    for instance_id, app_id, approval in judged:
        if approval.simulated and not state.simulator_allowed:
            verdicts.append((instance_id, app_id, approval, "simulator quotes are not allowed"))
            continue
        decision = decisions.get(approval.info)
        if decision is None:
            decision = registrar.chain.is_app_allowed(approval.info, state.head)
            decisions[approval.info] = decision
        if not decision.allowed:
            verdicts.append((instance_id, app_id, approval, decision.reason or "not allowed"))
    return verdicts
