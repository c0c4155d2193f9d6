"""dstack-compatible app identity from replayed RTMR3 runtime events and the TD report.

The formulas are dstack's (`dstack-attest/src/attestation.rs`, `Attestation::decode_app_info_ex`
and `decode_mr_tdx`; runtime events from `cc-eventlog`):

* app_id, compose_hash, instance_id, key_provider_info: payloads of the runtime events
  ``app-id``, ``compose-hash``, ``instance-id``, ``key-provider``, taking the first occurrence
  before ``system-ready`` (events an app emits after ``system-ready`` cannot impersonate them).
* mr_key_provider = SHA-256(key_provider_info), or 32 zero bytes when there is none.
* mr_system = SHA-256(MRTD || RTMR0 || RTMR1 || RTMR2 || mr_key_provider).
* mr_aggregated = SHA-256(MRTD || RTMR0 || RTMR1 || RTMR2 || RTMR3' [|| MRCONFIGID || MROWNER ||
  MROWNERCONFIG, only when any of the three is non-zero]), where RTMR3' is the replay of the
  runtime events (up to ``boot-mr-done`` in boot-time mode).
* device_id = SHA-256(PPID) from the PCK certificate (SHA-256 of nothing when there is no PPID).
* os_image_hash = SHA-256(MRTD || RTMR0 || RTMR1 || RTMR2 || 32 zero bytes), recomputed from the
  quote: dstack's mr_system formula with no key provider, i.e. the measurement of firmware, kernel,
  command line and initrd alone (`os_image_hash_of`). It is what governance approves as an OS
  image, so a TD booted with another firmware or kernel has another os_image_hash, whatever it
  claims. dstack's own os_image_hash (SHA-256 of the image's sha256sum.txt) comes from the VM
  config, which the host supplies unmeasured, or from an RTMR3 event the guest writes itself:
  tkms keeps that claim as `claimed_os_image_hash` for display and never authorizes on it.

Only call this on entries that `verify_replay` accepted against the same quote: the identity
is only as good as the log it is read from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from attest._eventlog import DSTACK_RUNTIME_EVENT_TYPE, EventLogEntry
from attest._quote_types import TdReport
from attest._replay import runtime_event_digest
from attest.errors import AttestError

__all__ = [
    "AppIdentity",
    "IdentityError",
    "KeyProvider",
    "compute_app_identity",
    "expected_mr_config_id",
    "has_runtime_events",
    "os_image_hash_of",
]

_ZERO48 = bytes(48)


class IdentityError(AttestError):
    """The event log cannot yield a dstack identity (no runtime events, malformed payload)."""

    def diagnostics(self) -> str:
        return f"cannot derive the app identity: {self}"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyProvider:
    """The parsed ``key-provider`` payload, e.g. ``{"name": "kms", "id": "<hex>"}``."""

    name: str
    id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppIdentity:
    """What governance is asked about: who the app is and what it runs on."""

    app_id: bytes
    compose_hash: bytes
    instance_id: bytes
    device_id: bytes
    mr_system: bytes
    mr_aggregated: bytes
    os_image_hash: bytes
    key_provider_info: bytes
    key_provider: KeyProvider | None
    #: dstack's image digest as the TD or its host claims it (VM config, else the RTMR3
    #: ``os-image-hash`` event). Unverifiable here: shown, never authorized on.
    claimed_os_image_hash: bytes = b""
    #: Where the claim came from: "vm_config" (host-supplied), "event" (written by the guest)
    #: or "none".
    claimed_os_image_hash_source: str = "none"
    #: Whether the log holds ``system-ready``: the TD finished booting. dstack's boot asks
    #: its KMS for keys before it measures a key provider and before ``system-ready``.
    system_ready: bool = False
    #: The TEE the identity was measured on: "tdx" or "amd-sev-snp" (attest._snp_identity).
    platform: str = "tdx"

    def to_json_dict(self) -> dict[str, object]:
        """Hex strings, and the key provider as an object (or None)."""
        out: dict[str, object] = {
            name: getattr(self, name).hex()
            for name in (
                "app_id",
                "compose_hash",
                "instance_id",
                "device_id",
                "mr_system",
                "mr_aggregated",
                "os_image_hash",
                "key_provider_info",
                "claimed_os_image_hash",
            )
        }
        kp = self.key_provider
        out["key_provider"] = None if kp is None else {"name": kp.name, "id": kp.id}
        out["claimed_os_image_hash_source"] = self.claimed_os_image_hash_source
        out["platform"] = self.platform
        return out


def os_image_hash_of(mr_td: bytes, rtmr0: bytes, rtmr1: bytes, rtmr2: bytes) -> bytes:
    """The OS image hash of a TD with these registers (module docstring): what governance allows.

    Operators compute it from `dstack-mr`'s MRTD and RTMR0-2 for an image and a VM shape, or
    read it from `tkms attest verify --json` of a TD booted that way.
    """
    for name, value in (("MRTD", mr_td), ("RTMR0", rtmr0), ("RTMR1", rtmr1), ("RTMR2", rtmr2)):
        if len(value) != 48:
            raise IdentityError(f"{name} must be 48 bytes, got {len(value)}")
    return hashlib.sha256(mr_td + rtmr0 + rtmr1 + rtmr2 + bytes(32)).digest()


def has_runtime_events(entries: Sequence[EventLogEntry]) -> bool:
    """True when the log holds dstack runtime events (so an identity can be derived)."""
    return any(e.event_type == DSTACK_RUNTIME_EVENT_TYPE for e in entries)


def expected_mr_config_id(compose_hash: bytes) -> bytes:
    """dstack's MRCONFIGID layout v1: ``0x01 || compose_hash (32 bytes) || 15 zero bytes``."""
    if len(compose_hash) != 32:
        raise IdentityError(f"compose_hash must be 32 bytes, got {len(compose_hash)}")
    return b"\x01" + compose_hash + bytes(15)


