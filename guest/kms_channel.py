"""Channels to the members' public Kms ports, pinned to the TLS key each registered on chain.

A node serves its Kms service over TLS with its RA-TLS certificate (docs/node-design.md).
Before the first call to a member the client reads the certificate its endpoint serves
(`attest.fetch_certificate`), accepts it only if SHA-256 of its key is the TLS key hash the
member registered on chain (the key its peers pin too; `attest.check_key_pin`), and opens a
gRPC channel whose only trust root is that certificate, as `node.peer_client` does for peer
channels. An answer on that channel comes from whoever holds the member's sealed TLS key: a
man in the middle can stop answers but not change them, so a partial that fails its proof
is the member's own. A certificate for another key is `ChannelRefused` ("unauthenticated"),
never a wrong partial, and the member is tried afresh at the next request.

The guest does not verify the evidence in the certificate: the on-chain approval of the
node's registration (TLS key hash included) is what it trusts, as it trusts the chain for
the committee, V_i and PK2.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from attest import (
    NODE_TLS_NAME,
    AttestError,
    CertificateFetchError,
    check_key_pin,
    fetch_certificate,
)
from protos.tkms.v1 import kms_pb2_grpc

__all__ = [
    "CHANNEL_OPTIONS",
    "ChannelRefused",
    "KmsChannels",
    "Pinned",
    "blocking_channel",
    "fetch_pinned",
    "open_channel",
    "secure_channel",
]

ChannelOption = tuple[str, int | str]

#: gRPC backs off up to 120 s between reconnects by default, so a long-lived client (the
#: guest agent) would ignore a restarted node for minutes; 2 s is cheap next to a derivation.
CHANNEL_OPTIONS: tuple[ChannelOption, ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
#: How long reading a member's certificate may take.
FETCH_TIMEOUT = 3.0


class ChannelRefused(Exception):
    """No authenticated channel to a member: unreachable (`transient`) or the wrong key."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


async def fetch_pinned(endpoint: str, tls_key_hash: bytes, *, timeout: float) -> bytes:
    """The certificate `endpoint` serves, if it is for the key `tls_key_hash` (PEM)."""
    try:
        pem = await fetch_certificate(endpoint, timeout=timeout)
    except CertificateFetchError as exc:
        raise ChannelRefused(f"unavailable: {exc}", transient=True) from None
    try:
        check_key_pin(pem, tls_key_hash)
    except AttestError as exc:
        raise ChannelRefused(
            f"unauthenticated: {endpoint} does not serve the member's registered key: {exc}",
            transient=False,
        ) from None
    return pem


def _options(options: Sequence[ChannelOption]) -> list[ChannelOption]:
    return [*options, ("grpc.ssl_target_name_override", NODE_TLS_NAME)]


def secure_channel(
    endpoint: str, cert_pem: bytes, options: Sequence[ChannelOption] = CHANNEL_OPTIONS
) -> grpc.aio.Channel:
    """A channel to `endpoint` whose only trust root is `cert_pem` (checked by the caller)."""
    credentials = grpc.ssl_channel_credentials(root_certificates=cert_pem)
    return grpc.aio.secure_channel(endpoint, credentials, options=_options(options))


async def open_channel(
    endpoint: str,
    tls_key_hash: bytes,
    *,
    timeout: float = FETCH_TIMEOUT,
    options: Sequence[ChannelOption] = CHANNEL_OPTIONS,
) -> grpc.aio.Channel:
    """One pinned channel to a node's Kms port (tools and benchmarks; clients use KmsChannels)."""
    return secure_channel(
        endpoint, await fetch_pinned(endpoint, tls_key_hash, timeout=timeout), options
    )


def blocking_channel(
    endpoint: str, tls_key_hash: bytes, *, timeout: float = FETCH_TIMEOUT
) -> grpc.Channel:
    """`open_channel` for synchronous gRPC code (not from inside an event loop)."""
    pem = asyncio.run(fetch_pinned(endpoint, tls_key_hash, timeout=timeout))
    credentials = grpc.ssl_channel_credentials(root_certificates=pem)
    return grpc.secure_channel(endpoint, credentials, options=_options(()))


@dataclass(frozen=True, slots=True, eq=False)
class Pinned:
    """A channel to one member, pinned to its registered key, and its stub."""

    endpoint: str
    tls_key_hash: bytes
    channel: grpc.aio.Channel
    stub: kms_pb2_grpc.KmsStub


class KmsChannels:
    """One pinned channel per (endpoint, registered key) for a client's lifetime.

    A channel whose call failed with UNAVAILABLE is `retire`d (the node may have restarted,
    or someone else answered at its address): the next call reads and pins the certificate
    again, and the old channel is closed once calls still on it had `grace` seconds.
    """

    def __init__(
        self,
        *,
        options: Sequence[ChannelOption] = CHANNEL_OPTIONS,
        fetch_timeout: float = FETCH_TIMEOUT,
        grace: float = 10.0,
    ) -> None:
        self._options = tuple(options)
        self._fetch_timeout = fetch_timeout
        self._grace = grace
        self._pinned: dict[tuple[str, bytes], Pinned] = {}
        self._locks: dict[tuple[str, bytes], asyncio.Lock] = {}
        self._closing: dict[asyncio.Task[None], grpc.aio.Channel] = {}

    async def get(self, endpoint: str, tls_key_hash: bytes) -> Pinned:
        """The pinned channel to `endpoint`; `ChannelRefused` if none can be had."""
        key = (endpoint, tls_key_hash)
        pinned = self._pinned.get(key)
        if pinned is not None:
            return pinned
        async with self._locks.setdefault(key, asyncio.Lock()):  # one fetch for many callers
            pinned = self._pinned.get(key)
            if pinned is None:
                pem = await fetch_pinned(endpoint, tls_key_hash, timeout=self._fetch_timeout)
                channel = secure_channel(endpoint, pem, self._options)
                stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
                pinned = self._pinned[key] = Pinned(endpoint, tls_key_hash, channel, stub)
            return pinned

    def retire(self, pinned: Pinned) -> None:
        """Stop using `pinned` (if it is still the current channel) and close it soon."""
        key = (pinned.endpoint, pinned.tls_key_hash)
        if self._pinned.get(key) is not pinned:
            return
        del self._pinned[key]
        task = asyncio.ensure_future(pinned.channel.close(grace=self._grace))
        self._closing[task] = pinned.channel
        task.add_done_callback(lambda done: self._closing.pop(done, None))

    async def close(self) -> None:
        """Close every channel now, retired ones too (their calls are cancelled)."""
        channels = [p.channel for p in self._pinned.values()]
        self._pinned.clear()
        for task, channel in list(self._closing.items()):
            task.cancel()
            channels.append(channel)
        self._closing.clear()
        for channel in channels:
            await channel.close()
