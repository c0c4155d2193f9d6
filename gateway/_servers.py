"""Running a local test server (Pebble, Knot DNS) as a child on free 127.0.0.1 ports.

Shared by `gateway.pebble` and `gateway.knot`: probing a port free for UDP and TCP, spawning
with output to a log, telling whether a pid still runs, and stopping only processes that are
ours (our children, or a pid recorded by another command that still runs the server binary).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import IO, TypeVar

_T = TypeVar("_T")


def free_port(*kinds: socket.SocketKind) -> int:
    """A port free right now for every socket kind in `kinds` (a DNS server needs UDP and TCP)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kinds[0]) as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            try:
                for kind in kinds[1:]:
                    with socket.socket(socket.AF_INET, kind) as other:
                        other.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port on 127.0.0.1")


def spawn(
    argv: list[str], log_path: Path, env: dict[str, str], detach: bool
) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr to `log_path` (in its own session if `detach`)."""
    log: IO[bytes]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=detach,
        )
    return proc


def alive(pid: int) -> bool:
    """True while `pid` runs; reaps it if it is our exited child (so it is no zombie)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    else:
        return done == 0
    # Not our child: an exited process may stay a zombie until its parent reaps it.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def runs_one_of(pid: int, binaries: Collection[str]) -> bool:
    """Whether `pid` runs a program whose file name is in `binaries`."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.path.basename(argv0).decode(errors="replace") in binaries


def stop(
    procs: Sequence[subprocess.Popen[bytes]], pids: Sequence[int], binaries: Collection[str]
) -> None:
    """SIGTERM each of `pids` that is one of `procs` or still runs one of `binaries` (so a
    reused pid is left alone), SIGKILL after 5 s, and wait until none runs."""
    children = {proc.pid for proc in procs}
    targets = [pid for pid in pids if pid in children or runs_one_of(pid, binaries)]
    for pid in targets:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    for pid in targets:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if alive(pid):
            _signal(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.02)
    for proc in procs:
        proc.wait()


def state_field(data: dict[str, object], key: str, kind: type[_T], what: str) -> _T:
    """`data[key]` if it is a `kind`; ValueError naming `what` state and the field otherwise."""
    value = data.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"{what} state: {key} must be a {kind.__name__}, got {value!r}")
    return value


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
