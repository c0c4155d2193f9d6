"""Resuming, restarting and destroying a testnet: what `up` does with a network that exists.

Every process the network starts is remembered in its state file in start order, with its
command line and log (`Cluster.remember`): anvil (whose chain state anvil itself dumps to disk
every second), the nodes, Pebble, the guest agents, the gateway and the demo app. So a network
with dead processes is brought back by starting exactly those again, in that order, each once
the ones before it serve; nothing is deleted and every node keeps its sealed shares, so the
group key and every app key stay the same. A process the user started again by hand with the
same command is adopted instead of started twice.

Only `destroy` (and `up --fresh`) deletes a network, and it says what it deletes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts._anvil import is_ready
from testnet.cluster import ANVIL_STATE, Cluster, NodeProcess
from testnet.processes import find_by_tail, ours, running, start_ticks, stop_groups

Progress = Callable[[str], None]


class ResumeError(Exception):
    """The network cannot be brought back as it was; the message says why and what to do."""


@dataclass
class Revival:
    """What a resume or restart did, by process name (`anvil`, `node3`, `gateway`, ...)."""

    restarted: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = []
        if self.restarted:
            parts.append("restarted " + ", ".join(self.restarted))
        if self.adopted:
            parts.append("adopted " + ", ".join(self.adopted) + " (already started by hand)")
        return "; ".join(parts) or "nothing to do"


def names(cluster: Cluster) -> list[str]:
    """Every remembered process, in the order the network started them."""
    return list(cluster.extra.get("commands", {}))


def _node(cluster: Cluster, name: str) -> NodeProcess | None:
    if not name.startswith("node") or not name[4:].isdigit():
        return None
    matches = [n for n in cluster.nodes if n.index == int(name[4:])]
    return matches[0] if matches else None


def _recorded(cluster: Cluster, name: str) -> tuple[int | None, int | None]:
    """(pid, start ticks) the state records for `name`."""
    if name == "anvil":
        return cluster.anvil_pid, cluster.anvil_start
    node = _node(cluster, name)
    if node is not None:
        pid = node.process.pid if node.process is not None else node.detached_pid
        return pid, node.start
    return cluster.extra.get("pids", {}).get(name), cluster.extra.get("starts", {}).get(name)


def alive(cluster: Cluster, name: str) -> bool:
    pid, start = _recorded(cluster, name)
    return pid is not None and running(pid) and ours(pid, start)


def _tail(argv: list[str]) -> list[str]:
    # `python -m tkms node run --config X` and the console script `tkms node run --config X`
    # end alike; so do anvil and Pebble started again by hand with their arguments.
    return argv[3:] if len(argv) > 3 and argv[1] == "-m" else argv[1:]


def hand_started(cluster: Cluster) -> dict[str, list[int]]:
    """Running processes with a remembered command that the state does not record (a process
    the user started again by hand), by name."""
    found = {}
    for name, command in cluster.extra.get("commands", {}).items():
        recorded, _ = _recorded(cluster, name)
        pids = [pid for pid in find_by_tail(_tail(command["argv"])) if pid != recorded]
        if pids:
            found[name] = pids
    return found


def _set_pid(cluster: Cluster, name: str, pid: int) -> None:
    if name == "anvil":
        cluster.anvil = None
        cluster.attached_anvil_pid, cluster.anvil_start = pid, start_ticks(pid)
        return
    node = _node(cluster, name)
    if node is not None:
        node.process, node.detached_pid, node.start = None, pid, start_ticks(pid)
        return
    cluster.record(name, pid)


def _spawn(command: dict[str, Any]) -> int:
    argv = [str(a) for a in command["argv"]]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **command.get("env", {})}
    with open(str(command["log"]), "ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return process.pid


def _connectable_unix(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def _http_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _argument(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def _ready(cluster: Cluster, name: str, argv: list[str]) -> bool:
    """Whether the process `name` (started with `argv`) serves what the next ones need."""
    if name == "anvil":
        return is_ready(cluster.rpc_url)
    node = _node(cluster, name)
    if node is not None:
        return node.health(timeout=1.0) is not None
    if name.endswith("_agent"):
        config = Path(_argument(argv, "--config") or "")
        return _connectable_unix(config.parent / "dstack.sock")
    if name == "gateway":
        return (Path(_argument(argv, "--config") or "").parent / "state" / "gateway.json").exists()
    if name == "demo_app":
        return _http_ok(int(_argument(argv, "--http-port") or 0))
    return True  # Pebble: the gateway retries its ACME calls


def _prepare(name: str, argv: list[str]) -> None:
    # Signals the next `_ready` must not read from the dead process's run.
    if name == "gateway":
        (Path(_argument(argv, "--config") or "").parent / "state" / "gateway.json").unlink(
            missing_ok=True
        )


def revive(
    cluster: Cluster, which: list[str], progress: Progress, *, timeout: float = 180.0
) -> Revival:
    """Start the processes `which` again (in the network's start order), adopting any that
    was started by hand; returns once each serves. The caller saves the state."""
    revival = Revival()
    adoptable = hand_started(cluster)
    commands = cluster.extra.get("commands", {})
    deadline = time.monotonic() + timeout
    for name in names(cluster):
        if name not in which:
            continue
        argv = [str(a) for a in commands[name]["argv"]]
        if adoptable.get(name):
            _set_pid(cluster, name, adoptable[name][0])
            revival.adopted.append(name)
        else:
            if name == "anvil" and not (cluster.root / ANVIL_STATE).exists():
                raise ResumeError(
                    f"the chain is gone: anvil is not running and {cluster.root / ANVIL_STATE} "
                    "does not exist, so the network's contracts and epochs cannot come back; "
                    "`tkms testnet up --fresh` starts a new network (new group key)"
                )
            _prepare(name, argv)
            _set_pid(cluster, name, _spawn(commands[name]))
            revival.restarted.append(name)
            progress(f"{name} started again")
        while not _ready(cluster, name, argv):
            pid, _ = _recorded(cluster, name)
            if pid is None or not running(pid):
                raise ResumeError(f"{name} exited while starting; see {commands[name]['log']}")
            if time.monotonic() > deadline:
                raise ResumeError(f"{name} does not serve yet; see {commands[name]['log']}")
            time.sleep(0.2)
    return revival


def resume(cluster: Cluster, progress: Progress) -> Revival:
    """Bring back every dead process of the network, keeping its state; see the docstring."""
    dead = [name for name in names(cluster) if not alive(cluster, name)]
    if not dead:
        return Revival()
    progress(f"found {len(dead)} stopped processes ({', '.join(dead)}): starting them again")
    revival = revive(cluster, dead, progress)
    _wait_nodes(cluster, dead)
    return revival


def restart(cluster: Cluster, progress: Progress, node: int | None = None) -> Revival:
    """Stop and start one node (`node`) or every process of the network, keeping its state."""
    if node is None:
        cluster.down()
        which = names(cluster)
    else:
        matches = [n for n in cluster.nodes if n.index == node]
        if not matches:
            raise ResumeError(f"no node {node} (nodes: {[n.index for n in cluster.nodes]})")
        cluster.stop_node(matches[0])
        which = [f"node{node}"]
    revival = revive(cluster, which, progress)
    _wait_nodes(cluster, which)
    return revival


def _wait_nodes(cluster: Cluster, which: list[str]) -> None:
    # A node serves before it has read its share and its peers: wait until it is NORMAL.
    nodes = [n for n in cluster.nodes if f"node{n.index}" in which]
    if nodes:
        cluster.wait_healthy(nodes, timeout=120, accept=("NORMAL",))
    # The other members count a revived one once their next probe reaches it (about a
    # second, node/liveness.py): wait for them too, so the status shown next is current.
    others = [
        n
        for n in cluster.nodes
        if n not in nodes and n.pid is not None and (n.health() or {}).get("epoch")
    ]
    if which and others:
        cluster.wait_healthy(others, timeout=30, accept=("NORMAL",))


def stop_hand_started(cluster: Cluster) -> list[int]:
    """Stop processes running a remembered command that the state does not record."""
    pids = [pid for found in hand_started(cluster).values() for pid in found]
    left = stop_groups(dict.fromkeys(pids))
    if left:
        raise RuntimeError(f"still running after SIGKILL: pids {left}")
    return pids


def contents(root: Path, cluster: Cluster | None) -> str:
    """What deleting `root` loses, in words."""
    nodes = sorted(p.name for p in root.glob("node*") if p.is_dir())
    parts = [f"{len(nodes)} node directories with their sealed identities and key shares"]
    if (root / ANVIL_STATE).exists():
        parts.append("the chain (contracts, epochs, the group key's history)")
    if cluster is not None and cluster.extra.get("gateway"):
        parts.append("the gateway's sealed ACME account and certificate")
    parts.append("every log")
    return f"{root}: " + ", ".join(parts)


def destroy(root: Path, cluster: Cluster | None) -> str:
    """Stop everything of the network in `root` and delete the directory; returns what it
    deleted (every app key derived from this network is gone with it)."""
    described = contents(root, cluster)
    if cluster is not None:
        cluster.down()
        stop_hand_started(cluster)
    shutil.rmtree(root, ignore_errors=False)
    return described
