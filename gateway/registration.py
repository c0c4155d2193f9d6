"""CVM registration (design §8): check evidence and on-chain approval, then route to the CVM.

A registration is the serialized `tkms.v1.Registration` (base domain, backend host, issue time,
the CVM's TLS key hash, a nonce) plus evidence whose report_data is
SHA-512("tkms-gateway:v1:" || SHA-256(registration)). The gateway checks, in order, cheapest
first, and reads the chain only for a registration whose evidence verified:

1. the registration parses and names this gateway; its host is an IP address the gateway may
   relay to (`gateway.backends`); it carries a 32-byte key hash and a 16-byte nonce;
2. it is fresh: issued at most `freshness` seconds ago and at most `max_skew` seconds ahead;
3. the evidence verifies (quote signature, event-log replay, identity, binding to these bytes),
   with no chain read; the app has 20-byte app and instance ids;
4. the same bytes were not accepted before within the freshness window (replay cache);
5. the chain view is recent (`gateway.chain`; else UNAVAILABLE), a simulator quote is refused
   unless governance allows simulators there, and governance approves the app at that head.

Only then is the route recorded, for `ttl` seconds: the app id and the gateway instance id, both
from the verified evidence (the instance id derived from the measured one and the app id,
`names.instance_route_id`), to the host, with the TLS key the proxy will accept there. What was
approved (boot info, simulator or not) is kept beside the route so that the revocation watch
can ask again. Refusals say which step failed; nothing is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError

from attest import (
    AllOf,
    AttestError,
    BindingLabel,
    Collateral,
    EvidenceError,
    SimulatorAllowed,
    VerifiedEvidence,
    default_policy,
    is_simulator_quote,
    make_quote_verifier,
    verify_evidence,
)
from contracts import AppBootInfo
from gateway.backend_tls import KEY_HASH_BYTES
from gateway.backends import BackendPolicy, BackendRefused, parse_host
from gateway.chain import ChainUnavailable, GovernanceView
from gateway.limits import RateLimit, ThrottledLog, client_of
from gateway.names import ID_BYTES, app_name, instance_name, instance_route_id
from gateway.table import Registration, RouteTable
from protos.tkms.v1 import gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger("tkms.gateway.registration")


NONCE_BYTES = 16


class RegistrationRefused(Exception):
    """A registration that was not recorded; `code` is the gRPC status to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def registration_digest(registration: bytes) -> bytes:
    """What the CVM's report_data binds under `tkms-gateway:v1:` (SHA-256 of the bytes)."""
    return hashlib.sha256(registration).digest()


def boot_info(evidence: VerifiedEvidence) -> AppBootInfo:
    """What governance judges: the evidence's app identity and TCB (as the KMS nodes do)."""
    identity = evidence.identity
    if identity is None:
        raise RegistrationRefused(
            grpc.StatusCode.PERMISSION_DENIED, "identity: the event log has no dstack app identity"
        )
    vq = evidence.verified_quote
    return AppBootInfo(
        app_id="0x" + identity.app_id.hex(),
        compose_hash=identity.compose_hash,
        instance_id="0x" + (identity.instance_id or bytes(20)).hex(),
        device_id=identity.device_id or bytes(32),
        mr_aggregated=identity.mr_aggregated,
        mr_system=identity.mr_system or bytes(32),
        os_image_hash=identity.os_image_hash or bytes(32),
        tcb_status=vq.tcb_status,
        advisory_ids=tuple(vq.advisory_ids),
    )


@dataclass(frozen=True, slots=True)
class Approval:
    """What governance approved for a route: the boot info, and whether by a simulator quote."""

    info: AppBootInfo
    simulated: bool


class ReplayCache:
    """Digests of accepted registrations until their freshness window closes (thread-safe)."""

    def __init__(self, clock: Callable[[], float], limit: int = 100_000) -> None:
        self._clock = clock
        self._limit = limit
        self._until: OrderedDict[bytes, float] = OrderedDict()  # in order of insertion
        self._lock = threading.Lock()

    def claim(self, digest: bytes, until: float) -> bool:
        """Remember `digest` until `until`; False if it is already remembered."""
        with self._lock:
            now = self._clock()
            while self._until and (
                next(iter(self._until.values())) <= now or len(self._until) >= self._limit
            ):
                self._until.popitem(last=False)
            expiry = self._until.get(digest)
            if expiry is not None and expiry > now:
                return False
            self._until[digest] = until
            return True


