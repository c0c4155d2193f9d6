"""Separate hosts on one machine: a Linux network namespace per host, joined by a bridge.

    with Hosts(3) as hosts:                      # skips the test unless namespaces can be made
        hosts.bridge_address                     # 10.231.X.1, in this (the test's) namespace
        hosts.address(1)                         # 10.231.X.11, host 1's own address
        hosts.popen(1, ["tkms", "node", "join", ...])   # a process inside host 1

Each host has its own loopback, its own interface `eth0` with one address in a private /24
chosen free on this machine, and no route anywhere else: it reaches the bridge's address (where
the test runs anvil) and the other hosts, nothing outside. Names carry this process's id, so
concurrent runs do not collide, and a count of the `Hosts` this process made, so a second set
made at once or right after the first (pytest-xdist re-runs a module fixture on a worker that
already had it) does not meet the first's names; namespaces and bridges left by a run that died
(its id no longer running) are removed first. Everything made is removed on exit, the outside
ends of the veth pairs explicitly: deleting a namespace frees its pairs only later, in the
kernel's own time.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import pytest

PREFIX = "tkms"
SUBNET = "10.231"
#: Which `Hosts` of this process an instance is (in its names after the first).
_INSTANCES = itertools.count(1)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def namespaces_unavailable() -> str | None:
    """Why this machine cannot make network namespaces, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); CI runs as root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def remove_stale() -> None:
    """Namespaces and bridges of runs whose process is gone."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{PREFIX}-(\d+)-\w+", name)
        if match and not _alive(int(match.group(1))):
            _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        match = re.search(r"\d+: (tkb([0-9a-f]+)(?:x\d+)?):", line)
        if match and not _alive(int(match.group(2), 16)):
            _ip("link", "del", match.group(1), check=False)


def _free_subnet() -> str:
    used = _ip("-4", "-o", "addr", "show", check=False).stdout
    used += _ip("-4", "route", "show", "table", "all", check=False).stdout
    start = os.getpid() % 200
    for offset in range(200):
        third = 20 + (start + offset) % 200
        if f"{SUBNET}.{third}." not in used:
            return f"{SUBNET}.{third}"
    raise RuntimeError(f"no free /24 in {SUBNET}.20-219.0 on this machine")


class Hosts:
    """`count` hosts (1-based) on one bridge; see the module docstring."""

    def __init__(self, count: int) -> None:
        self.count = count
        instance = next(_INSTANCES)
        #: In every name: this process's id (hex), and which of its `Hosts` this is.
        self.tag = f"{os.getpid():x}" + ("" if instance == 1 else f"x{instance}")
        self._ns_tag = f"{os.getpid()}-" + ("" if instance == 1 else f"x{instance}")
        self.bridge = f"tkb{self.tag}"
        self.subnet = ""
        self.made: list[str] = []

    @property
    def bridge_address(self) -> str:
        return f"{self.subnet}.1"

    def address(self, host: int) -> str:
        return f"{self.subnet}.{10 + host}"

    def namespace(self, host: int) -> str:
        return f"{PREFIX}-{self._ns_tag}h{host}"

    def __enter__(self) -> Hosts:
        reason = namespaces_unavailable()
        if reason is not None:
            pytest.skip(reason)
        remove_stale()
        self.subnet = _free_subnet()
        try:
            _ip("link", "add", "name", self.bridge, "type", "bridge")
            self.made.append(f"link:{self.bridge}")
            _ip("addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for host in range(1, self.count + 1):
                self._add_host(host)
        except BaseException:
            self.close()
            raise
        return self

    def _add_host(self, host: int) -> None:
        ns = self.namespace(host)
        outside, inside = f"tkv{self.tag}h{host}", f"tkp{self.tag}h{host}"
        _ip("netns", "add", ns)
        self.made.append(f"netns:{ns}")
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        self.made.append(f"link:{outside}")  # deleted before its namespace: at once, both ends
        _ip("link", "set", inside, "netns", ns)
        _ip("-n", ns, "link", "set", inside, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")

    def popen(
        self,
        host: int,
        argv: Sequence[str],
        *,
        log: IO[bytes],
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """`argv` inside host `host` (`ip netns exec` execs it: the pid is the program's), in
        its own session."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(host), *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def namespace_of(self, pid: int) -> str:
        """The named namespace process `pid` runs in ("" for none of ours)."""
        return _ip("netns", "identify", str(pid), check=False).stdout.strip()

    def close(self) -> None:
        for item in reversed(self.made):
            kind, _, name = item.partition(":")
            if kind == "netns":
                _ip("netns", "del", name, check=False)  # its veth pair goes with it
            else:
                _ip("link", "del", name, check=False)
        self.made.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
