"""The governance's state at one block, as the owner CLI prints it (`tkms chain status`).

Every owner command prints what it sent and then this state (or the part it changed), so an
operator sees the result of a transaction without a second command. Reads are pinned to one
block; nothing here signs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts._governance import GovernanceClient
from contracts._types import (
    EpochInfo,
    EpochStatus,
    GenerationInfo,
    NodeInfo,
    NodeStatus,
    Phase,
    RefreshSchedule,
)


@dataclass(frozen=True, kw_only=True)
class GovernanceState:
    block: int
    owner: str
    pending_owner: str
    simulator_allowed: bool
    retirement_window: int
    refresh: RefreshSchedule
    refresh_due_at: int | None
    generations: tuple[GenerationInfo, ...]  # 1..latest
    committee: EpochInfo | None  # the active epoch of the latest generation
    running: EpochInfo | None
    running_phase: Phase | None
    last_epoch: EpochInfo | None
    nodes: tuple[NodeInfo, ...]

    def approved_nodes(self) -> list[str]:
        return [n.address for n in self.nodes if n.status is NodeStatus.APPROVED]

    def to_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "owner": self.owner,
            "pending_owner": None if _zero(self.pending_owner) else self.pending_owner,
            "simulator_allowed": self.simulator_allowed,
            "retirement_window": self.retirement_window,
            "refresh_schedule": {
                "interval": self.refresh.interval,
                "phases": list(self.refresh.phase_blocks),
                "due_at": self.refresh_due_at,
            },
            "generations": [
                {
                    "generation": g.generation,
                    "status": g.status.name,
                    "active_epoch": g.active_epoch,
                    "activated_at": g.activated_at,
                    "retire_after": g.retire_after or None,
                    "pk2": "0x" + g.pk2.hex(),
                }
                for g in self.generations
            ],
            "committee": None if self.committee is None else _epoch_json(self.committee),
            "running_epoch": None
            if self.running is None
            else {
                **_epoch_json(self.running),
                "phase": self.running_phase.name if self.running_phase else None,
            },
            "last_epoch": None if self.last_epoch is None else _epoch_json(self.last_epoch),
            "nodes": [
                {"address": n.address, "status": n.status.name, "endpoint": n.endpoint}
                for n in self.nodes
            ],
        }

    def to_text(self) -> str:
        lines = [f"governance state at block {self.block}"]
        owner = self.owner
        if not _zero(self.pending_owner):
            owner += f" (transfer pending to {self.pending_owner}: it must accept)"
        lines.append(f"  owner              {owner}")
        for g in self.generations:
            extra = f", retires after block {g.retire_after}" if g.retire_after else ""
            lines.append(
                f"  generation {g.generation:<7} {g.status.name}, epoch {g.active_epoch}{extra}"
            )
        if not self.generations:
            lines.append("  generation         none yet (the owner proposes a DKG)")
        if self.committee is not None:
            c = self.committee
            lines.append(
                f"  committee          epoch {c.epoch} ({c.kind.name}), threshold {c.threshold}"
                f" of {len(c.members)}: {', '.join(c.members)}"
            )
        if self.running is not None:
            r = self.running
            lines.append(
                f"  running epoch      {r.epoch} ({r.kind.name} of generation {r.generation}), "
                f"phase {self.running_phase.name if self.running_phase else '?'}, "
                f"keys {r.keys_posted}/{r.participants}; deadlines: {_deadlines(r)}"
            )
        elif self.last_epoch is not None:
            e = self.last_epoch
            lines.append(
                f"  last epoch         {e.epoch} ({e.kind.name}) {e.status.name} "
                f"at block {e.finished_at}"
            )
        lines.append(f"  retirement window  {self.retirement_window} blocks")
        if self.refresh.interval:
            due = (
                "not due while an epoch runs"
                if self.refresh_due_at is None
                else f"due at block {self.refresh_due_at}"
            )
            lines.append(
                f"  refresh schedule   every {self.refresh.interval} blocks after the last "
                f"epoch, phases {','.join(map(str, self.refresh.phase_blocks))}; {due}"
            )
        else:
            lines.append("  refresh schedule   none (only the owner proposes refreshes)")
        for n in self.nodes:
            lines.append(f"  node {n.address}  {n.status.name:<8} {n.endpoint}")
        return "\n".join(lines)


def read_state(client: GovernanceClient, block: int | None = None) -> GovernanceState:
    """Everything `tkms chain status` shows, read at `block` (default: the head)."""
    head = int(client.w3.eth.block_number) if block is None else block
    latest = client.get_latest_generation(block=head)
    generations = tuple(client.get_generation(g, block=head) for g in range(1, latest + 1))
    committee = client.get_epoch(generations[-1].active_epoch, block=head) if generations else None
    running_id = client.get_running_epoch(block=head)
    running = client.get_epoch(running_id, block=head) if running_id else None
    count = client.get_epoch_count(block=head)
    last = client.get_epoch(count, block=head) if count else None
    return GovernanceState(
        block=head,
        owner=client.get_owner(block=head),
        pending_owner=client.get_pending_owner(block=head),
        simulator_allowed=client.get_simulator_allowed(block=head),
        retirement_window=client.get_retirement_window(block=head),
        refresh=client.get_refresh_schedule(block=head),
        refresh_due_at=client.get_refresh_due_at(block=head),
        generations=generations,
        committee=committee,
        running=running,
        running_phase=client.get_phase(running_id, block=head) if running_id else None,
        last_epoch=last,
        nodes=tuple(client.get_node(a, block=head) for a in client.get_nodes(block=head)),
    )


def describe_epoch(info: EpochInfo) -> str:
    """One paragraph: kind, generation, committee, threshold, dealers and deadlines."""
    dealers = (
        "the members"
        if info.dealers == info.members
        else f"the {len(info.dealers)} members of epoch {info.previous_epoch}"
    )
    return (
        f"epoch {info.epoch}: {info.kind.name} of generation {info.generation}, "
        f"{info.status.name}\n"
        f"  members ({len(info.members)}, threshold {info.threshold}): {', '.join(info.members)}\n"
        f"  dealers: {dealers}\n"
        f"  deadlines (blocks): {_deadlines(info)}"
    )


def _deadlines(info: EpochInfo) -> str:
    return (
        f"keys {info.keys_deadline}, deal {info.deal_deadline}, complain "
        f"{info.complaint_deadline}, justify {info.justify_deadline}, confirm "
        f"{info.confirm_deadline}"
    )


def _epoch_json(info: EpochInfo) -> dict[str, Any]:
    return {
        "epoch": info.epoch,
        "kind": info.kind.name,
        "status": info.status.name,
        "generation": info.generation,
        "members": list(info.members),
        "threshold": info.threshold,
        "dealers": list(info.dealers),
        "previous_epoch": info.previous_epoch or None,
        "proposed_at": info.proposed_at,
        "deadlines": {
            "keys": info.keys_deadline,
            "deal": info.deal_deadline,
            "complain": info.complaint_deadline,
            "justify": info.justify_deadline,
            "confirm": info.confirm_deadline,
        },
        "finished_at": info.finished_at or None,
        "active": info.status is EpochStatus.ACTIVE,
    }


def _zero(address: str) -> bool:
    return int(address, 16) == 0
