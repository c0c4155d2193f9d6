"""The `Peer` gRPC service over mutual RA-TLS, and the gate in front of it (design §6.4).

grpcio has no custom certificate verifier, so authentication has two layers:

* TLS: `grpc.dynamic_ssl_server_credentials` with client authentication required and, as
  trust roots, the certificates of the registered nodes, each fetched from the node's peer
  endpoint and verified (`node.ratls`) before it is added (`node.ratls.TrustBundle`, refreshed by
  `PeerServer.run` when the registry changes, periodically, and sooner while a peer is
  missing). A caller whose certificate is not in the bundle fails the handshake.
* Call: `PeerAuthInterceptor` wraps every handler; it re-verifies the certificate the caller
  presented (`auth_context()["x509_pem_cert"]`) against the current chain view, then checks
  the request: an `EpochStatus` must come from a dealer or member of the epoch it asks about,
  a `KmsRootPartial` or `DstackAppPartial` from a member of the epoch it names (the servicer
  then checks that the epoch is the generation's active one here: only the committee gathers
  the KMS root, or an opted-in app's keys for a dstack guest, and for the latter it also
  authorizes the guest's own evidence, `node.dstack_service`).

Shares never travel here: dealers put their sealed shares on chain with their deals.

Every refusal is logged as ``peer_refused`` with the peer and the reason, and answered with
the error's gRPC code and the same reason.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import grpc
from grpc import aio

from attest import Collateral, Policy, default_policy
from contracts import GovernanceClient
from node.chainview import RPC_ERRORS
from node.errors import NodeError, NotReady, Unauthenticated
from node.identity import NodeIdentity
from node.logs import get_logger
from node.ratls import (
    KmsAllowed,
    PeerRecord,
    PeerRegistry,
    PeerVerifier,
    TrustBundle,
    Trusted,
    fetch_context,
    fetch_peer_certificate,
)
from protos.tkms.v1 import kms_pb2, peer_pb2, peer_pb2_grpc

__all__ = [
    "CURRENT_PEER",
    "EpochRoster",
    "EpochStatusReply",
    "PeerAuthInterceptor",
    "PeerGate",
    "PeerServer",
    "PeerServicer",
    "AppPartialFn",
    "RootPartialFn",
    "chain_roster",
]

log = get_logger("tkms.node.peer")

STATUS_METHOD = "/tkms.v1.Peer/EpochStatus"
ROOT_METHOD = "/tkms.v1.Peer/KmsRootPartial"
DSTACK_METHOD = "/tkms.v1.Peer/DstackAppPartial"
#: A DstackAppPartial request carries a guest's certificate and VM config (64 KiB each at most).
MAX_MESSAGE = 160 * 1024

#: The authenticated peer of the call being handled (set by `PeerAuthInterceptor`).
CURRENT_PEER: contextvars.ContextVar[PeerRecord] = contextvars.ContextVar("tkms_peer")


@dataclass(frozen=True, slots=True)
class EpochRoster:
    """Who takes part in an epoch: addresses, dealer k is dealers[k-1], member k members[k-1]."""

    epoch: int
    dealers: tuple[bytes, ...]
    members: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class EpochStatusReply:
    """What this node knows about an epoch (the `EpochStatus` answer)."""

    epoch: int
    phase: str
    deals_received_from: tuple[int, ...]


ViewSource = Callable[[], PeerRegistry[PeerRecord] | None]
StatusFn = Callable[[int], EpochStatusReply]
RosterFn = Callable[[int], EpochRoster | None]
#: (generation, epoch, requester key) -> our encrypted partial of the KMS root (node.kms_root).
RootPartialFn = Callable[[int, int, bytes], kms_pb2.Partial]
#: (generation, epoch, requester key, guest certificate DER, vm_config) -> our encrypted
#: partial of the guest's app seed (node.dstack_service, after it authorized the guest).
AppPartialFn = Callable[[int, int, bytes, bytes, str], Awaitable[kms_pb2.Partial]]


def _hex(address: bytes) -> str:
    return "0x" + address.hex()


class PeerGate:
    """Authenticates a call's certificate and authorizes its request (module docstring)."""

    def __init__(self, *, view: ViewSource, verifier: PeerVerifier, roster: RosterFn) -> None:
        self._view, self._verifier, self._roster = view, verifier, roster

    async def admit(
        self, method: str, request: Any, context: aio.ServicerContext[Any, Any]
    ) -> PeerRecord:
        """The caller's registry record, or abort the call (and log ``peer_refused``)."""
        who = context.peer()
        try:
            view = self._view()
            if view is None:
                raise NotReady("no chain view yet")
            pems = list(context.auth_context().get("x509_pem_cert", ()))
            if not pems:
                raise Unauthenticated("certificate: the caller presented no client certificate")
            record = await asyncio.to_thread(self._verifier.verify, pems[0], view)
            who = f"{_hex(record.address)} ({who})"
            await self._authorize(method, request, record)
        except NodeError as exc:
            log.warning("peer_refused", peer=who, method=method, reason=str(exc))
            await _abort(context, exc, f"peer refused: {exc}")
        except Exception as exc:  # a bug or an unforeseen input: refuse, never let it through
            reason = f"internal error while authenticating ({type(exc).__name__})"
            log.error("peer_refused", peer=who, method=method, reason=reason)
            await _abort(context, NodeError(), f"peer refused: {reason}")
        return record

    async def _authorize(self, method: str, request: Any, record: PeerRecord) -> None:
        if method not in (STATUS_METHOD, ROOT_METHOD, DSTACK_METHOD):
            raise Unauthenticated(f"authorization: no rule for method {method}")
        epoch = int(request.epoch)
        roster = await asyncio.to_thread(self._roster, epoch)
        if roster is None:
            raise NotReady(f"epoch {epoch} is not known to this node (yet)")
        me = record.address
        if method in (ROOT_METHOD, DSTACK_METHOD):
            if me not in roster.members:
                what = "the KMS root" if method == ROOT_METHOD else "an app's keys"
                raise Unauthenticated(
                    f"authorization: {_hex(me)} is not a member of epoch {epoch}: only the "
                    f"committee gathers {what}"
                )
        elif me not in roster.dealers and me not in roster.members:
            raise Unauthenticated(
                f"authorization: {_hex(me)} is neither a dealer nor a member of epoch {epoch}"
            )


