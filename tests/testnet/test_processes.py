"""Process groups as the testnet stops them: whole groups, crashed leaders, reused pids."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from testnet.processes import group_members, running, start_ticks, stop_groups

#: A leader that forks a child into its own group and then sleeps; the child ignores SIGTERM,
#: as a process stuck in a handler would.
FAMILY = """
import os, signal, sys, time
child = os.fork()
if child == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(300)
    os._exit(0)
print(child, flush=True)
time.sleep(300)
"""


@pytest.fixture
def family() -> Iterator[tuple[subprocess.Popen[str], int]]:
    leader = subprocess.Popen(
        [sys.executable, "-c", FAMILY], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    try:
        yield leader, child
    finally:
        for pid in (leader.pid, child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        leader.wait()


def test_a_group_is_stopped_whole_and_waited_for(
    family: tuple[subprocess.Popen[str], int],
) -> None:
    leader, child = family
    assert sorted(group_members(leader.pid)) == sorted([leader.pid, child])
    started = time.monotonic()
    left = stop_groups({leader.pid: start_ticks(leader.pid)}, grace=0.5)
    assert left == []
    # The child ignored SIGTERM, so it took SIGKILL; and nothing runs once the call returns.
    assert not running(leader.pid) and not running(child)
    assert time.monotonic() - started < 10


def test_a_crashed_leader_does_not_hide_its_group(
    family: tuple[subprocess.Popen[str], int],
) -> None:
    leader, child = family
    recorded = start_ticks(leader.pid)
    leader.kill()
    leader.wait()
    assert running(child)
    assert stop_groups({leader.pid: recorded}, grace=0.5) == []
    assert not running(child)


def test_a_reused_pid_is_left_alone(family: tuple[subprocess.Popen[str], int]) -> None:
    leader, child = family
    recorded = start_ticks(leader.pid)
    assert recorded is not None
    # The state file says another process (started at another time) had this pid.
    assert stop_groups({leader.pid: recorded - 1}, grace=0.5) == []
    assert running(leader.pid) and running(child)


def test_a_process_without_a_session_of_its_own_is_stopped_alone() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        assert group_members(sleeper.pid) == [sleeper.pid]
        assert stop_groups({sleeper.pid: start_ticks(sleeper.pid)}, grace=5) == []
        # stop_groups may reap it itself (then Popen sees no status): check it is gone.
        assert not running(sleeper.pid)
        assert running(os.getpid())  # our own group (the test's) was not signalled
    finally:
        sleeper.kill()
        sleeper.wait()


def test_gone_processes_read_as_not_running() -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert not running(done.pid) and start_ticks(done.pid) is None
    assert stop_groups({done.pid: None}) == []
