"""The gateway daemon: keys from its own guest agent, a certificate from ACME, then serve.

Start-up order: config -> guest agent (the gateway's app id and its sealing key, derived by the
KMS network) -> sealed store (ACME account key, certificate key) -> ACME account (the CAA
`accounturi` record to publish is printed) -> wildcard certificate -> TLS front -> registration
gRPC service (self-signed RA-TLS certificate quoted by the agent). When everything listens it
prints one line `gateway-ready proxy=H:P registration=H:P` and writes `gateway.json` into the
data directory. SIGTERM/SIGINT stop it; registrations expire on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from web3 import HTTPProvider, Web3

from attest import create_ratls_certificate
from contracts import GovernanceClient
from gateway.acme_client import AcmeIssuer
from gateway.agent import AgentQuoteSource, GuestAgent
from gateway.backends import BackendPolicy
from gateway.certs import CertificateManager
from gateway.client import GATEWAY_TLS_NAME
from gateway.config import GatewayConfig
from gateway.dns01 import ChallTestSrvPublisher
from gateway.keystore import SealedStore
from gateway.proxy import Proxy
from gateway.registration import GatewayServicer, Registrar
from gateway.table import RouteTable
from protos.tkms.v1 import gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger("tkms.gateway")

#: The agent key path the sealing key is derived at; changing it orphans every sealed file.
SEALING_KEY_PATH = "tkms-gateway/sealing/v1"
ACCOUNT_KEY_ITEM = "acme-account-key"
EXPIRE_EVERY = 5.0
AGENT_WAIT = 120.0


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host, int(port)


@dataclass
class RunningGateway:
    proxy: str
    registration: str
    app_id: str
    account_uri: str
    caa_records: list[str]


def registration_credentials(agent: GuestAgent, app_id: bytes) -> grpc.ServerCredentials:
    """A fresh P-256 key and a self-signed RA-TLS certificate for it, quoted by the agent."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = create_ratls_certificate(
        key,
        AgentQuoteSource(agent),
        subject="tkms gateway registration",
        alt_names=[GATEWAY_TLS_NAME],
        app_id=app_id,
        server_auth=True,
        client_auth=False,
    )
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return grpc.ssl_server_credentials([(key_pem, cert.public_bytes(Encoding.PEM))])


async def wait_for_agent(socket: Path, timeout: float) -> None:
    """Until the guest agent's socket exists: the agent serves once it has the app's keys,
    which it fetches from the network at boot, so a gateway started beside it waits."""
    deadline = asyncio.get_running_loop().time() + timeout
    if not socket.exists():
        log.info("waiting_for_guest_agent", socket=str(socket), timeout=timeout)
    while not socket.exists():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no guest agent at {socket} after {timeout:.0f}s")
        await asyncio.sleep(0.1)


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.table = RouteTable()
        self.proxy = Proxy(self.table, config.base_domain)
        self._stop = asyncio.Event()

    async def _certificates(self, agent: GuestAgent) -> CertificateManager:
        cfg = self.config
        sealing_key = await asyncio.to_thread(agent.get_key, SEALING_KEY_PATH)
        store = SealedStore(cfg.data_dir / "sealed", sealing_key)
        issuer = AcmeIssuer(
            cfg.acme.directory_url,
            store.load_or_create_key(ACCOUNT_KEY_ITEM),
            ca_bundle=cfg.acme.ca_bundle or None,
            contact=cfg.acme.contact or None,
        )
        manager = CertificateManager(
            store,
            issuer,
            cfg.base_domain,
            ChallTestSrvPublisher(cfg.acme.challtestsrv_url),
            self.proxy.set_certificate,
            renew_before=cfg.acme.renew_before_days * 86400,
            caa_issuer=cfg.acme.caa_issuer,
        )
        await asyncio.to_thread(manager.ensure)
        return manager

    async def start(self) -> RunningGateway:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        agent = GuestAgent(cfg.agent_socket)
        await wait_for_agent(Path(cfg.agent_socket), AGENT_WAIT)
        app_id = await asyncio.to_thread(agent.app_id)
        log.info("gateway_starting", app_id=app_id.hex(), base_domain=cfg.base_domain)
        self.manager = await self._certificates(agent)
        caa = self.manager.caa_records().splitlines()
        for line in caa:
            log.info("publish_caa_record", record=line)
        proxy_host, proxy_port = _split(cfg.proxy)
        bound_proxy = await self.proxy.start(proxy_host, proxy_port)

        w3 = Web3(HTTPProvider(cfg.rpc_url, request_kwargs={"timeout": 10}))
        registrar = Registrar(
            base_domain=cfg.base_domain,
            table=self.table,
            governance=GovernanceClient(w3, cfg.governance),
            ttl=cfg.registration_ttl_seconds,
            freshness=cfg.registration_freshness_seconds,
            backends=BackendPolicy(cfg.allowed_backend_networks),
        )
        self.server = grpc.aio.server()
        gateway_pb2_grpc.add_GatewayServicer_to_server(  # type: ignore[no-untyped-call]
            GatewayServicer(registrar, proxy_port=lambda: bound_proxy, app_id=app_id), self.server
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        creds = await asyncio.to_thread(registration_credentials, agent, app_id)
        reg_host, reg_port = _split(cfg.registration)
        bound_reg = self.server.add_secure_port(f"{reg_host}:{reg_port}", creds)
        await self.server.start()
        service = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name
        await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        running = RunningGateway(
            proxy=f"{proxy_host}:{bound_proxy}",
            registration=f"{reg_host}:{bound_reg}",
            app_id="0x" + app_id.hex(),
            account_uri=self.manager.account_uri or "",
            caa_records=caa,
        )
        (cfg.data_dir / "gateway.json").write_text(json.dumps(running.__dict__, indent=2))
        return running

    async def _expire(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), EXPIRE_EVERY)
            dropped = self.table.expire()
            if dropped:
                log.info("registrations_expired", count=dropped)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        running = await self.start()
        print(
            f"gateway-ready proxy={running.proxy} registration={running.registration}", flush=True
        )
        for line in running.caa_records:
            print(f"publish this CAA record: {line}", flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._expire())
                tasks.create_task(self.manager.run(self._stop))
                await self._stop.wait()
        finally:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(2.0)
            await self.proxy.close()
        log.info("gateway_stopped")
        return 0


def configure_logging() -> None:
    """structlog's console output at `TKMS_LOG_LEVEL` (default info; per-connection events
    are debug), timestamps in UTC. Never pass keys or certificates' private parts to a logger."""
    level = logging.getLevelNamesMapping().get(os.environ.get("TKMS_LOG_LEVEL", "").upper())
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level or logging.INFO),
    )


def run_gateway(config: GatewayConfig) -> int:
    configure_logging()
    try:
        return asyncio.run(Gateway(config).run())
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"tkms gateway: {exc}", file=sys.stderr)
        log.exception("gateway_failed")
        return 1
