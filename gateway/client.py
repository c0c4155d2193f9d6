"""The CVM side of registration: attest the gateway, then register (and keep registered).

The gateway's registration endpoint presents a self-signed RA-TLS certificate. The client reads
it before trusting anything, verifies its evidence (`verify_gateway` decides what is acceptable:
`default_gateway_check` takes the quote, replay and key binding, and the gateway's app id: any
app can serve an RA-TLS certificate and `tkms.v1.Gateway`, so only the expected app id tells the
real gateway from an impostor; None accepts any attested gateway, for development only), and
then pins exactly that certificate for the gRPC channel. The registration itself carries the
CVM's own evidence over the registration bytes (see gateway.registration), and names the TLS key
the CVM's ports serve: the gateway re-encrypts terminated connections to that key only.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attest import (
    AllOf,
    BindingLabel,
    SimulatorAllowed,
    VerifiedEvidence,
    compute_report_data,
    default_policy,
    make_quote_verifier,
    verify_ratls_certificate,
)
from gateway.registration import NONCE_BYTES, registration_digest
from protos.tkms.v1 import gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger("tkms.gateway.client")

#: The name the registration endpoint's certificate carries (clients override the target name).
GATEWAY_TLS_NAME = "registration.tkms-gateway"


class QuoteSource(Protocol):
    """Where the CVM's evidence comes from (`gateway.agent.GuestAgent` in a CVM)."""

    def get_quote(self, report_data: bytes) -> tuple[bytes, str, str]: ...


class GatewayUnavailable(Exception):
    """The gateway could not be reached, or its certificate's evidence did not verify."""


def fetch_certificate(endpoint: str, timeout: float = 5.0) -> bytes:
    """The DER certificate `endpoint` presents (unverified: the caller verifies its evidence)."""
    host, _, port = endpoint.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=GATEWAY_TLS_NAME) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError) as exc:
        raise GatewayUnavailable(f"gateway {endpoint}: {exc}") from None
    if not der:
        raise GatewayUnavailable(f"gateway {endpoint} presented no certificate")
    return der


def default_gateway_check(
    *, simulator_allowed: bool, app_id: bytes | None
) -> Callable[[bytes], VerifiedEvidence]:
    """Verify a gateway certificate's RA-TLS evidence and that it runs `app_id` (None: any
    attested app, for development only; the caller must decide that explicitly)."""

    def check(der: bytes) -> VerifiedEvidence:
        checks = [*default_policy().checks, *([SimulatorAllowed()] if simulator_allowed else [])]
        verifier = make_quote_verifier(now=int(time.time()), policy=AllOf(checks))
        evidence = verify_ratls_certificate(der, verify_quote=verifier)
        measured = evidence.identity.app_id if evidence.identity else None
        if app_id is not None and measured != app_id:
            got = measured.hex() if measured else "none"
            raise GatewayUnavailable(f"gateway runs app {got}, expected {app_id.hex()}")
        return evidence

    return check


@dataclass
class GatewayClient:
    """Registers this CVM (through its guest `agent`) with the gateway at `endpoint`."""

    endpoint: str
    agent: QuoteSource
    verify_gateway: Callable[[bytes], VerifiedEvidence]
    timeout: float = 10.0

    def _channel(self) -> grpc.Channel:
        der = fetch_certificate(self.endpoint, self.timeout)
        try:
            self.verify_gateway(der)
        except GatewayUnavailable:
            raise
        except Exception as exc:
            raise GatewayUnavailable(
                f"gateway {self.endpoint}: its certificate's evidence does not verify: {exc}"
            ) from None
        pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
        credentials = grpc.ssl_channel_credentials(root_certificates=pem)
        return grpc.secure_channel(
            self.endpoint,
            credentials,
            options=[("grpc.ssl_target_name_override", GATEWAY_TLS_NAME)],
        )

    def register(self, host: str, tls_key_sha256: bytes) -> gateway_pb2.RegisterResponse:
        """Register `host` as where the gateway reaches this CVM, whose ports serve the TLS key
        with this SPKI hash (`backend_tls.spki_sha256`); returns the names and expiry."""
        with self._channel() as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)  # type: ignore[no-untyped-call]
            info = stub.Info(gateway_pb2.InfoRequest(), timeout=self.timeout)
            registration = gateway_pb2.Registration(
                base_domain=info.base_domain,
                host=host,
                issued_at=int(time.time()),
                tls_key_sha256=tls_key_sha256,
                nonce=os.urandom(NONCE_BYTES),
            ).SerializeToString()
            report_data = compute_report_data(
                BindingLabel.GATEWAY_V1, registration_digest(registration)
            )
            quote, event_log, vm_config = self.agent.get_quote(report_data)
            request = gateway_pb2.RegisterRequest(
                registration=registration, quote=quote, event_log=event_log, vm_config=vm_config
            )
            reply: gateway_pb2.RegisterResponse = stub.Register(request, timeout=self.timeout)
            return reply

    def keep_registered(self, host: str, tls_key_sha256: bytes, stop: threading.Event) -> None:
        """Register now and again at a third of the lifetime; retry failures every few seconds."""
        while not stop.is_set():
            try:
                reply = self.register(host, tls_key_sha256)
                wait = max(1.0, (reply.expires_at - time.time()) / 3)
                log.info("gateway_registered", names=list(reply.names), next_in=round(wait, 1))
            except (GatewayUnavailable, grpc.RpcError) as exc:
                detail = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
                log.warning("gateway_registration_failed", reason=detail)
                wait = 3.0
            stop.wait(wait)
