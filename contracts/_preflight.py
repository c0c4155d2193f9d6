"""What the owner CLI checks before it sends anything: every rule the contract would revert on,
said in words, with what to do instead.

Each `plan_*` takes the governance state read at one block (`contracts._state`) and the
command's arguments, and returns what to send or raises `InvalidInput` (a malformed argument,
named) or `Refused` (the chain's state, or the signer, rules the action out). `signer` is the
address that will sign, or None when the call is printed for the owner to make (a multisig or
timelock), which acts as the owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contracts._epoch_calls import MIN_PHASE_BLOCKS, PHASE_NAMES, check_phase_blocks
from contracts._hexargs import parse_address
from contracts._state import GovernanceState
from contracts._types import EpochKind, GenerationStatus, NodeStatus
from contracts.errors import InvalidInput, Refused

PhaseBlocks = tuple[int, int, int, int, int]
#: Keys, Deal, Complain, Justify, Confirm in blocks when `--phases` is not given: a few blocks
#: more than the minimum each, for nodes judging at 2 confirmations (docs/node-epochs.md).
DEFAULT_PHASES: PhaseBlocks = (5, 10, 10, 10, 10)
MAX_MEMBERS = 64


@dataclass(frozen=True, kw_only=True)
class EpochPlan:
    kind: EpochKind
    members: tuple[str, ...]
    threshold: int
    phase_blocks: PhaseBlocks
    #: Proposed by someone other than the owner under the refresh schedule.
    scheduled_refresh: bool = False


def parse_phases(text: str | None, argument: str = "--phases") -> PhaseBlocks | None:
    """`K,D,C,J,F` (blocks of Keys, Deal, Complain, Justify, Confirm); None passes through."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(PHASE_NAMES) or not all(p.isdigit() for p in parts):
        raise InvalidInput(
            argument,
            f"expected {len(PHASE_NAMES)} whole numbers of blocks ({','.join(PHASE_NAMES)}), "
            f"got {text!r}",
        )
    blocks = tuple(int(p) for p in parts)
    try:
        check_phase_blocks(blocks)
    except InvalidInput as exc:
        raise InvalidInput(argument, exc.problem) from None
    return blocks  # type: ignore[return-value]


def is_owner(state: GovernanceState, signer: str | None) -> bool:
    return signer is None or signer.lower() == state.owner.lower()


def require_owner(state: GovernanceState, signer: str | None, action: str) -> None:
    if not is_owner(state, signer):
        raise Refused(
            f"{signer} is not the governance owner ({state.owner}): only the owner may {action}"
        )


def plan_epoch(
    state: GovernanceState,
    *,
    kind: EpochKind,
    signer: str | None,
    members: Sequence[str] | None = None,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    threshold: int | None = None,
    phases: PhaseBlocks | None = None,
) -> EpochPlan:
    """The epoch `proposeEpoch` would accept now, or the reason it would not."""
    _require_no_running_epoch(state)
    _require_kind_fits(state, kind)
    chosen = _members(state, kind, members, add, remove)
    _require_approved(state, chosen)
    t = _threshold(state, kind, len(chosen), threshold)
    committee = state.committee
    if kind is EpochKind.REFRESH and committee is not None:
        if (
            add
            or remove
            or tuple(a.lower() for a in chosen) != tuple(m.lower() for m in committee.members)
        ):
            raise InvalidInput(
                "--kind refresh",
                f"a refresh keeps the committee of epoch {committee.epoch} as it is; "
                "use --kind reshare to change it",
            )
        if t != committee.threshold:
            raise InvalidInput(
                "--threshold",
                f"a refresh keeps threshold {committee.threshold}; use --kind reshare to change it",
            )
    schedule = state.refresh
    if phases is None:
        scheduled = kind is EpochKind.REFRESH and schedule.interval
        phases = schedule.phase_blocks if scheduled else DEFAULT_PHASES
    scheduled_refresh = False
    if not is_owner(state, signer):
        _require_scheduled_refresh(state, kind, signer, phases)
        scheduled_refresh = True
    return EpochPlan(
        kind=kind,
        members=chosen,
        threshold=t,
        phase_blocks=phases,
        scheduled_refresh=scheduled_refresh,
    )


