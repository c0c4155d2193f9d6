"""Relays beside the testnet's nodes (`tkms testnet up --relays N`, docs/relay.md).

Each relay is a `tkms relay` that follows the chain and has the committee sign each new
epoch's manifest; relay k bootstraps from relays 1..k-1, so they form one gossip mesh on
loopback. Their HTTP endpoints are where agents and `tkms testnet status` ask. They are
recorded like every other process of the network (`down` stops them, `up` resumes them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from contracts._anvil import free_port
from testnet.cluster import Cluster

RELAY_PYTHON = Path(__file__).resolve().parent.parent / ".venv-relay" / "bin" / "python"


def relays_unavailable() -> str | None:
    """Why relays cannot start here, or None."""
    if not RELAY_PYTHON.exists():
        return f"no relay environment at {RELAY_PYTHON} (make install creates it)"
    return None


def _listening(log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "listening":
                address: str = json.loads(line)["addrs"][0]
                return address
        time.sleep(0.1)
    raise TimeoutError(f"relay not listening after {timeout:.0f}s; see {log}")


def start_relays(cluster: Cluster, count: int, *, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Start `count` following relays; returns [{name, http, p2p, log}] (also kept in
    `cluster.extra["relays"]`)."""
    assert cluster.deployment is not None
    fingerprint = cluster.network_fingerprint().hex()
    relays: list[dict[str, Any]] = []
    for k in range(1, count + 1):
        relay_dir = cluster.root / "relays"
        relay_dir.mkdir(parents=True, exist_ok=True)
        log = relay_dir / f"relay-{k}.log"
        log.write_bytes(b"")
        http = f"127.0.0.1:{free_port()}"
        args = [
            "-m", "tkms", "relay", "--fingerprint", fingerprint,
            "--rpc", cluster.rpc_url, "--governance", cluster.deployment.governance,
            "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}", "--http", http,
            "--key-seed", str(relay_dir / f"relay-{k}.seed"),
        ]  # fmt: skip
        for earlier in relays:
            args += ["--peer", earlier["p2p"]]
        cluster.spawn(f"relay_{k}", args, log)
        relays.append({"name": f"relay-{k}", "http": f"http://{http}", "log": str(log)})
        relays[-1]["p2p"] = _listening(log, timeout)
    cluster.extra["relays"] = relays
    return relays
