"""The node's TEE provider and the runtime events it measures at start (design §4.6).

A KMS node is itself a dstack-style app: at start it extends RTMR3 with the same runtime events
dstack's boot emits, so its evidence yields an identity whose `mr_aggregated` governance can
allow as a KMS measurement. Every node running the same tkms release measures the same
events, hence the same `mr_aggregated` on the same (simulated) platform:

    system-preparing, os-image-hash, app-id = KMS_APP_ID, compose-hash = SHA-256(release
    manifest), boot-mr-done, key-provider = {"name": "tkms-sealing", "id": <provider>},
    system-ready

On the simulator, `os-image-hash` is `SIMULATED_OS_IMAGE` (a real dstack OS measures its own
image); governance must allow that image, as it must allow any real one.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Final

from attest.providers import SimulatorConfig, SimulatorProvider, TdxProvider, TeeProvider

#: The app_id under which KMS nodes appear in their own evidence.
KMS_APP_ID: Final = hashlib.sha256(b"tkms-kms-node").digest()[:20]
#: The OS image a simulated CVM reports (apps and nodes alike).
SIMULATED_OS_IMAGE: Final = hashlib.sha256(b"tkms simulated os image").digest()
#: A simulated platform every simulator node shares (PPID included), so measurements match.
SIMULATED_PLATFORM: Final = SimulatorConfig(
    ppid=hashlib.sha256(b"tkms simulated platform").digest()[:16]
)


def release_manifest() -> bytes:
    """What the compose-hash of a node measures: the tkms release it runs."""
    try:
        version = metadata.version("tkms")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return json.dumps({"name": "tkms-node", "version": version}, sort_keys=True).encode()


def make_provider(tee: str) -> TeeProvider:
    if tee == "simulator":
        return SimulatorProvider(SIMULATED_PLATFORM)
    if tee == "tdx":
        return TdxProvider()
    raise ValueError(f"unknown TEE provider {tee!r} (use simulator or tdx)")


def measure_node_boot(provider: TeeProvider, *, sealing: str) -> None:
    """Extend RTMR3 with the node's boot events (see the module docstring)."""
    events = [
        ("system-preparing", b""),
        ("os-image-hash", SIMULATED_OS_IMAGE),
        ("app-id", KMS_APP_ID),
        ("compose-hash", hashlib.sha256(release_manifest()).digest()),
        ("boot-mr-done", b""),
        ("key-provider", json.dumps({"name": "tkms-sealing", "id": sealing}).encode()),
        ("system-ready", b""),
    ]
    for name, payload in events:
        provider.extend_rtmr(3, name, payload)
