"""What an app's boot measures into RTMR3, as dstack's boot does (design §4.3, §7).

system-preparing, app-id, compose-hash = SHA-256(app-compose.json bytes), [gpu-attestation,]
instance-id, boot-mr-done, key-provider = {"name": "kms", "id": <network fingerprint, hex>},
system-ready

gpu-attestation (only with GPU evidence) sits where dstack's boot puts it, after compose-hash
and before instance-id; its payload is `attest.gpu_event_payload` (docs/attest-gpu.md).

The key-provider id is the fingerprint the agent checks its committee against (`mpc.anchor`),
and the one nodes require before they release keys: a TD measured for another network (a
copy of the chain with the same governance address) gets nothing from this one.
"""

from __future__ import annotations

import hashlib
import json

from attest.providers import TeeProvider


def compose_hash(compose: bytes) -> bytes:
    return hashlib.sha256(compose).digest()


def measure_app_boot(
    provider: TeeProvider,
    *,
    app_id: bytes,
    compose: bytes,
    instance_id: bytes,
    kms_id: str,
    os_image: bytes,
    gpu_event: bytes | None = None,
) -> None:
    if len(app_id) != 20 or len(instance_id) != 20:
        raise ValueError("app_id and instance_id must be 20 bytes")
    events = [
        ("system-preparing", b""),
        ("os-image-hash", os_image),
        ("app-id", app_id),
        ("compose-hash", compose_hash(compose)),
        *([("gpu-attestation", gpu_event)] if gpu_event is not None else []),
        ("instance-id", instance_id),
        ("boot-mr-done", b""),
        ("key-provider", json.dumps({"name": "kms", "id": kms_id}).encode()),
        ("system-ready", b""),
    ]
    for name, payload in events:
        provider.extend_rtmr(3, name, payload)
