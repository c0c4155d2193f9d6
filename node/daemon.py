"""The node daemon: wires the parts together and runs them under one asyncio.TaskGroup.

Start-up order: config -> logging -> sealing -> identity -> TEE provider (boot measurement)
-> chain client and watcher -> journal and share store -> RA-TLS certificate -> epoch manager
-> servers (public Kms, peer, admin unix socket, status HTTP, and dstack's KMS over pRPC when
`listen.dstack_kms` is set). Every task has an owner; one
failing task stops the node (trio's rule: no task fails silently). SIGTERM and SIGINT drain:
health turns NOT_SERVING, servers stop accepting, in-flight calls get a grace period.
A StorageError while running (a full disk, an unwritable data directory) stops the node with
a `node_failed` event naming the file and exit status 74: it must not publish what it cannot
journal, and the journal resumes its in-flight epochs after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from attest._ratls import encode_attestation
from contracts import Divergence, GovernanceClient, QuorumProvider, Transactor
from node.admin_service import AdminServicer, NodeStatus
from node.authz import Authorizer
from node.chain_rpc import chain_web3, quorum_web3
from node.chainview import ChainWatcher, NodeRecord
from node.cli import evidence_hash
from node.config import NodeConfig
from node.dstack_prpc import DstackKmsServer
from node.dstack_service import DstackKmsService, chain_opt_in
from node.epochs import EpochManager
from node.errors import ConfigError, NodeError, StorageError
from node.health import (
    Health,
    HealthInputs,
    HealthReport,
    StatusHttpServer,
    compute_health,
    own_problem,
)
from node.identity import load_identity
from node.journal import Journal
from node.kms_root import KmsRoots
from node.kms_service import KmsServicer, chain_env_policy
from node.liveness import SELF_SERVICE, Liveness
from node.logs import NativeStderr, capture_native_stderr, configure_logging, get_logger
from node.manifest import signed_health
from node.metrics import NodeMetrics
from node.peer_client import PeerClient
from node.peer_service import EpochStatusReply, PeerServer, chain_roster
from node.ratelimit import RateLimiter
from node.ratls import make_node_certificate
from node.sealing import open_sealer
from node.shares import ShareStore
from node.tee import accepts_simulator, make_provider, measure_node_boot
from protos.tkms.v1 import admin_pb2_grpc, kms_pb2, kms_pb2_grpc

log = get_logger("tkms.node")

KMS_SERVICE = kms_pb2.DESCRIPTOR.services_by_name["Kms"].full_name
GRACE_SECONDS = 5.0
#: Exit status when the data directory cannot be written (sysexits EX_IOERR).
EXIT_STORAGE = 74
#: Exit status after an unexpected error, logged as `node_crashed` (sysexits EX_SOFTWARE).
EXIT_SOFTWARE = 70
#: Exit status after a clear error (bad configuration, unusable data): as `tkms node` gives.
EXIT_FAILED = 2
#: Seconds an RPC endpoint that answered against the quorum keeps the node DEGRADED.
DIVERGED_WINDOW = 60.0


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def _server_names(cfg: NodeConfig) -> tuple[str, ...]:
    """The names in the dstack endpoint's certificate: configured, else the listen host."""
    if cfg.dstack_kms.server_names:
        return cfg.dstack_kms.server_names
    host = _split(cfg.listen.dstack_kms)[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        raise ConfigError(
            "dstack_kms.server_names",
            f"required when listen.dstack_kms listens on every address ({cfg.listen.dstack_kms}): "
            "the names guests reach the endpoint by",
        )
    return (host,)


@dataclass
class RunningNode:
    """What a started node listens on (ports resolved when 0 was configured)."""

    kms_port: int
    peer_port: int
    status_port: int
    address: str
    dstack_kms_port: int = 0  # 0: not served


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.metrics = NodeMetrics()
        self._draining = asyncio.Event()
        self._health = Health.DOWN
        self._health_reason = "starting"

    # -- pieces -------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.config
        sealer = open_sealer(cfg.sealing, cfg.data_dir)
        self.identity = load_identity(cfg.data_dir, sealer)
        self.provider = make_provider(cfg.tee)
        measure_node_boot(self.provider, sealing=cfg.sealing)
        # Short timeouts, at most one retry: a hung RPC is noticed within seconds, not minutes.
        # Several endpoints: k of them must agree on the head and on every read.
        self.quorum: QuorumProvider | None = None
        if len(cfg.chain.endpoints) > 1:
            w3, self.quorum = quorum_web3(
                cfg.chain.endpoints,
                cfg.chain.quorum,
                on_divergence=self._rpc_divergence,
                max_lag_blocks=cfg.chain.rpc_max_lag_blocks,
            )
        else:
            w3 = chain_web3(cfg.chain.endpoints[0])
        self.client = GovernanceClient(
            w3, cfg.chain.governance, Transactor(w3, self.identity.eth_account)
        )
        self.watcher = ChainWatcher(self.client, poll_interval=cfg.chain.poll_interval_seconds)
        self.journal = Journal.open(cfg.data_dir / "journal.sqlite3", sealer)
        self.shares = ShareStore(cfg.data_dir / "shares", sealer)
        self.cert_pem, self.key_pem = make_node_certificate(self.identity, self.provider)
        self.liveness = Liveness(self._committee_members, me=self.identity.eth_address)
        self.peer_client = PeerClient(
            identity=self.identity,
            cert_pem=self.cert_pem,
            key_pem=self.key_pem,
            view=lambda: self.watcher.view,
            kms_allowed=self._kms_allowed,
            accept_simulator=accepts_simulator(cfg.tee),
        )
        self.epochs = EpochManager(
            identity=self.identity,
            client=self.client,
            watcher=self.watcher,
            journal=self.journal,
            shares=self.shares,
            metrics=self.metrics,
            confirmations=cfg.chain.confirmations,
        )
        self.roots = KmsRoots(
            shares=self.epochs.share_for,
            view=lambda: self.watcher.view,
            fetch=self.peer_client.kms_root_partial,
        )
        self.authorizer = authorizer = Authorizer(
            view=lambda: self.watcher.view,
            approve=lambda info, block: self.client.is_app_allowed(info, block=block),
            max_head_age=cfg.chain.max_head_age_seconds,
            limiter=RateLimiter(cfg.limits.requests_per_second_per_app, cfg.limits.burst_per_app),
            metrics=self.metrics,
            accept_simulator=accepts_simulator(cfg.tee),
            chain_problem=self._chain_problem,
        )
        # Every node lends partials to a member serving a dstack guest of an opted-in app;
        # only nodes with `listen.dstack_kms` serve guests themselves (docs/dstack-kms.md).
        self.dstack = DstackKmsService(
            authorizer=authorizer,
            shares=self.epochs.share_for,
            roots=self.roots.get,
            fetch=self.peer_client.dstack_app_partial,
            opt_in=chain_opt_in(self.client),
            config=cfg.dstack_kms,
            accept_simulator=accepts_simulator(cfg.tee),
            attest_keys=self._attest_report_data,
        )

    def _attest_report_data(self, report_data: bytes) -> bytes:
        """This node's attestation (dstack's SCALE form) of `report_data`."""
        quote = self.provider.get_quote(report_data)
        return encode_attestation(quote, self.provider.event_log(), report_data, "")

    def _chain_problem(self) -> str | None:
        """Set while the RPC endpoints disagree (details in the log, not for clients)."""
        if self.watcher.disagreement is None:
            return None
        return "the node's RPC endpoints disagree about the chain (no quorum)"

    def _rpc_divergence(self, report: Divergence) -> None:
        """An RPC endpoint answered against the quorum or is stale (`contracts._quorum`);
        the endpoint's URL is redacted there."""
        log.warning(
            "rpc_diverged",
            endpoint=report.endpoint,
            method=report.method,
            block=report.block,
            detail=report.detail,
            suppressed=report.suppressed,
        )
        self.metrics.rpc_diverged.labels(report.endpoint).inc(1 + report.suppressed)

    def _rpc_diverged(self) -> tuple[str, ...]:
        if self.quorum is None:
            return ()
        return tuple(self.quorum.diverged_since(time.monotonic() - DIVERGED_WINDOW))

    def status(self) -> NodeStatus:
        view = self.watcher.view
        found = self.epochs.share_for(0)
        epoch_status = self.epochs.status()
        return NodeStatus(
            health=self._health.name,
            chain_head=view.head if view else 0,
            chain_head_age_seconds=int(view.head_age(time.time())) if view else 0,
            generation=found[0].generation if found else 0,
            epoch=found[0].epoch if found else 0,
            my_index=found[1].member if found else 0,
            peers_reachable=self._peers_reachable(),
            epoch_phase=epoch_status.phase,
        )

    def _health_inputs(self) -> HealthInputs:
        view = self.watcher.view
        found = self.epochs.share_for(0)
        committee = found[0] if found else None
        return HealthInputs(
            has_share=found is not None,
            chain_head_age=view.head_age(time.time()) if view else float("inf"),
            max_head_age=self.config.chain.max_head_age_seconds,
            members=len(committee.members) if committee else 0,
            threshold=committee.threshold if committee else 1,
            peers_reachable=self._peers_reachable(),
            draining=self._draining.is_set(),
            chain_disagreement=self.watcher.disagreement is not None,
            rpc_diverged=self._rpc_diverged(),
        )

    def _committee_members(self) -> tuple[NodeRecord, ...]:
        found = self.epochs.share_for(0)
        return found[0].members if found else ()

    def _peers_reachable(self) -> int:
        """Other committee members whose health probe answered in the last few seconds
        (`node.liveness`): what the node can do now, not what it could a minute ago."""
        return self.liveness.answering()

    def _epoch_status(self, epoch: int) -> EpochStatusReply:
        phase, opened = self.epochs.progress(epoch)
        return EpochStatusReply(epoch=epoch, phase=phase, deals_received_from=opened)

    def report(self) -> HealthReport:
        found = self.epochs.share_for(0)
        return HealthReport(
            health=self._health.name,
            reason=self._health_reason,
            epoch=found[0].epoch if found else 0,
            generation=found[0].generation if found else 0,
        )

    def _health_note(self) -> bytes:
        """GetHealthNote: this node's health, signed with its TLS key (docs/relay.md)."""
        return signed_health(
            self.watcher.view, self.identity.eth_address, self.report(), self.identity.tls_key
        )

    async def _health_loop(self, servicer: health.aio.HealthServicer) -> None:
        serving_self: bool | None = None
        while True:
            inputs = self._health_inputs()
            value, reason = compute_health(inputs)
            if (value, reason) != (self._health, self._health_reason):
                # reasons hold no ages, so this logs transitions only (node.health)
                log.info("health_changed", health=value.name, reason=reason)
            self._health, self._health_reason = value, reason
            self.metrics.health.set(int(value))
            self.metrics.peers_reachable.set(inputs.peers_reachable)
            can_serve = own_problem(inputs) is None
            if can_serve != serving_self:  # what the other members' probes ask (node.liveness)
                await servicer.set(
                    SELF_SERVICE,
                    health_pb2.HealthCheckResponse.SERVING
                    if can_serve
                    else health_pb2.HealthCheckResponse.NOT_SERVING,
                )
                serving_self = can_serve
            view = self.watcher.view
            if view is not None:
                self.metrics.chain_head.set(view.head)
                self.metrics.chain_lag.set(view.head_age(time.time()))
            serving = (
                health_pb2.HealthCheckResponse.SERVING
                if value is not Health.DOWN
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await servicer.set(KMS_SERVICE, serving)
            await servicer.set("", serving)
            # every second, and at once when a member starts or stops answering
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.liveness.changed.wait(), 1.0)
            self.liveness.changed.clear()

    async def _reattest(self) -> bytes:
        from attest import event_log_to_json

        quote = self.provider.get_quote(self.identity.report_data())
        return evidence_hash(quote, event_log_to_json(self.provider.event_log()))

    async def drain(self) -> None:
        if self._draining.is_set():
            return
        log.info("node_draining")
        self._draining.set()

    # -- run ----------------------------------------------------------------------------

    async def run(self, started: asyncio.Future[RunningNode] | None = None) -> None:
        cfg = self.config
        self._build()
        configure_logging(cfg.log_format, cfg.log_level, node=self.identity.eth_account.address)

        public = grpc.aio.server(
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 2 * 1024 * 1024)]
        )
        kms_pb2_grpc.add_KmsServicer_to_server(  # type: ignore[no-untyped-call]
            KmsServicer(
                authorizer=self.authorizer,
                shares=self.epochs.share_for,
                metrics=self.metrics,
                max_keys=cfg.limits.max_keys_per_request,
                env_policy=chain_env_policy(self.client),
                roots=self.roots.get,
                health_note=self._health_note,
            ),
            public,
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, public)
        reflection.enable_server_reflection(
            (KMS_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), public
        )
        host, port = _split(cfg.listen.public)
        # TLS with the node's RA-TLS certificate: guests pin it to the TLS key hash this node
        # registered, so answers are authenticated to it (docs/node-design.md).
        try:
            kms_port = public.add_secure_port(
                f"{host}:{port}", grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)])
            )
        except RuntimeError:  # grpc raises when the address is taken (older versions: 0)
            kms_port = 0
        if kms_port == 0:
            raise ConfigError("listen.public", f"cannot bind {cfg.listen.public}")

        peer = self.peer_server = PeerServer(
            identity=self.identity,
            cert_pem=self.cert_pem,
            key_pem=self.key_pem,
            view=lambda: self.watcher.view,
            epoch_status=self._epoch_status,
            roster=chain_roster(self.client),
            root_partial=self.roots.partial_for,
            app_partial=self.dstack.app_partial,
            kms_allowed=self._kms_allowed,
            accept_simulator=accepts_simulator(self.config.tee),
        )
        peer_port = await peer.start(cfg.listen.peer)

        admin = grpc.aio.server()
        admin_pb2_grpc.add_AdminServicer_to_server(  # type: ignore[no-untyped-call]
            AdminServicer(status=self.status, reattest=self._reattest, drain=self.drain), admin
        )
        socket_path = cfg.admin_socket
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        admin.add_insecure_port(f"unix:{socket_path}")

        dstack_server: DstackKmsServer | None = None
        dstack_port = 0
        if cfg.listen.dstack_kms:
            dstack_server = DstackKmsServer(
                self.dstack,
                identity=self.identity,
                node_cert_pem=self.cert_pem,
                server_names=_server_names(cfg),
            )
            try:
                dstack_port = await dstack_server.start(cfg.listen.dstack_kms)
            except OSError as exc:
                raise ConfigError("listen.dstack_kms", f"cannot bind: {exc.strerror}") from None

        mhost, mport = _split(cfg.listen.metrics)
        http = StatusHttpServer(mhost, mport, self.report, self.metrics.render)

        await public.start()
        await admin.start()
        socket_path.chmod(0o600)
        http.start()
        running = RunningNode(
            kms_port=kms_port,
            peer_port=peer_port,
            status_port=http.port,
            address=self.identity.eth_account.address,
            dstack_kms_port=dstack_port,
        )
        log.info(
            "node_started",
            kms_port=kms_port,
            peer_port=peer_port,
            status_port=http.port,
            dstack_kms_port=dstack_port,
        )
        if started is not None:
            started.set_result(running)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.watcher.run())
                tg.create_task(self.epochs.run())
                tg.create_task(peer.run())
                tg.create_task(self._health_loop(health_servicer))
                tg.create_task(self.liveness.run())
                tg.create_task(self._wait_for_drain(public, admin, peer, health_servicer))
        except* _Stopped:
            pass
        finally:
            http.stop()
            if dstack_server is not None:
                await dstack_server.stop()
            await self.peer_client.close()
            self.journal.close()
            if self.quorum is not None:
                self.quorum.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            log.info("node_stopped")

    def _kms_allowed(self, evidence: Any) -> None:
        from node.authz import boot_info
        from node.errors import Unauthenticated

        view = self.watcher.view
        if view is None:
            raise Unauthenticated("no chain view: cannot check the peer's KMS measurement")
        decision = self.client.is_kms_allowed(boot_info(evidence), block=view.head)
        if not decision.allowed:
            raise Unauthenticated(f"peer KMS measurement not allowed: {decision.reason}")

    async def _wait_for_drain(
        self,
        public: grpc.aio.Server,
        admin: grpc.aio.Server,
        peer: PeerServer,
        servicer: health.aio.HealthServicer,
    ) -> None:
        await self._draining.wait()
        await servicer.enter_graceful_shutdown()
        await asyncio.gather(public.stop(GRACE_SECONDS), peer.stop(GRACE_SECONDS), admin.stop(1.0))
        raise _Stopped


