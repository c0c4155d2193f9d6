"""The testnet's apps: an app registered on chain with its guest agent, and the demo app.

Each app runs as a CVM would: a guest agent (simulated TEE) in `<root>/<name>/`, serving the
dstack guest API on `<root>/<name>/dstack.sock`, with keys from the network.
"""

from __future__ import annotations

import time
import urllib.request
from typing import Any

from contracts._anvil import free_port
from guest.measure import compose_hash
from testnet.cluster import Cluster


def start_agent(cluster: Cluster, name: str, compose: bytes, deadline: float) -> dict[str, Any]:
    """Register an app with `compose`, start its guest agent in `<root>/<name>`, wait for it."""
    assert cluster.deployment is not None
    app_id = cluster.register_app([compose_hash(compose)])
    app_dir = cluster.root / name
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "app-compose.json").write_bytes(compose)
    socket_path = app_dir / "dstack.sock"
    socket_path.unlink(missing_ok=True)
    (app_dir / "agent.toml").write_text(
        f'rpc = "{cluster.rpc_url}"\ngovernance = "{cluster.deployment.governance}"\n'
        f'app_id = "{app_id}"\ncompose = "app-compose.json"\ntee = "simulator"\n'
        f'socket = "{socket_path}"\n'
    )
    agent = cluster.spawn(
        ["-m", "tkms", "guest", "agent", "--config", str(app_dir / "agent.toml")],
        app_dir / "agent.log",
    )
    cluster.extra.setdefault("pids", {})[f"{name}_agent"] = agent.pid
    while not socket_path.exists():
        if agent.poll() is not None:
            raise RuntimeError(f"the {name} guest agent exited; see {app_dir / 'agent.log'}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} guest agent not serving; see {app_dir / 'agent.log'}")
        time.sleep(0.2)
    return {"app_id": app_id, "dir": app_dir, "socket": socket_path, "agent_pid": agent.pid}


def start_demo_app(cluster: Cluster, compose: bytes, *, timeout: float = 60.0) -> dict[str, Any]:
    """Register the demo app, start its guest agent and the app; record them in `extra`.

    With a gateway running (`extra["gateway"]`), the app registers with it and keeps its
    registration fresh.
    """
    deadline = time.monotonic() + timeout
    agent = start_agent(cluster, "demo-app", compose, deadline)
    app_dir, socket_path = agent["dir"], agent["socket"]
    http_port, https_port = free_port(), free_port()
    args = [
        "-m",
        "testnet.demo_app",
        "--socket",
        str(socket_path),
        "--http-port",
        str(http_port),
        "--https-port",
        str(https_port),
    ]
    gateway = cluster.extra.get("gateway")
    if gateway:
        args += ["--gateway", gateway["registration"], "--gateway-app-id", gateway["app_id"]]
    app = cluster.spawn(args, app_dir / "app.log")
    demo = {
        "app_id": agent["app_id"],
        "http_port": http_port,
        "https_port": https_port,
        "agent_socket": str(socket_path),
        "agent_pid": agent["agent_pid"],
        "pid": app.pid,
    }
    cluster.extra["demo_app"] = demo
    cluster.extra.setdefault("pids", {})["demo_app"] = app.pid
    wait_http(http_port, deadline)
    cluster.progress(f"demo app {agent['app_id']} on http :{http_port} and https :{https_port}")
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
