"""The relay's libp2p side (runs in .venv-relay): a host, gossipsub, the validating topics.

Every message on the manifest topic goes through `ManifestStore.offer` (on the health and
revocation topics, `offer_health` and `offer_revocation`) before libp2p forwards it, our own
publications included: a forged, malformed or stale envelope stops at the first relay.
Messages are signed by their publishing peer (libp2p's strict signing) and identified by
(peer, sequence number), so a replayed old manifest is validated again, and refused as stale,
however long after it was first seen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from relay.store import Held, ManifestStore

GOSSIPSUB: Final = TProtocol("/meshsub/1.1.0")
log = logging.getLogger("tkms.relay")


def manifest_topic(fingerprint: bytes) -> str:
    """One topic per KMS network: relays of other networks never see each other's traffic."""
    return f"/tkms/{fingerprint.hex()}/manifest/1"


def health_topic(fingerprint: bytes) -> str:
    return f"/tkms/{fingerprint.hex()}/health/1"


def revocation_topic(fingerprint: bytes) -> str:
    return f"/tkms/{fingerprint.hex()}/revocation/1"


@dataclass
class Relay:
    """A running relay: its store, a way to publish, and a notification on each new epoch."""

    store: ManifestStore
    topic: str
    emit: Callable[[dict[str, Any]], None]
    changed: trio.Event = field(default_factory=trio.Event)
    pubsub: Any = None
    peer_id: str = ""
    addrs: list[str] = field(default_factory=list)

    def validate(self, forwarder: Any, message: Any) -> bool:
        verdict = self.store.offer(bytes(message.data))
        if not verdict.accepted:
            self.emit({"event": "dropped", "from": str(forwarder), "reason": verdict.reason})
            return False
        if verdict.reason == "new" and verdict.manifest is not None:
            self.emit(
                {
                    "event": "accepted",
                    "epoch": verdict.manifest.epoch,
                    "generation": verdict.manifest.generation,
                    "from": str(forwarder),
                }
            )
            self.changed.set()
            self.changed = trio.Event()
        return True

    def validate_health(self, forwarder: Any, message: Any) -> bool:
        verdict = self.store.offer_health(bytes(message.data), int(time.time() * 1000))
        if not verdict.accepted:
            self.emit({"event": "dropped", "from": str(forwarder), "reason": verdict.reason})
        return verdict.accepted

    def validate_revocation(self, forwarder: Any, message: Any) -> bool:
        verdict = self.store.offer_revocation(bytes(message.data))
        if not verdict.accepted:
            self.emit({"event": "dropped", "from": str(forwarder), "reason": verdict.reason})
        elif verdict.reason == "revocation":
            self.emit({"event": "revocation", "from": str(forwarder)})
        return verdict.accepted

    async def publish(self, data: bytes) -> None:
        await self.pubsub.publish(self.topic, data)

    async def publish_health(self, data: bytes) -> None:
        await self.pubsub.publish(health_topic(self.store.fingerprint), data)

    async def publish_revocation(self, data: bytes) -> None:
        await self.pubsub.publish(revocation_topic(self.store.fingerprint), data)

    def newer(self, epoch: int, generation: int = 0) -> Held | None:
        """The newest envelope of `generation` (0: the newest generation) if its epoch exceeds
        `epoch`."""
        held = self.store.of(generation)
        return held if held is not None and held.epoch > epoch else None

    async def wait_newer(self, epoch: int, timeout: float, generation: int = 0) -> Held | None:
        """`newer(epoch, generation)` once there is one (None after `timeout`)."""
        with trio.move_on_after(timeout):
            while self.newer(epoch, generation) is None:
                await self.changed.wait()
        return self.newer(epoch, generation)


async def _connect(host: Any, peer: str, emit: Callable[[dict[str, Any]], None]) -> None:
    """Dial a bootstrap peer, again every few seconds until it answers (it may start later)."""
    info = info_from_p2p_addr(multiaddr.Multiaddr(peer))
    while True:
        try:
            await host.connect(info)
        except Exception as exc:  # libp2p raises many kinds; a peer that is down is normal
            emit({"event": "dial_failed", "peer": peer, "error": str(exc)})
            await trio.sleep(2.0)
            continue
        emit({"event": "connected", "peer": peer})
        return


async def run_relay(
    *,
    store: ManifestStore,
    listen: Sequence[str],
    peers: Sequence[str],
    seed: bytes | None,
    emit: Callable[[dict[str, Any]], None],
    serve: Callable[[Relay], Any],
) -> None:
    """Run the host and gossipsub while `serve(relay)` runs."""
    key_pair = create_new_key_pair(seed)
    host = new_host(key_pair=key_pair)
    router = GossipSub(
        protocols=[GOSSIPSUB],
        degree=4,
        degree_low=2,
        degree_high=8,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        # Relays of one network may share an address (a test, a NAT): diversity is not a
        # defence here, every message is checked on its own.
        min_mesh_diversity_ips=1,
    )
    pubsub = Pubsub(host, router, strict_signing=True)
    relay = Relay(store=store, topic=manifest_topic(store.fingerprint), emit=emit, pubsub=pubsub)
    pubsub.set_topic_validator(relay.topic, relay.validate, False)
    health = health_topic(store.fingerprint)
    pubsub.set_topic_validator(health, relay.validate_health, False)
    revocation = revocation_topic(store.fingerprint)
    pubsub.set_topic_validator(revocation, relay.validate_revocation, False)
    addrs = [multiaddr.Multiaddr(a) for a in listen]
    async with (
        host.run(listen_addrs=addrs),
        trio.open_nursery() as nursery,
        background_trio_service(pubsub),
        background_trio_service(router),
    ):
        await pubsub.wait_until_ready()
        subscription = await pubsub.subscribe(relay.topic)
        subscriptions = [await pubsub.subscribe(t) for t in (health, revocation)]
        relay.peer_id = host.get_id().to_string()
        relay.addrs = [str(a) for a in host.get_addrs()]
        for peer in peers:
            nursery.start_soon(_connect, host, peer, emit)
        nursery.start_soon(_drain, subscription)
        for extra in subscriptions:
            nursery.start_soon(_drain, extra)
        emit({"event": "listening", "peer_id": relay.peer_id, "addrs": relay.addrs})
        await serve(relay)  # the relay runs as long as this does
        nursery.cancel_scope.cancel()


async def _drain(subscription: Any) -> None:
    while True:  # the store already kept what the validator accepted
        await subscription.get()