class _Stopped(Exception):
    """Raised inside the task group to stop every task after a drain."""


def run_node_blocking(config: NodeConfig) -> int:
    """Run a node until SIGTERM/SIGINT; returns the process exit status.

    With `log_format = "json"` every line the process writes to stderr is JSON: native
    output (gRPC core) is captured into JSON events (`node.logs`), a clear error (what the
    CLI would print as "tkms node: ...") is logged as `node_failed`, and an unexpected one as
    `node_crashed` with its traceback in a field rather than printed.
    """
    from attest import AttestError
    from contracts import ContractsError

    native: NativeStderr | None = None
    if config.log_format == "json":
        native = capture_native_stderr()
    configure_logging(config.log_format, config.log_level)
    try:
        return _run(config)
    except (NodeError, ContractsError, AttestError, FileNotFoundError, ValueError) as exc:
        if native is None:
            raise  # the CLI prints it
        log.error("node_failed", reason=str(exc))
        return EXIT_FAILED
    except Exception:
        if native is None:
            raise
        log.exception("node_crashed", action="see the traceback in this event; restart")
        return EXIT_SOFTWARE
    finally:
        if native is not None:
            native.close()


def _run(config: NodeConfig) -> int:
    node = Node(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(node.drain()))
        await node.run()

    try:
        asyncio.run(main())
    except (StorageError, BaseExceptionGroup) as exc:
        failure = _storage_failure(exc)
        if failure is None:
            raise
        # Fail-stop: a node that cannot journal must not go on publishing; the journal
        # resumes its in-flight epochs once the data directory is writable again.
        log.error("node_failed", reason=str(failure), action="fix the data directory, restart")
        return EXIT_STORAGE
    return 0


def _storage_failure(exc: BaseException) -> StorageError | None:
    """The StorageError that stopped the node, found inside the task groups' wrapping."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _storage_failure(inner)
            if found is not None:
                return found
    return None
