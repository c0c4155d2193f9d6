"""The testnet's processes as process groups: recorded with pid and start time, stopped, waited for.

Every process the testnet starts runs in its own session, so its pid is also its process-group
id and anything it forks stays in that group. `stop_groups` signals whole groups (SIGTERM, then
SIGKILL after a grace period) and returns only when no member of any group still runs, so a
caller that checks right after `down` finds nothing alive, whichever process crashed before.

A pid read back from a state file may have been reused since (a reboot, days later): a group
whose leader runs with another start time than the one recorded is not ours and is left alone.
A group whose leader has died but whose members still run is still ours: Linux never hands out
a pid equal to the id of a process group that exists.

Zombies count as stopped: a detached process is reparented to pid 1 when its starter exits,
and on machines whose pid 1 does not reap (some containers and sandboxes) it stays a zombie
after it has exited, holding no port, file or memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

_PROC = Path("/proc")
#: Process states of a process that has exited (zombie) or is being torn down.
_GONE = frozenset("ZXx")


def argv_of(process: subprocess.Popen[bytes]) -> list[str]:
    """The command line `process` was started with, as strings."""
    args = process.args
    if isinstance(args, str | bytes | os.PathLike):
        return [os.fsdecode(args)]
    return [os.fsdecode(a) for a in args]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None when the process is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    return text.rpartition(")")[2].split()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (stat field 22), or None if gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (or already being torn down)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in _GONE


def _scan() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (process group, state)."""
    table = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and len(fields) > 2:
                table[int(entry.name)] = (int(fields[2]), fields[0])
    return table


def _live(table: dict[int, tuple[int, str]], leader: int) -> list[int]:
    """The running members of `leader`'s group; just `leader` if it leads no group (a process
    started without a session of its own)."""
    own = table.get(leader)
    if own is not None and own[0] != leader:
        return [leader] if own[1] not in _GONE else []
    return [pid for pid, (pgid, state) in table.items() if pgid == leader and state not in _GONE]


def find_by_tail(tail: list[str]) -> list[int]:
    """Running processes whose command line ends with `tail` (not zombies, not this process)."""
    if not tail:
        return []
    want = [os.fsencode(part) for part in tail]
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        if argv[-len(want) :] == want and running(int(entry.name)):
            found.append(int(entry.name))
    return found


def group_members(pgid: int) -> list[int]:
    """The running processes of the group led by `pgid` (see `_live`)."""
    return _live(_scan(), pgid)


def ours(pid: int, recorded_start: int | None) -> bool:
    """Whether the group led by `pid` is still the one we started (see the module docstring)."""
    now = start_ticks(pid)
    if now is None:
        return bool(group_members(pid))
    return recorded_start is None or now == recorded_start


def _reap(leaders: Iterable[int]) -> None:
    # A leader started by this very process would stay a zombie until we wait for it.
    for leader in leaders:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(leader, os.WNOHANG)


def _signal(leader: int, signum: int) -> None:
    table = _scan()
    own = table.get(leader)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if own is not None and own[0] != leader:
            os.kill(leader, signum)
        else:
            os.killpg(leader, signum)


def _wait_gone(leaders: Iterable[int], deadline: float) -> list[int]:
    waiting = list(leaders)
    while True:
        _reap(waiting)
        table = _scan()
        waiting = [g for g in waiting if _live(table, g)]
        if not waiting or time.monotonic() >= deadline:
            return waiting
        time.sleep(0.05)


def stop_groups(
    groups: Mapping[int, int | None],
    grace: float = 10.0,
    first: signal.Signals = signal.SIGTERM,
) -> list[int]:
    """Stop the process groups `{leader pid: recorded start ticks}`; returns any still running.

    `first` (SIGTERM) to every group at once, so each drains in parallel with the others,
    SIGKILL to those left after `grace` seconds, then wait until the kernel has torn them down.
    """
    leaders = [pid for pid, start in groups.items() if ours(pid, start)]
    for leader in leaders:
        _signal(leader, first)
    left = _wait_gone(leaders, time.monotonic() + grace)
    for leader in left:
        _signal(leader, signal.SIGKILL)
    return _wait_gone(left, time.monotonic() + 10.0)