def _require_no_running_epoch(state: GovernanceState) -> None:
    running = state.running
    if running is not None:
        phase = state.running_phase.name if state.running_phase else "?"
        raise Refused(
            f"epoch {running.epoch} ({running.kind.name}) is running, in its {phase} phase, "
            f"until block {running.confirm_deadline} at the latest: one epoch runs at a time; "
            "wait for it, or cancel it (tkms chain cancel-epoch)"
        )


def _require_kind_fits(state: GovernanceState, kind: EpochKind) -> None:
    latest = len(state.generations)
    if kind is EpochKind.DKG and latest:
        raise Refused(
            f"generation {latest} exists: a DKG makes only the first key; --kind rotate starts "
            "a new generation, --kind reshare changes the committee, --kind refresh its shares"
        )
    if kind is not EpochKind.DKG and not latest:
        raise Refused(f"no key generation yet: the first epoch is a DKG, not a {kind.name}")


def _members(
    state: GovernanceState,
    kind: EpochKind,
    members: Sequence[str] | None,
    add: Sequence[str],
    remove: Sequence[str],
) -> tuple[str, ...]:
    if members is not None:
        base: list[str] = [parse_address(f"--members[{i}]", m) for i, m in enumerate(members)]
        _require_distinct(base, "--members")
    elif state.committee is not None and kind is not EpochKind.DKG:
        base = list(state.committee.members)
    else:
        base = state.approved_nodes()
        if not base:
            raise Refused(
                "no approved nodes: nodes join with `tkms node join`, the owner admits them "
                "with `tkms node admit`"
            )
    lowered = [b.lower() for b in base]
    for i, value in enumerate(remove):
        address = parse_address(f"--remove[{i}]", value)
        if address.lower() not in lowered:
            raise InvalidInput(
                "--remove", f"{address} is not a member of {_source(state, members)}"
            )
        lowered.remove(address.lower())
        base = [b for b in base if b.lower() != address.lower()]
    for i, value in enumerate(add):
        address = parse_address(f"--add[{i}]", value)
        if address.lower() in lowered:
            raise InvalidInput("--add", f"{address} is already a member")
        lowered.append(address.lower())
        base.append(address)
    if not base:
        raise InvalidInput("--remove", "no member would be left")
    if len(base) > MAX_MEMBERS:
        raise InvalidInput("--members", f"{len(base)} members, at most {MAX_MEMBERS}")
    return tuple(base)


def _source(state: GovernanceState, members: Sequence[str] | None) -> str:
    if members is not None:
        return "--members"
    if state.committee is not None:
        return f"the committee (epoch {state.committee.epoch})"
    return "the approved nodes"


def _require_distinct(addresses: Sequence[str], argument: str) -> None:
    seen: set[str] = set()
    for address in addresses:
        if address.lower() in seen:
            raise InvalidInput(argument, f"{address} appears twice")
        seen.add(address.lower())


def _require_approved(state: GovernanceState, members: Sequence[str]) -> None:
    status = {n.address.lower(): n.status for n in state.nodes}
    problems = []
    for member in members:
        found = status.get(member.lower(), NodeStatus.NONE)
        if found is NodeStatus.APPROVED:
            continue
        why = {
            NodeStatus.NONE: "not registered (the node runs `tkms node join`)",
            NodeStatus.PENDING: "registered, not approved (tkms node admit or approve)",
            NodeStatus.REMOVED: "removed by the owner",
        }[found]
        problems.append(f"{member} is {why}")
    if problems:
        raise Refused("every member must be an approved node: " + "; ".join(problems))


def _threshold(state: GovernanceState, kind: EpochKind, n: int, given: int | None) -> int:
    if given is None:
        committee = state.committee
        if kind in (EpochKind.RESHARE, EpochKind.REFRESH) and committee is not None:
            return min(committee.threshold, n)
        return n // 2 + 1
    if not 1 <= given <= n:
        raise InvalidInput("--threshold", f"must be 1..{n} (the number of members), got {given}")
    return given