@dataclass
class Registrar:
    """Judges registrations and records the accepted ones in `table`."""

    base_domain: str
    table: RouteTable
    chain: GovernanceView
    ttl: float = 300.0
    freshness: float = 120.0
    max_skew: float = 10.0
    backends: BackendPolicy = field(default_factory=BackendPolicy)
    collateral: Collateral | None = None
    clock: Callable[[], float] = time.time
    #: What was approved per gateway instance id, for the revocation watch (event loop only).
    approvals: dict[bytes, Approval] = field(default_factory=dict)
    replays: ReplayCache = field(init=False)

    def __post_init__(self) -> None:
        self.replays = ReplayCache(self.clock)

    def _parse(self, raw: bytes) -> tuple[gateway_pb2.Registration, str]:
        registration = gateway_pb2.Registration()
        try:
            registration.ParseFromString(raw)
        except DecodeError as exc:
            raise RegistrationRefused(
                grpc.StatusCode.INVALID_ARGUMENT, f"registration: not a tkms.v1.Registration: {exc}"
            ) from None
        if registration.base_domain.lower().rstrip(".") != self.base_domain:
            raise RegistrationRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"registration: for base domain {registration.base_domain[:80]!r}, "
                f"this gateway serves {self.base_domain!r}",
            )
        try:
            address = parse_host(registration.host)
        except ValueError as exc:
            raise RegistrationRefused(
                grpc.StatusCode.INVALID_ARGUMENT, f"registration: {exc}"
            ) from None
        try:
            self.backends.check(address)
        except BackendRefused as exc:
            raise RegistrationRefused(
                grpc.StatusCode.PERMISSION_DENIED, f"backend: {exc}"
            ) from None
        for name, value, size in (
            ("tls_key_sha256", registration.tls_key_sha256, KEY_HASH_BYTES),
            ("nonce", registration.nonce, NONCE_BYTES),
        ):
            if len(value) != size:
                raise RegistrationRefused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"registration: {name} must be {size} bytes, got {len(value)}",
                )
        age = self.clock() - registration.issued_at
        if age > self.freshness or -age > self.max_skew:
            window = f"window {self.freshness:.0f}s back, {self.max_skew:.0f}s ahead"
            when = f"{age:.0f}s ago" if age >= 0 else f"{-age:.0f}s ahead"
            raise RegistrationRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"registration: issued_at is {when} ({window})",
            )
        return registration, str(address)

    def _verify(self, request: gateway_pb2.RegisterRequest) -> VerifiedEvidence:
        """Steps 3: the evidence alone, no chain read. Simulator quotes are checked in full
        here and judged against governance's flag in step 5."""
        checks = [*default_policy().checks, SimulatorAllowed()]
        verifier = make_quote_verifier(
            now=int(self.clock()), policy=AllOf(checks), collateral=self.collateral
        )
        try:
            return verify_evidence(
                request.quote,
                request.event_log,
                verify_quote=verifier,
                binding=(BindingLabel.GATEWAY_V1, registration_digest(request.registration)),
                vm_config=request.vm_config or None,
            )
        except EvidenceError as exc:
            raise RegistrationRefused(
                grpc.StatusCode.PERMISSION_DENIED, f"{exc.step}: {exc.cause}"
            ) from None
        except AttestError as exc:
            raise RegistrationRefused(
                grpc.StatusCode.PERMISSION_DENIED, f"evidence: {exc}"
            ) from None

    def _approve(self, info: AppBootInfo, simulated: bool) -> None:
        """Step 5: the chain view's simulator flag and governance's approval at its head."""
        try:
            state = self.chain.current()
        except ChainUnavailable as exc:
            raise RegistrationRefused(grpc.StatusCode.UNAVAILABLE, f"chain: {exc}") from None
        if simulated and not state.simulator_allowed:
            raise RegistrationRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"quote: simulator quote, but governance does not allow simulators "
                f"(block {state.head})",
            )
        try:
            decision = self.chain.is_app_allowed(info, state.head)
        except Exception as exc:  # a chain we cannot read must not admit anyone
            # The transport's error text may carry the RPC URL, where providers put API keys:
            # the remote CVM gets the kind of failure only, the operator's log the text.
            log.warning("governance_unreadable", app_id=info.app_id, error=str(exc))
            raise RegistrationRefused(
                grpc.StatusCode.UNAVAILABLE,
                f"chain: cannot ask governance about {info.app_id} "
                f"({type(exc).__name__}; see the gateway's log)",
            ) from None
        if not decision.allowed:
            raise RegistrationRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"approval: app {info.app_id}: {decision.reason or 'not allowed'}",
            )

    def judge(
        self, request: gateway_pb2.RegisterRequest
    ) -> tuple[Registration, Approval, gateway_pb2.RegisterResponse]:
        """Judge `request` (blocking: evidence and chain); the route to record, what was
        approved, and the reply."""
        registration, host = self._parse(request.registration)
        evidence = self._verify(request)
        info = boot_info(evidence)
        assert evidence.identity is not None  # boot_info refused a missing identity
        app_id, measured = evidence.identity.app_id, evidence.identity.instance_id
        if len(app_id) != ID_BYTES or len(measured) != ID_BYTES:
            raise RegistrationRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"identity: app-id and instance-id must be {ID_BYTES}-byte events, the event "
                f"log has {len(app_id)} and {len(measured)} bytes (an app measured without an "
                "instance id cannot be routed)",
            )
        digest = registration_digest(request.registration)
        if not self.replays.claim(digest, registration.issued_at + self.freshness):
            raise RegistrationRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                "replay: this registration was already accepted (register anew)",
            )
        simulated = is_simulator_quote(evidence.verified_quote.quote)
        self._approve(info, simulated)
        route_id = instance_route_id(app_id, measured)
        expires_at = self.clock() + self.ttl
        names = [app_name(app_id, self.base_domain), instance_name(route_id, self.base_domain)]
        reply = gateway_pb2.RegisterResponse(
            app_id=app_id, instance_id=measured, expires_at=int(expires_at), names=names
        )
        route = Registration(app_id, route_id, host, expires_at, registration.tls_key_sha256)
        return route, Approval(info, simulated), reply

    def record(self, route: Registration, approval: Approval) -> None:
        """Put an accepted registration in the table (on the table's event loop)."""
        try:
            self.table.upsert(route)
        except ValueError as exc:
            raise RegistrationRefused(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from None
        self.approvals[route.instance_id] = approval
        log.info(
            "cvm_registered",
            app_id=route.app_id.hex(),
            instance=route.instance_id.hex(),
            host=route.host,
        )

    def register(self, request: gateway_pb2.RegisterRequest) -> gateway_pb2.RegisterResponse:
        """`judge` then `record`, in one call (for callers that own the table's thread)."""
        route, approval, reply = self.judge(request)
        self.record(route, approval)
        return reply


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    """`tkms.v1.Gateway` over a `Registrar`; evidence and chain work runs off the event loop.

    `Register` calls are rate limited per peer (`peer_limit`; an IPv4 address or IPv6 /64):
    each costs a quote verification, and an approved one a chain read."""

    def __init__(
        self,
        registrar: Registrar,
        *,
        proxy_port: Callable[[], int],
        app_id: bytes,
        peer_limit: RateLimit | None = None,
    ) -> None:
        self._registrar = registrar
        self._proxy_port = proxy_port
        self._app_id = app_id
        self._peer_limit = peer_limit or RateLimit(rate=2.0, burst=20)
        self._log = ThrottledLog(log, RateLimit(rate=1.0, burst=20))

    async def Register(
        self, request: gateway_pb2.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb2.RegisterResponse:
        try:
            peer = client_of(_peer_host(context.peer()))
            if not self._peer_limit.allow(peer):
                raise RegistrationRefused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"rate: more than {self._peer_limit.rate:g} registrations per second "
                    f"from {peer[:60]}; retry later",
                )
            route, approval, reply = await asyncio.to_thread(self._registrar.judge, request)
            self._registrar.record(route, approval)
            return reply
        except RegistrationRefused as exc:
            self._log.info("registration_refused", code=exc.code.name, reason=str(exc))
            await context.abort(exc.code, str(exc))
            raise AssertionError("unreachable: abort raises") from None

    async def Info(
        self, request: gateway_pb2.InfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb2.InfoResponse:
        return gateway_pb2.InfoResponse(
            base_domain=self._registrar.base_domain,
            proxy_port=self._proxy_port(),
            registration_ttl_seconds=int(self._registrar.ttl),
            app_id=self._app_id,
        )


def _peer_host(peer: str) -> str:
    """The address part of a gRPC peer string (`ipv4:1.2.3.4:5`, `ipv6:[::1]:5`, ...)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].partition("]")[0]
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return peer