def _runtime_events(entries: Sequence[EventLogEntry]) -> list[EventLogEntry]:
    events = [e for e in entries if e.event_type == DSTACK_RUNTIME_EVENT_TYPE]
    for e in events:
        if e.imr != 3:
            raise IdentityError(f"runtime event {e.event!r} is on RTMR{e.imr}, expected RTMR3")
    if not events:
        raise IdentityError("the event log has no dstack runtime events")
    return events


def _find(events: Sequence[EventLogEntry], name: str) -> bytes:
    for e in events:
        if e.event == "system-ready":
            break
        if e.event == name:
            return e.event_payload
    return b""


def _replay(events: Sequence[EventLogEntry], stop_after: str | None) -> bytes:
    reg = _ZERO48
    for e in events:
        digest = runtime_event_digest(e.event, e.event_payload, e.version)
        reg = hashlib.sha384(reg + digest).digest()
        if stop_after is not None and e.event == stop_after:
            break
    return reg


def _key_provider(info: bytes) -> KeyProvider | None:
    if not info:
        return None
    try:
        doc = json.loads(info)
    except ValueError:
        raise IdentityError("key-provider payload is not JSON") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("name", "id")):
        raise IdentityError('key-provider payload must be {"name": str, "id": str}')
    return KeyProvider(name=doc["name"], id=doc["id"])


def _claimed_os_image_hash(
    events: Sequence[EventLogEntry], vm_config: str | None
) -> tuple[bytes, str]:
    if vm_config is None:
        measured = _find(events, "os-image-hash")
        return measured, "event" if measured else "none"
    try:
        doc = json.loads(vm_config)
        text = doc.get("os_image_hash", "") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            raise ValueError("os_image_hash is not a string")
        return bytes.fromhex(text.removeprefix("0x")), "vm_config"
    except ValueError as exc:
        raise IdentityError(f"vm_config has no usable os_image_hash: {exc}") from None


def compute_app_identity(
    entries: Sequence[EventLogEntry],
    td_report: TdReport,
    *,
    ppid: bytes | None,
    vm_config: str | None = None,
    boottime_mr: bool = False,
) -> AppIdentity:
    """Derive the dstack identity (formulas in the module docstring).

    `boottime_mr` reproduces dstack's boot-time measurement (RTMR3 up to ``boot-mr-done``,
    no key provider), used by KMS boot authorization.
    """
    events = _runtime_events(entries)
    info = b"" if boottime_mr else _find(events, "key-provider")
    mr_key_provider = hashlib.sha256(info).digest() if info else bytes(32)
    r = td_report
    base = r.mr_td + r.rtmr0 + r.rtmr1 + r.rtmr2
    mr_system = hashlib.sha256(base + mr_key_provider).digest()
    aggregated = base + _replay(events, "boot-mr-done" if boottime_mr else None)
    # dstack leaves the three owner/config registers out when all are zero (older CVMs).
    if any(x != _ZERO48 for x in (r.mr_config_id, r.mr_owner, r.mr_owner_config)):
        aggregated += r.mr_config_id + r.mr_owner + r.mr_owner_config
    claimed, claimed_source = _claimed_os_image_hash(events, vm_config)
    return AppIdentity(
        app_id=_find(events, "app-id"),
        compose_hash=_find(events, "compose-hash"),
        instance_id=_find(events, "instance-id"),
        device_id=hashlib.sha256(ppid or b"").digest(),
        mr_system=mr_system,
        mr_aggregated=hashlib.sha256(aggregated).digest(),
        os_image_hash=os_image_hash_of(r.mr_td, r.rtmr0, r.rtmr1, r.rtmr2),
        key_provider_info=info,
        key_provider=_key_provider(info),
        claimed_os_image_hash=claimed,
        claimed_os_image_hash_source=claimed_source,
        system_ready=any(e.event == "system-ready" for e in events),
    )
