"""Channels to peers (design §6.4): fetch, verify, pin, retry.

For each peer the client fetches the certificate its peer endpoint serves, verifies it with
`node.ratls` (attested, registered as *that* peer, allowed KMS measurement), and opens a
secure channel whose only trust root is that certificate (the pin), presenting the node's own
RA-TLS certificate as client certificate, with the target name overridden to the fixed
`PEER_TLS_NAME`. Channels are cached per peer and dropped when the registry entry changes or
a call fails with UNAVAILABLE (the peer may have restarted with a new certificate).

Calls retry UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED (and an unreachable
endpoint) with bounded exponential backoff and jitter until `deadline`. A server certificate
that does not verify, or an answer such as INVALID_ARGUMENT, is final. Every error names the
peer and its endpoint. (Shares are not sent to peers: they go on chain with each deal.)
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc import aio

from attest import Collateral, Policy, default_policy
from node.errors import InvalidRequest, NodeError, NotReady, PolicyDenied, Unauthenticated
from node.identity import NodeIdentity
from node.logs import get_logger
from node.peer_service import EpochStatusReply, ViewSource
from node.ratls import (
    PEER_TLS_NAME,
    KmsAllowed,
    PeerRecord,
    PeerVerifier,
    fetch_context,
    fetch_peer_certificate,
)
from protos.tkms.v1 import kms_pb2, peer_pb2, peer_pb2_grpc

__all__ = ["PeerClient"]

log = get_logger("tkms.node.peer_client")

T = TypeVar("T")

_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_ERRORS: dict[grpc.StatusCode, type[NodeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PolicyDenied,
    grpc.StatusCode.UNAVAILABLE: NotReady,
    grpc.StatusCode.DEADLINE_EXCEEDED: NotReady,
    grpc.StatusCode.RESOURCE_EXHAUSTED: NotReady,
}


def _name(peer: PeerRecord) -> str:
    return f"peer 0x{peer.address.hex()} at {peer.peer_endpoint or '(no endpoint)'}"


@dataclass(slots=True)
class _Pinned:
    endpoint: str
    tls_key_hash: bytes
    cert_pem: bytes
    channel: aio.Channel
    stub: peer_pb2_grpc.PeerStub


class PeerClient:
    """Calls to peers over pinned mutual RA-TLS channels."""

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        cert_pem: bytes,
        key_pem: bytes,
        view: ViewSource,
        kms_allowed: KmsAllowed,
        accept_simulator: bool,
        policy: Policy | None = None,
        collateral: Collateral | None = None,
        clock: Callable[[], float] = time.time,
        rpc_timeout: float = 5.0,
        deadline: float = 60.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        fetch_timeout: float = 3.0,
        reachable_ttl: float = 120.0,
        root_deadline: float = 6.0,
    ) -> None:
        self.address = identity.eth_address
        self._cert_pem, self._key_pem, self._view = cert_pem, key_pem, view
        self._fetch_context = fetch_context(cert_pem, key_pem)
        self._verifier = PeerVerifier(
            policy=policy or default_policy(),
            kms_allowed=kms_allowed,
            accept_simulator=accept_simulator,
            collateral=collateral,
            clock=clock,
        )
        self.rpc_timeout, self.deadline, self.fetch_timeout = rpc_timeout, deadline, fetch_timeout
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.reachable_ttl = reachable_ttl
        self.root_deadline = root_deadline
        self._pinned: dict[bytes, _Pinned] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._last_ok: dict[bytes, float] = {}

    # -- channels -------------------------------------------------------------------------

    async def _verified(self, peer: PeerRecord, pem: bytes) -> None:
        """Check a server certificate for `peer` against the current chain view."""
        name = _name(peer)
        view = self._view()
        if view is None:
            raise NotReady(f"{name}: no chain view yet")
        try:
            owner = await asyncio.to_thread(self._verifier.verify, pem, view)
        except NodeError as exc:
            log.warning("peer_refused", peer=name, stage="server-certificate", reason=str(exc))
            raise type(exc)(f"{name}: server certificate refused: {exc}") from None
        if owner.address != peer.address:
            reason = f"registry: the endpoint serves the certificate of 0x{owner.address.hex()}"
            log.warning("peer_refused", peer=name, stage="server-certificate", reason=reason)
            raise Unauthenticated(f"{name}: server certificate refused: {reason}")

    async def _connect(self, peer: PeerRecord) -> _Pinned:
        if not peer.peer_endpoint:
            raise NotReady(f"{_name(peer)}: no peer endpoint registered")
        try:
            pem = await fetch_peer_certificate(
                peer.peer_endpoint, timeout=self.fetch_timeout, context=self._fetch_context
            )
        except NotReady as exc:
            raise NotReady(f"{_name(peer)}: {exc}") from None
        await self._verified(peer, pem)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pem, private_key=self._key_pem, certificate_chain=self._cert_pem
        )
        channel = aio.secure_channel(
            peer.peer_endpoint,
            credentials,
            options=[("grpc.ssl_target_name_override", PEER_TLS_NAME)],
        )
        stub = peer_pb2_grpc.PeerStub(channel)  # type: ignore[no-untyped-call]
        return _Pinned(peer.peer_endpoint, peer.tls_key_hash, pem, channel, stub)

    async def _stub(self, peer: PeerRecord) -> peer_pb2_grpc.PeerStub:
        """A pinned stub for `peer`; a cached pin is re-checked against the current view
        (cheap: the verifier caches per view), so a revocation also stops our calls."""
        lock = self._locks.setdefault(peer.address, asyncio.Lock())
        async with lock:
            pinned = self._pinned.get(peer.address)
            if pinned is not None and (pinned.endpoint, pinned.tls_key_hash) == (
                peer.peer_endpoint,
                peer.tls_key_hash,
            ):
                try:
                    await self._verified(peer, pinned.cert_pem)
                except Unauthenticated:
                    await self._drop(peer.address)
                    raise
                return pinned.stub
            await self._drop(peer.address)
            pinned = await self._connect(peer)
            self._pinned[peer.address] = pinned
            return pinned.stub

    async def _drop(self, address: bytes) -> None:
        pinned = self._pinned.pop(address, None)
        if pinned is not None:
            await pinned.channel.close()

    async def close(self) -> None:
        """Close every cached channel."""
        for address in list(self._pinned):
            await self._drop(address)

    def reachable_count(self) -> int:
        """Peers that answered a call within the last `reachable_ttl` seconds."""
        now = time.monotonic()
        return sum(1 for t in self._last_ok.values() if now - t < self.reachable_ttl)

    # -- calls ----------------------------------------------------------------------------

    async def _call(
        self,
        peer: PeerRecord,
        what: str,
        call: Callable[[peer_pb2_grpc.PeerStub, float], Awaitable[T]],
        deadline: float | None = None,
    ) -> T:
        """Run `call` with retries (module docstring) until it succeeds or `deadline` (default
        the client's) passes."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (self.deadline if deadline is None else deadline)
        name, attempt = _name(peer), 0
        while True:
            attempt += 1
            try:
                stub = await self._stub(peer)
                timeout = max(0.05, min(self.rpc_timeout, give_up - loop.time()))
                result = await call(stub, timeout)
                self._last_ok[peer.address] = time.monotonic()
                return result
            except aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code == grpc.StatusCode.UNAVAILABLE:
                    await self._drop(peer.address)  # refetch and re-pin on the next attempt
                error: NodeError = _ERRORS.get(code, NodeError)(
                    f"{what} to {name} failed: {code.name}: {details}"
                )
                retry = code in _RETRYABLE
            except NotReady as exc:
                error, retry = NotReady(f"{what} to {name} failed: {exc}"), True
            delay = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)
            if not retry or loop.time() + delay >= give_up:
                log.warning(
                    "peer_call_failed", peer=name, call=what, attempts=attempt, reason=str(error)
                )
                raise error
            log.info("peer_call_retry", peer=name, call=what, attempt=attempt, reason=str(error))
            await asyncio.sleep(delay)

    async def epoch_status(self, peer: PeerRecord, epoch: int) -> EpochStatusReply:
        """What `peer` knows about `epoch` (for catch-up), with the same retries."""
        request = peer_pb2.EpochStatusRequest(epoch=epoch)

        async def status(stub: peer_pb2_grpc.PeerStub, timeout: float) -> EpochStatusReply:
            reply: peer_pb2.EpochStatusResponse = await stub.EpochStatus(request, timeout=timeout)
            return EpochStatusReply(
                epoch=reply.epoch,
                phase=reply.phase,
                deals_received_from=tuple(reply.deals_received_from),
            )

        return await self._call(peer, f"epoch status ({epoch})", status)

    async def kms_root_partial(
        self, peer: PeerRecord, generation: int, epoch: int, requester: bytes
    ) -> kms_pb2.Partial:
        """`peer`'s partial of `generation`'s KMS root, encrypted to `requester` (E); retried
        for `root_deadline` seconds only: the caller asks every member at once."""
        request = peer_pb2.KmsRootPartialRequest(
            generation=generation, epoch=epoch, requester_key=requester
        )

        async def partial(stub: peer_pb2_grpc.PeerStub, timeout: float) -> kms_pb2.Partial:
            reply: peer_pb2.KmsRootPartialResponse = await stub.KmsRootPartial(
                request, timeout=timeout
            )
            return reply.partial

        return await self._call(
            peer, f"KMS root partial (generation {generation})", partial, self.root_deadline
        )

    async def dstack_app_partial(
        self,
        peer: PeerRecord,
        generation: int,
        epoch: int,
        requester: bytes,
        client_certificate: bytes,
        vm_config: str,
    ) -> kms_pb2.Partial:
        """`peer`'s partial of the app seed of the dstack guest whose RA-TLS certificate this
        is, encrypted to `requester` (E); the peer authorizes the guest itself. Retried for
        `root_deadline` seconds: the caller asks every member at once."""
        request = peer_pb2.DstackAppPartialRequest(
            generation=generation,
            epoch=epoch,
            requester_key=requester,
            client_certificate=client_certificate,
            vm_config=vm_config,
        )

        async def partial(stub: peer_pb2_grpc.PeerStub, timeout: float) -> kms_pb2.Partial:
            reply: peer_pb2.DstackAppPartialResponse = await stub.DstackAppPartial(
                request, timeout=timeout
            )
            return reply.partial

        return await self._call(
            peer, f"dstack app partial (generation {generation})", partial, self.root_deadline
        )
