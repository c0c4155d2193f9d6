"""The node's TEE provider and the runtime events it measures at start (design §4.6).

A KMS node is itself a dstack-style app: at start it extends RTMR3 with the same runtime events
dstack's boot emits, so its evidence yields an identity whose `mr_aggregated` governance can
allow as a KMS measurement. Every node running the same tkms release measures the same
events, hence the same `mr_aggregated` on the same (simulated) platform:

    system-preparing, os-image-hash, app-id = KMS_APP_ID, compose-hash = SHA-256(release
    manifest), boot-mr-done, key-provider = {"name": "tkms-sealing", "id": <provider>},
    system-ready

On the simulator, the OS image is `SIMULATED_OS_IMAGE`: the hash verifiers recompute from the
simulated platform's MRTD and RTMR0-2 (`attest.os_image_hash_of`), which is also what the
`os-image-hash` event claims. Governance must allow it, as it must allow any real image.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Final

from attest import os_image_hash_of, snp_platform_hash
from attest.providers import (
    SIMULATED_SNP_MEASUREMENT,
    SIMULATED_SNP_POLICY,
    SimulatorConfig,
    SimulatorProvider,
    TdxProvider,
    TeeProvider,
)
from contracts import DEV_CHAIN_IDS

#: The app_id under which KMS nodes appear in their own evidence.
KMS_APP_ID: Final = hashlib.sha256(b"tkms-kms-node").digest()[:20]
#: A simulated platform every simulator node shares (PPID included), so measurements match.
SIMULATED_PLATFORM: Final = SimulatorConfig(
    ppid=hashlib.sha256(b"tkms simulated platform").digest()[:16]
)
#: The OS image of every simulated CVM (apps and nodes alike): recomputed from the simulator's
#: default MRTD and RTMR0-2, which `SIMULATED_PLATFORM` and `SimulatorProvider()` both report.
SIMULATED_OS_IMAGE: Final = os_image_hash_of(
    SIMULATED_PLATFORM.mr_td,
    SIMULATED_PLATFORM.rtmr0,
    SIMULATED_PLATFORM.rtmr1,
    SIMULATED_PLATFORM.rtmr2,
)


#: The platform hash of every simulated SEV-SNP guest (`attest.providers.SnpSimulator`'s
#: default MEASUREMENT and guest policy): what governance approves for them, like
#: `SIMULATED_OS_IMAGE` for simulated TDX; the two never coincide (attest._snp_identity).
SIMULATED_SNP_OS_IMAGE: Final = snp_platform_hash(SIMULATED_SNP_MEASUREMENT, SIMULATED_SNP_POLICY)


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


def accepts_simulator(tee: str) -> bool:
    """Whether a node with this TEE may ever accept simulator evidence: only a simulator node.

    A node on TDX hardware refuses simulator quotes whatever governance says, so a governance
    that (wrongly) allows simulators cannot make a production node release keys to forged
    evidence.
    """
    return tee == "simulator"


def simulator_refusal(*, accept_locally: bool, chain_id: int, allowed_on_chain: bool) -> str | None:
    """Why simulator evidence is refused here, or None when all three say it may be accepted:
    this node's TEE (`accepts_simulator`), governance's `simulatorAllowed`, and a development
    chain (`contracts.DEV_CHAIN_IDS`)."""
    if not accept_locally:
        return 'this node runs on TDX (tee = "tdx") and never accepts simulator evidence'
    if not allowed_on_chain:
        return "governance has simulatorAllowed = false"
    if chain_id not in DEV_CHAIN_IDS:
        return f"chain {chain_id} is not a development chain, where simulators are never accepted"
    return None