async def _abort(context: aio.ServicerContext[Any, Any], exc: NodeError, message: str) -> NoReturn:
    await context.abort(exc.grpc_code, message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


Behavior = Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]]


class PeerAuthInterceptor(aio.ServerInterceptor):
    """Runs `PeerGate.admit` before every unary handler and binds `CURRENT_PEER`."""

    def __init__(self, gate: PeerGate) -> None:
        self._gate = gate

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method, gate = handler_call_details.method, self._gate
        if handler is None:
            return None  # unknown method: grpc answers UNIMPLEMENTED
        if handler.unary_unary is None:  # fail closed should a streaming method ever appear

            async def refuse(request: bytes, context: aio.ServicerContext[Any, Any]) -> None:
                reason = f"authorization: no rule for streaming method {method}"
                log.warning("peer_refused", peer=context.peer(), method=method, reason=reason)
                await _abort(context, Unauthenticated(), f"peer refused: {reason}")

            return grpc.unary_unary_rpc_method_handler(refuse)
        inner = cast(Behavior, handler.unary_unary)

        async def guarded(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            peer = await gate.admit(method, request, context)
            token = CURRENT_PEER.set(peer)
            try:
                return await inner(request, context)
            finally:
                CURRENT_PEER.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class PeerServicer(peer_pb2_grpc.PeerServicer):
    """Decodes, calls the epoch manager, encodes; node errors become their gRPC codes."""

    def __init__(
        self,
        *,
        epoch_status: StatusFn,
        root_partial: RootPartialFn | None = None,
        app_partial: AppPartialFn | None = None,
    ) -> None:
        self._status, self._root_partial = epoch_status, root_partial
        self._app_partial = app_partial

    async def EpochStatus(
        self, request: peer_pb2.EpochStatusRequest, context: aio.ServicerContext[Any, Any]
    ) -> peer_pb2.EpochStatusResponse:
        peer = _hex(CURRENT_PEER.get().address)
        try:
            reply = self._status(request.epoch)
        except NodeError as exc:
            await _abort(context, exc, f"epoch status for {peer}: {exc}")
        except Exception as exc:
            log.error(
                "peer_handler_failed", peer=peer, method="EpochStatus", error=type(exc).__name__
            )
            await _abort(context, NodeError(), f"epoch status for {peer}: internal error")
        return peer_pb2.EpochStatusResponse(
            epoch=reply.epoch, phase=reply.phase, deals_received_from=reply.deals_received_from
        )

    async def KmsRootPartial(
        self, request: peer_pb2.KmsRootPartialRequest, context: aio.ServicerContext[Any, Any]
    ) -> peer_pb2.KmsRootPartialResponse:
        peer = _hex(CURRENT_PEER.get().address)
        g = request.generation
        try:
            if self._root_partial is None:
                raise NotReady("this node does not serve KMS root partials")
            partial = await asyncio.to_thread(
                self._root_partial, g, request.epoch, bytes(request.requester_key)
            )
        except NodeError as exc:
            log.warning("kms_root_partial_refused", peer=peer, generation=g, reason=str(exc))
            await _abort(context, exc, f"KMS root partial for {peer}: {exc}")
        except Exception as exc:
            log.error(
                "peer_handler_failed", peer=peer, method="KmsRootPartial", error=type(exc).__name__
            )
            await _abort(context, NodeError(), f"KMS root partial for {peer}: internal error")
        log.info("kms_root_partial_sent", peer=peer, generation=g, epoch=request.epoch)
        return peer_pb2.KmsRootPartialResponse(partial=partial)

    async def DstackAppPartial(
        self, request: peer_pb2.DstackAppPartialRequest, context: aio.ServicerContext[Any, Any]
    ) -> peer_pb2.DstackAppPartialResponse:
        peer = _hex(CURRENT_PEER.get().address)
        g = request.generation
        try:
            if self._app_partial is None:
                raise NotReady("this node does not serve dstack app partials")
            partial = await self._app_partial(
                g,
                request.epoch,
                bytes(request.requester_key),
                bytes(request.client_certificate),
                request.vm_config,
            )
        except NodeError as exc:
            log.warning("dstack_app_partial_refused", peer=peer, generation=g, reason=str(exc))
            await _abort(context, exc, f"dstack app partial for {peer}: {exc}")
        except Exception as exc:
            log.error(
                "peer_handler_failed",
                peer=peer,
                method="DstackAppPartial",
                error=type(exc).__name__,
            )
            await _abort(context, NodeError(), f"dstack app partial for {peer}: internal error")
        log.info("dstack_app_partial_sent", peer=peer, generation=g, epoch=request.epoch)
        return peer_pb2.DstackAppPartialResponse(partial=partial)


class PeerServer:
    """The peer port: a grpc.aio server with the dynamic mTLS bundle and the gate.

    `start()` binds (port 0 picks a free one) and returns the port; `run()` keeps the trust
    bundle current until cancelled; `stop()` shuts down.
    """

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        cert_pem: bytes,
        key_pem: bytes,
        view: ViewSource,
        epoch_status: StatusFn,
        roster: RosterFn,
        kms_allowed: KmsAllowed,
        accept_simulator: bool,
        root_partial: RootPartialFn | None = None,
        app_partial: AppPartialFn | None = None,
        policy: Policy | None = None,
        collateral: Collateral | None = None,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 1.0,
        refresh_interval: float = 10.0,
        reverify_interval: float = 60.0,
        retry_interval: float = 2.0,
        fetch_timeout: float = 3.0,
    ) -> None:
        self.address = identity.eth_address
        self._view = view
        self._verifier = PeerVerifier(
            policy=policy or default_policy(),
            kms_allowed=kms_allowed,
            accept_simulator=accept_simulator,
            collateral=collateral,
            clock=clock,
        )
        self.bundle = TrustBundle((cert_pem, key_pem))
        self._fetch_context = fetch_context(cert_pem, key_pem)
        self._gate = PeerGate(view=view, verifier=self._verifier, roster=roster)
        self._servicer = PeerServicer(
            epoch_status=epoch_status, root_partial=root_partial, app_partial=app_partial
        )
        self.poll_interval, self.refresh_interval = poll_interval, refresh_interval
        self.reverify_interval = reverify_interval
        self.retry_interval, self.fetch_timeout = retry_interval, fetch_timeout
        self._server: aio.Server | None = None
        self._problems: dict[bytes, tuple[str, str]] = {}  # last logged (event, reason)
        self.port = 0

    def reachable_count(self) -> int:
        """Trusted peers that answered the last refresh (a peer that stopped answering keeps
        its place in the bundle for a while, but does not count)."""
        return sum(1 for a in self.bundle.trusted() if a not in self._problems)

    async def start(self, listen: str = "127.0.0.1:0") -> int:
        """Bind `listen` (port 0: any free port) and serve; returns the bound port."""
        server = aio.server(
            interceptors=[PeerAuthInterceptor(self._gate)],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_MESSAGE)],
        )
        peer_pb2_grpc.add_PeerServicer_to_server(  # type: ignore[no-untyped-call]
            self._servicer, server
        )
        # grpc's stub says the fetcher never returns None; at run time None means "unchanged".
        fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], self.bundle.fetch)
        credentials = grpc.dynamic_ssl_server_credentials(
            self.bundle.configuration(), fetcher, require_client_authentication=True
        )
        self.port = server.add_secure_port(listen, credentials)
        if self.port == 0:
            raise NotReady(f"cannot bind the peer port {listen}")
        await server.start()
        self._server = server
        log.info("peer_server_started", listen=listen, port=self.port)
        return self.port

    async def stop(self, grace: float | None = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def refresh(self, *, force: bool = True) -> None:
        """Fetch, verify and trust the certificate of every registered peer (in parallel).

        A peer whose certificate fails verification is dropped and logged ``peer_refused``;
        one that cannot be reached keeps its previous certificate, if any, until it answers.
        Without `force`, a peer serving the very certificate it served before is verified
        again only once `reverify_interval` has passed (the gate checks every call anyway).
        """
        view = self._view()
        if view is None:
            return
        current = self.bundle.trusted()
        peers = [r for a, r in view.nodes.items() if a != self.address and r.peer_endpoint]
        results = await asyncio.gather(
            *(self._admit(r, view, current.get(r.address), force) for r in peers)
        )
        trusted = {t.address: t for t in results if t is not None}
        if self.bundle.replace(trusted):
            log.info("peer_trust_updated", peers=sorted(_hex(a) for a in trusted))

    async def _admit(
        self,
        record: PeerRecord,
        view: PeerRegistry[PeerRecord],
        old: Trusted | None,
        force: bool,
    ) -> Trusted | None:
        endpoint = record.peer_endpoint
        same = old is not None and (old.endpoint, old.tls_key_hash) == (
            endpoint,
            record.tls_key_hash,
        )
        try:
            try:
                pem = await fetch_peer_certificate(
                    endpoint, timeout=self.fetch_timeout, context=self._fetch_context
                )
                reached = True
            except NotReady as exc:
                if old is None or not same:
                    raise
                # keep what it served before (checked again below) until it answers again
                pem, reached = old.cert_pem, False
                self._note(record, "peer_unreachable", str(exc), stage="trust-bundle")
            now = time.monotonic()
            if (
                not force
                and same
                and old is not None
                and old.cert_pem == pem
                and now - old.verified_at < self.reverify_interval
            ):
                if reached:
                    self._problems.pop(record.address, None)
                return old
            owner = await asyncio.to_thread(self._verifier.verify, pem, view)
            if owner.address != record.address:
                raise Unauthenticated(
                    f"registry: {endpoint} serves the certificate of {_hex(owner.address)}"
                )
        except NotReady as exc:
            self._note(record, "peer_unreachable", str(exc), stage="trust-bundle")
            return old if same else None
        except NodeError as exc:
            self._note(record, "peer_refused", str(exc), stage="trust-bundle")
            return None
        if reached:
            self._problems.pop(record.address, None)
        return Trusted(record.address, endpoint, record.tls_key_hash, pem, now)

    def _note(self, record: PeerRecord, event: str, reason: str, **facts: str) -> None:
        """Log a peer's problem once, not at every retry, until it changes or goes away."""
        if self._problems.get(record.address) == (event, reason):
            return
        self._problems[record.address] = (event, reason)
        emit = log.warning if event == "peer_refused" else log.info
        emit(
            event, peer=_hex(record.address), endpoint=record.peer_endpoint, reason=reason, **facts
        )

    def _registry_key(self, view: PeerRegistry[PeerRecord]) -> object:
        nodes = sorted((r.address, r.peer_endpoint, r.tls_key_hash) for r in view.nodes.values())
        return (tuple(nodes), view.simulator_allowed)

    async def run(self) -> None:
        """Keep the bundle current: on registry change (full re-verification), every
        `refresh_interval` (a restarted peer serves a new certificate, which grpc will not
        accept until it is in the bundle), and every `retry_interval` while a registered peer
        is missing. Runs until cancelled."""
        loop = asyncio.get_running_loop()
        last: object = None
        due = 0.0
        while True:
            view = self._view()
            if view is not None:
                key = self._registry_key(view)
                if key != last or loop.time() >= due:
                    await self.refresh(force=key != last)
                    last = key
                    missing = set(view.nodes) - {self.address} - set(self.bundle.trusted())
                    wait = self.retry_interval if missing else self.refresh_interval
                    due = loop.time() + wait
            await asyncio.sleep(self.poll_interval)


def chain_roster(client: GovernanceClient) -> RosterFn:
    """A `RosterFn` reading an epoch's dealers and members from governance (blocking; the
    gate calls it in a thread). An epoch's lists never change once proposed, so they are
    cached; an epoch the chain does not know yet is not."""
    cache: dict[int, EpochRoster] = {}
    lock = threading.Lock()

    def roster(epoch: int) -> EpochRoster | None:
        with lock:
            if epoch in cache:
                return cache[epoch]
        if epoch <= 0:
            return None
        try:
            info = client.get_epoch(epoch)
        except RPC_ERRORS:
            return None  # unknown to us for now: the caller gets UNAVAILABLE and retries
        if not info.members:
            return None
        found = EpochRoster(
            epoch=epoch,
            dealers=tuple(bytes.fromhex(a.removeprefix("0x")) for a in info.dealers),
            members=tuple(bytes.fromhex(a.removeprefix("0x")) for a in info.members),
        )
        with lock:
            cache[epoch] = found
        return found

    return roster