def _require_scheduled_refresh(
    state: GovernanceState, kind: EpochKind, signer: str | None, phases: PhaseBlocks
) -> None:
    schedule = state.refresh
    who = f"{signer} is not the governance owner ({state.owner})"
    if kind is not EpochKind.REFRESH or not schedule.interval:
        extra = " (anyone may propose the scheduled refresh once due)" if schedule.interval else ""
        raise Refused(f"{who}: only the owner proposes epochs{extra}")
    due = state.refresh_due_at
    if due is None or state.block < due:
        raise Refused(
            f"{who}, and the scheduled refresh is not due: due at block {due} (head "
            f"{state.block}), {schedule.interval} blocks after the last epoch ended"
        )
    if tuple(phases) != tuple(schedule.phase_blocks):
        raise Refused(
            f"{who}: a scheduled refresh uses the schedule's phases "
            f"{','.join(map(str, schedule.phase_blocks))}, not {','.join(map(str, phases))}"
        )


def plan_cancel(state: GovernanceState, epoch: int | None, signer: str | None) -> int:
    require_owner(state, signer, "cancel an epoch")
    running = state.running
    if running is None:
        raise Refused("no epoch is running: nothing to cancel")
    if epoch is not None and epoch != running.epoch:
        raise Refused(f"epoch {epoch} is not running (epoch {running.epoch} is)")
    return running.epoch


def plan_timeout(state: GovernanceState, epoch: int | None) -> int:
    running = state.running
    if running is None:
        raise Refused("no epoch is running: nothing to time out")
    if epoch is not None and epoch != running.epoch:
        raise Refused(f"epoch {epoch} is not running (epoch {running.epoch} is)")
    if state.block <= running.confirm_deadline:
        raise Refused(
            f"epoch {running.epoch} may still activate: its Confirm phase ends at block "
            f"{running.confirm_deadline} (head {state.block}); anyone may time it out after that"
        )
    return running.epoch


def plan_retire(state: GovernanceState, generation: int, signer: str | None) -> int:
    latest = len(state.generations)
    if not 1 <= generation <= latest:
        raise InvalidInput(
            "--generation", f"no generation {generation} (generations: 1..{latest or 'none'})"
        )
    info = state.generations[generation - 1]
    if info.status is GenerationStatus.RETIRED:
        raise Refused(f"generation {generation} is already retired")
    if info.status is GenerationStatus.ACTIVE:
        raise Refused(
            f"generation {generation} is the active one: a generation retires only after a "
            "rotation replaced it (tkms chain propose-epoch --kind rotate)"
        )
    if not is_owner(state, signer) and state.block <= info.retire_after:
        raise Refused(
            f"generation {generation}'s retirement window ends at block {info.retire_after} "
            f"(head {state.block}): after it anyone may retire it, the owner at any time"
        )
    return generation


def plan_transfer(state: GovernanceState, to: str, signer: str | None) -> str:
    require_owner(state, signer, "transfer ownership")
    address = parse_address("--to", to)
    if int(address, 16) == 0:
        raise InvalidInput("--to", "the zero address; --cancel cancels a pending transfer")
    if address.lower() == state.owner.lower():
        raise InvalidInput("--to", f"{address} is the owner already")
    return address


def plan_accept(state: GovernanceState, signer: str | None) -> None:
    pending = state.pending_owner
    if int(pending, 16) == 0:
        raise Refused("no ownership transfer is pending: the owner starts one first")
    if signer is not None and signer.lower() != pending.lower():
        raise Refused(f"the pending owner is {pending}, not {signer}: only it can accept")


def check_interval(value: int, argument: str) -> int:
    if not 0 <= value < 2**64:
        raise InvalidInput(argument, f"must be a whole number of blocks 0..2^64-1, got {value}")
    return value


__all__ = [
    "DEFAULT_PHASES",
    "MIN_PHASE_BLOCKS",
    "EpochPlan",
    "check_interval",
    "is_owner",
    "parse_phases",
    "plan_accept",
    "plan_cancel",
    "plan_epoch",
    "plan_retire",
    "plan_timeout",
    "plan_transfer",
    "require_owner",
]
