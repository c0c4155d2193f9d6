"""The routing table: which backends serve an app or an instance, for how long, and which are dead.

Registrations arrive from the registration service (`upsert`) and lapse at `expires_at`
(wall-clock seconds). App ids and instance ids are two namespaces, and the caller says which
one a target is in: `candidates(target, instance=False)` lists the live backends of an app,
rotated round robin per call across its instances; `candidates(target, instance=True)` lists
the one instance with that (gateway) instance id. A backend the proxy failed to reach
(`mark_dead`) moves to the end of the list for `dead_for` seconds, so it is tried only when the
others fail too, and comes back by itself if it recovers.

Rules: the table is used from one asyncio event loop. Every method runs to completion without
awaiting, so no locks are needed; use from other threads would need a lock it does not take.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.names import ID_BYTES


@dataclass(frozen=True, slots=True)
class Registration:
    """A backend: the CVM's app id, its gateway instance id (`names.instance_route_id`), the IP
    address to reach it at (never a name: the proxy does not resolve), its expiry, and the
    SHA-256 of the TLS key its terminated ports serve (`gateway.backend_tls`)."""

    app_id: bytes
    instance_id: bytes
    host: str
    expires_at: float
    tls_key_sha256: bytes

    def __post_init__(self) -> None:
        for field in ("app_id", "instance_id"):
            value = getattr(self, field)
            if not isinstance(value, bytes) or len(value) != ID_BYTES:
                raise ValueError(f"{field} must be {ID_BYTES} bytes, got {value!r}")
        if not isinstance(self.tls_key_sha256, bytes) or len(self.tls_key_sha256) != 32:
            raise ValueError(f"tls_key_sha256 must be 32 bytes, got {self.tls_key_sha256!r}")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"host {self.host[:80]!r} is not an IP address") from None


def _target_bytes(target: str) -> bytes:
    if len(target) != 2 * ID_BYTES or target != target.lower():
        raise ValueError(f"target {target!r} is not {2 * ID_BYTES} lowercase hex characters")
    try:
        return bytes.fromhex(target)
    except ValueError:
        raise ValueError(
            f"target {target!r} is not {2 * ID_BYTES} lowercase hex characters"
        ) from None


class RouteTable:
    """Registrations by instance id, grouped by app id (two namespaces), with expiry and dead
    marks."""

    def __init__(self, clock: Callable[[], float] = time.time, dead_for: float = 5.0) -> None:
        self._clock = clock
        self._dead_for = dead_for
        self._by_instance: dict[bytes, Registration] = {}
        self._by_app: dict[bytes, list[bytes]] = {}  # instance ids in registration order
        self._dead_since: dict[bytes, float] = {}
        self._turn: dict[bytes, int] = {}  # per app: where the next rotation starts

    def __len__(self) -> int:
        return len(self._by_instance)

    def upsert(self, reg: Registration) -> None:
        """Add `reg`, or replace the registration of the same instance (its app may not change)."""
        old = self._by_instance.get(reg.instance_id)
        if old is not None and old.app_id != reg.app_id:
            raise ValueError(
                f"instance {reg.instance_id.hex()} is registered for app {old.app_id.hex()}, "
                f"not {reg.app_id.hex()}"
            )
        if old is None:
            self._by_app.setdefault(reg.app_id, []).append(reg.instance_id)
        self._by_instance[reg.instance_id] = reg

    def remove(self, instance_id: bytes) -> bool:
        """Drop an instance; False if it was not registered."""
        reg = self._by_instance.pop(instance_id, None)
        if reg is None:
            return False
        self._dead_since.pop(instance_id, None)
        siblings = self._by_app[reg.app_id]
        siblings.remove(instance_id)
        if not siblings:
            del self._by_app[reg.app_id]
            self._turn.pop(reg.app_id, None)
        return True

    def mark_dead(self, instance_id: bytes) -> None:
        """The proxy could not reach this backend: try it last for the next `dead_for` seconds."""
        if instance_id in self._by_instance:
            self._dead_since[instance_id] = self._clock()

    def mark_alive(self, instance_id: bytes) -> None:
        """The proxy reached this backend: it takes its normal turn again."""
        self._dead_since.pop(instance_id, None)

    def candidates(self, target: str, *, instance: bool) -> list[Registration]:
        """Unexpired backends, in the order to try them, for an app id or (`instance`) a
        gateway instance id, in hex. An app id is never looked up among instances, nor an
        instance id among apps."""
        key = _target_bytes(target)
        now = self._clock()
        if instance:
            reg = self._by_instance.get(key)
            return [reg] if reg is not None and reg.expires_at > now else []
        instances = self._by_app.get(key)
        if not instances:
            return []
        turn = self._turn.get(key, 0) % len(instances)
        self._turn[key] = turn + 1
        rotated = instances[turn:] + instances[:turn]
        live = [self._by_instance[i] for i in rotated if self._by_instance[i].expires_at > now]
        return sorted(live, key=lambda r: self._is_dead(r.instance_id, now))

    def _is_dead(self, instance_id: bytes, now: float) -> bool:
        since = self._dead_since.get(instance_id)
        if since is None:
            return False
        if now - since < self._dead_for:
            return True
        del self._dead_since[instance_id]
        return False

    def expire(self) -> int:
        """Drop expired registrations; how many were dropped."""
        now = self._clock()
        gone = [i for i, reg in self._by_instance.items() if reg.expires_at <= now]
        for instance_id in gone:
            self.remove(instance_id)
        return len(gone)

    def snapshot(self) -> list[Registration]:
        """Every registration (expired ones included until `expire` runs), by app then order."""
        return [self._by_instance[i] for ids in self._by_app.values() for i in ids]
