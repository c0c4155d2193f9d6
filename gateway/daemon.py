"""The gateway daemon: keys from its own guest agent, a certificate from ACME, then serve.

Start-up order: config -> open-files limit raised (the connection cap fits what it allows) ->
guest agent (the gateway's app id and its sealing key, derived by the KMS network) -> sealed
store (ACME account key, certificate key) -> ACME account (the CAA `accounturi` record to
publish is printed) -> wildcard certificate -> TLS front -> first read of the chain ->
registration gRPC service (self-signed RA-TLS certificate quoted by the agent). Each certificate
key and the ACME account are quoted through the agent before use (a quote it cannot get stops
the start), and that evidence is served on `https://gateway.<base_domain>/.dstack/...`
(`gateway.evidence_http`). When everything listens it prints one line
`gateway-ready proxy=H:P registration=H:P` and writes `gateway.json` into the data directory.
Meanwhile registrations expire, and the revocation watch (`gateway.revocation`) drops routes
governance no longer approves. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
from gateway.chain import ChainGovernance, GovernanceView
from gateway.client import GATEWAY_TLS_NAME
from gateway.config import GatewayConfig
from gateway.dns_providers import open_dns_provider
from gateway.evidence import GatewayEvidence
from gateway.evidence_http import EvidenceSite
from gateway.keystore import SealedStore
from gateway.limits import (
    FD_RESERVE,
    ProxyLimits,
    RateLimit,
    connection_budget,
    raise_open_files_limit,
)
from gateway.proxy import Proxy
from gateway.registration import GatewayServicer, Registrar
from gateway.revocation import RevocationWatch
from gateway.table import RouteTable
from protos.tkms.v1 import gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger("tkms.gateway")

#: The agent key path the sealing key is derived at; changing it orphans every sealed file.
SEALING_KEY_PATH = "tkms-gateway/sealing/v1"
ACCOUNT_KEY_ITEM = "acme-account-key"
EXPIRE_EVERY = 5.0
AGENT_WAIT = 120.0
#: Registration requests are small (a quote and an event log); concurrent ones are bounded.
MAX_REGISTER_BYTES = 4 << 20
MAX_CONCURRENT_RPCS = 64


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
    #: the gateway's own HTTPS name, serving its evidence (`/.dstack/acme-info`, ...)
    evidence_name: str


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


def fitted_limits(limits: ProxyLimits) -> ProxyLimits:
    """Raise the soft open-files limit for `limits` (two descriptors a connection, plus a
    reserve) and lower the connection cap to what it allows; the limits to use."""
    open_files = raise_open_files_limit(2 * limits.max_connections + FD_RESERVE)
    budget = connection_budget(limits, open_files)
    if budget < limits.max_connections:
        log.warning(
            "connection_cap_lowered",
            configured=limits.max_connections,
            used=budget,
            open_files_limit=open_files,
        )
        limits = dataclasses.replace(
            limits,
            max_connections=budget,
            max_connections_per_client=min(limits.max_connections_per_client, budget),
        )
    return limits


def _throttled_loop_errors(limit: RateLimit) -> None:
    """asyncio logs every failed accept() (EMFILE) through the loop's exception handler; keep
    that from filling the disk if descriptors run out anyway."""
    loop = asyncio.get_running_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        if limit.allow(str(context.get("message", ""))):
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.table = RouteTable()
        self.proxy = Proxy(self.table, config.base_domain, limits=fitted_limits(config.limits))
        self._stop = asyncio.Event()

    async def _certificates(self, agent: GuestAgent) -> CertificateManager:
        cfg = self.config
        sealing_key = await asyncio.to_thread(agent.get_key, SEALING_KEY_PATH)
        store = SealedStore(cfg.data_dir / "sealed", sealing_key)
        # Every certificate key is quoted before the proxy serves it; a key the agent cannot
        # quote is never served (EvidenceError stops the start, or a renewal).
        self.evidence = evidence = GatewayEvidence(agent, store)

        def use_certificate(chain_pem: bytes, key_pem: bytes) -> None:
            evidence.quote_certificate(chain_pem)
            self.proxy.set_certificate(chain_pem, key_pem)

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
            open_dns_provider(cfg.acme),
            use_certificate,
            renew_before=cfg.acme.renew_before_days * 86400,
            caa_issuer=cfg.acme.caa_issuer,
        )
        await asyncio.to_thread(manager.ensure)
        await asyncio.to_thread(evidence.quote_account, manager.account_uri or "")
        self.proxy.site = EvidenceSite(evidence, cfg.base_domain)
        return manager

    async def start(self) -> RunningGateway:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        _throttled_loop_errors(RateLimit(rate=1.0, burst=10))
        agent = GuestAgent(cfg.agent_socket)
        await wait_for_agent(Path(cfg.agent_socket), AGENT_WAIT)
        app_id = await asyncio.to_thread(agent.app_id)
        log.info("gateway_starting", app_id=app_id.hex(), base_domain=cfg.base_domain)
        self.manager = await self._certificates(agent)
        caa = self.manager.caa_records().splitlines()
        for line in caa:
            log.info("caa_record", record=line)
        proxy_host, proxy_port = _split(cfg.proxy)
        bound_proxy = await self.proxy.start(proxy_host, proxy_port)

        w3 = Web3(HTTPProvider(cfg.rpc_url, request_kwargs={"timeout": 10}))
        view = GovernanceView(
            ChainGovernance(GovernanceClient(w3, cfg.governance)),
            max_age=max(30.0, 6 * cfg.chain_poll_seconds),
        )
        registrar = Registrar(
            base_domain=cfg.base_domain,
            table=self.table,
            chain=view,
            ttl=cfg.registration_ttl_seconds,
            freshness=cfg.registration_freshness_seconds,
            max_skew=cfg.registration_max_skew_seconds,
            backends=BackendPolicy(cfg.allowed_backend_networks),
        )
        self.watch = RevocationWatch(
            registrar,
            self.proxy.close_instances,
            poll=cfg.chain_poll_seconds,
            recheck=cfg.approval_recheck_seconds,
        )
        await self.watch.tick()  # the first view of the chain, before any registration
        self.server = grpc.aio.server(
            maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
            options=[("grpc.max_receive_message_length", MAX_REGISTER_BYTES)],
        )
        servicer = GatewayServicer(
            registrar,
            proxy_port=lambda: bound_proxy,
            app_id=app_id,
            peer_limit=RateLimit(cfg.registration_rate_per_second, cfg.registration_rate_burst),
        )
        gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, self.server)  # type: ignore[no-untyped-call]
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
            evidence_name=f"gateway.{cfg.base_domain}",
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
            print(f"CAA record pinned: {line}", flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._expire())
                tasks.create_task(self.watch.run(self._stop))
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
