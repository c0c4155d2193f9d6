"""CVM registration (design §8): check evidence and on-chain approval, then route to the CVM.

A registration is the serialized `tkms.v1.Registration` (base domain, backend host, issue time)
plus evidence whose report_data is SHA-512("tkms-gateway:v1:" || SHA-256(registration)). The
gateway checks, in order: the registration parses and names this gateway, its host is an IP
address the gateway may relay to (`gateway.backends`), it is fresh, the evidence verifies
(quote, event-log replay, identity, binding to the registration), and governance allows the app
at the chain's head. Only then is the route recorded, for `ttl` seconds: the app id and the
gateway instance id, both from the verified evidence (the instance id derived from the measured
one and the app id, `names.instance_route_id`; nothing the CVM sends besides its evidence
decides them), to the host. Refusals say which step failed; nothing is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    make_quote_verifier,
    verify_evidence,
)
from contracts import AppBootInfo, AuthDecision
from gateway.backends import BackendPolicy, BackendRefused, parse_host
from gateway.names import ID_BYTES, app_name, instance_name, instance_route_id
from gateway.table import Registration, RouteTable
from protos.tkms.v1 import gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger("tkms.gateway.registration")


class Governance(Protocol):
    """The two governance reads registration needs (`contracts.GovernanceClient` has them)."""

    def get_simulator_allowed(self) -> bool: ...

    def is_app_allowed(self, info: AppBootInfo) -> AuthDecision: ...


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


@dataclass
class Registrar:
    """Judges registrations and records the accepted ones in `table`."""

    base_domain: str
    table: RouteTable
    governance: Governance
    ttl: float = 300.0
    freshness: float = 120.0
    backends: BackendPolicy = field(default_factory=BackendPolicy)
    collateral: Collateral | None = None
    clock: Callable[[], float] = time.time

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
        skew = abs(self.clock() - registration.issued_at)
        if skew > self.freshness:
            raise RegistrationRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"registration: issued_at is {skew:.0f}s from now (window {self.freshness:.0f}s)",
            )
        return registration, str(address)

    def _verify(self, request: gateway_pb2.RegisterRequest) -> VerifiedEvidence:
        try:
            simulator = self.governance.get_simulator_allowed()
        except Exception as exc:  # a chain we cannot read must not admit anyone
            raise RegistrationRefused(
                grpc.StatusCode.UNAVAILABLE, f"chain: cannot read governance: {exc}"
            ) from None
        checks = [*default_policy().checks, *([SimulatorAllowed()] if simulator else [])]
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

    def judge(
        self, request: gateway_pb2.RegisterRequest
    ) -> tuple[Registration, gateway_pb2.RegisterResponse]:
        """Judge `request` (blocking: evidence and chain); the route to record and the reply."""
        _, host = self._parse(request.registration)
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
        try:
            decision = self.governance.is_app_allowed(info)
        except Exception as exc:
            raise RegistrationRefused(
                grpc.StatusCode.UNAVAILABLE,
                f"chain: cannot ask governance about {info.app_id}: {exc}",
            ) from None
        if not decision.allowed:
            raise RegistrationRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"approval: app {info.app_id}: {decision.reason or 'not allowed'}",
            )
        route_id = instance_route_id(app_id, measured)
        expires_at = self.clock() + self.ttl
        names = [app_name(app_id, self.base_domain), instance_name(route_id, self.base_domain)]
        reply = gateway_pb2.RegisterResponse(
            app_id=app_id, instance_id=measured, expires_at=int(expires_at), names=names
        )
        return Registration(app_id, route_id, host, expires_at), reply

    def record(self, route: Registration) -> None:
        """Put an accepted registration in the table (on the table's event loop)."""
        try:
            self.table.upsert(route)
        except ValueError as exc:
            raise RegistrationRefused(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from None
        log.info(
            "cvm_registered",
            app_id=route.app_id.hex(),
            instance=route.instance_id.hex(),
            host=route.host,
        )

    def register(self, request: gateway_pb2.RegisterRequest) -> gateway_pb2.RegisterResponse:
        """`judge` then `record`, in one call (for callers that own the table's thread)."""
        route, reply = self.judge(request)
        self.record(route)
        return reply


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    """`tkms.v1.Gateway` over a `Registrar`; evidence and chain work runs off the event loop."""

    def __init__(
        self, registrar: Registrar, *, proxy_port: Callable[[], int], app_id: bytes
    ) -> None:
        self._registrar = registrar
        self._proxy_port = proxy_port
        self._app_id = app_id

    async def Register(
        self, request: gateway_pb2.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb2.RegisterResponse:
        try:
            route, reply = await asyncio.to_thread(self._registrar.judge, request)
            self._registrar.record(route)
            return reply
        except RegistrationRefused as exc:
            log.info("registration_refused", code=exc.code.name, reason=str(exc))
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
