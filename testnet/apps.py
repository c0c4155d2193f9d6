"""The testnet's apps: an app registered on chain with its guest agent, and the demo app.

Each app runs as a CVM would: a guest agent (simulated TEE) in `<root>/<name>/`, serving the
dstack guest API on `<root>/<name>/dstack.sock` and dstack's legacy Tappd API beside it on
`tappd.sock`, with keys from the network. The tappd socket is a command-line option, not in
agent.toml, so that another instance started from the same config does not take it over.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts._anvil import free_port
from guest.measure import compose_hash
from testnet.cluster import Cluster


@dataclass(frozen=True)
class AgentHandle:
    """A guest agent started for an app in `<root>/<name>/`."""

    name: str
    app_id: str
    dir: Path
    socket: Path
    process: subprocess.Popen[bytes]

    def wait(self, deadline: float) -> None:
        """Until the agent serves on its socket (it has its keys from the network)."""
        log = self.dir / "agent.log"
        while not self.socket.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.name} guest agent exited; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} guest agent not serving; see {log}")
            time.sleep(0.1)


def spawn_agent(
    cluster: Cluster,
    name: str,
    compose: bytes,
    *,
    app_id: str | None = None,
    wait_for_network: float = 0.0,
    relay: str | None = None,
) -> AgentHandle:
    """Start the guest agent of the app with `compose` (registered now unless `app_id` is given).

    Returns at once: `wait()` on the handle, so that several agents fetch keys in parallel.
    The agent pins the network's fingerprint, so the first DKG must have completed. With
    `wait_for_network`, it waits that long for a usable committee (e.g. a generation link).
    With `relay`, it cross-checks the committee with that relay's signed manifest.
    """
    assert cluster.deployment is not None
    app_id = app_id or cluster.register_app([compose_hash(compose)])
    app_dir = cluster.root / name
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "app-compose.json").write_bytes(compose)
    socket_path = app_dir / "dstack.sock"
    socket_path.unlink(missing_ok=True)
    tappd_path = app_dir / "tappd.sock"
    (app_dir / "agent.toml").write_text(
        f'rpc = "{cluster.rpc_url}"\ngovernance = "{cluster.deployment.governance}"\n'
        f'network_fingerprint = "{cluster.network_fingerprint().hex()}"\n'
        f'app_id = "{app_id}"\ncompose = "app-compose.json"\ntee = "simulator"\n'
        f'socket = "{socket_path}"\nwait_for_network = {wait_for_network}\n'
        + ("" if relay is None else f'relay = "{relay}"\nrelay_wait = 30\n')
    )
    args = ["--config", str(app_dir / "agent.toml"), "--tappd-socket", str(tappd_path)]
    agent = cluster.spawn(
        f"{name}_agent",
        ["-m", "tkms", "guest", "agent", *args],
        app_dir / "agent.log",
    )
    return AgentHandle(name, app_id, app_dir, socket_path, agent)


def start_demo_app(
    cluster: Cluster,
    compose: bytes,
    *,
    agent: AgentHandle | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Start the demo app (and its guest agent, unless `agent` is already running it).

    With a gateway running (`extra["gateway"]`), the app registers with it and keeps its
    registration fresh. Recorded in `extra["demo_app"]`.
    """
    deadline = time.monotonic() + timeout
    agent = agent or spawn_agent(cluster, "demo-app", compose)
    agent.wait(deadline)
    http_port, https_port = free_port(), free_port()
    args = [
        "-m",
        "testnet.demo_app",
        "--socket",
        str(agent.socket),
        "--http-port",
        str(http_port),
        "--https-port",
        str(https_port),
    ]
    gateway = cluster.extra.get("gateway")
    if gateway:
        args += ["--gateway", gateway["registration"], "--gateway-app-id", gateway["app_id"]]
    app = cluster.spawn("demo_app", args, agent.dir / "app.log")
    demo = {
        "app_id": agent.app_id,
        "http_port": http_port,
        "https_port": https_port,
        "agent_socket": str(agent.socket),
        "tappd_socket": str(agent.dir / "tappd.sock"),
        "agent_pid": agent.process.pid,
        "pid": app.pid,
    }
    cluster.extra["demo_app"] = demo
    wait_http(http_port, deadline)
    cluster.progress(f"demo app {agent.app_id} on http :{http_port} and https :{https_port}")
    return demo


def wait_http(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing answers on http://127.0.0.1:{port}/")
