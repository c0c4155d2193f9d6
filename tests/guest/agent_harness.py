"""Start a guest agent in process, keys from `FakeKms`, serving on a unix socket in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from attest.providers import SimulatorProvider
from guest.agent import Agent, provider_evidence, start_agent
from guest.agent_server import DSTACK_ROUTES, AgentServer, Routes
from guest.config import AgentConfig
from mpc import Scalar
from tests.guest.fake_kms import FakeKms

COMPOSE = b'{"name": "demo", "services": {"web": {"image": "nginx@sha256:00"}}}'
APP_ID = bytes.fromhex("11" * 20)
NETWORK = bytes.fromhex("f0" * 32)


def make_config(tmp: Path, app_id: bytes = APP_ID, **extra: object) -> AgentConfig:
    compose = tmp / "app-compose.json"
    compose.write_bytes(COMPOSE)
    fields: dict[str, object] = {
        "rpc": "http://127.0.0.1:1",
        "governance": "0x" + "22" * 20,
        "network_fingerprint": NETWORK,
        "app_id": app_id,
        "compose": compose,
    }
    fields.update(extra)
    return AgentConfig(**fields)  # type: ignore[arg-type]


def boot(
    config: AgentConfig,
    secret: Scalar,
    refuse: str | None = None,
    env_policy: tuple[bytes, int] = (bytes(20), 0),
) -> Agent:
    provider = SimulatorProvider()
    kms = FakeKms(
        secret, config.app_id, provider_evidence(provider), refuse=refuse, env_policy=env_policy
    )
    return start_agent(config, provider, kms)


@contextmanager
def serving(agent: Agent, socket: Path, routes: Routes = DSTACK_ROUTES) -> Iterator[AgentServer]:
    server = AgentServer(socket, agent, routes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def api_client(agent: Agent, socket: Path) -> Iterator[httpx.Client]:
    """`agent` served on `socket`, and an HTTP client of its dstack API."""
    with serving(agent, socket):
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, base_url="http://agent") as client:
            yield client
