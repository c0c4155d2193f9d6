"""The KMS measurement (mr_aggregated) this tkms release has on a node's platform.

A node's measurement is dstack's mr_aggregated: SHA-256 over the platform's MRTD and RTMR0-2
and the replay of the runtime events the node measures at start (`node.tee.measure_node_boot`:
its compose-hash is that of the release it runs). An upgrade keeps the platform and changes
the release, so the measurement after an upgrade is computable before it: the platform part
from the node's registered (verified) evidence, the events from this release. The governance
owner allows it first (`tkms chain allow-kms-measurement`), then operators restart with the new
release and their peers accept them at once (docs/operators.md, "Upgrading").
"""

from __future__ import annotations

from typing import Any

from attest import compute_app_identity, parse_quote
from attest.providers import SimulatorConfig, SimulatorProvider
from node.registration import parse_registration
from node.tee import measure_node_boot, release_manifest


def release_measurement(document: Any, *, sealing: str | None = None) -> bytes:
    """mr_aggregated of this release on the platform of the registration `document`."""
    registration = parse_registration(document)
    report = parse_quote(registration.quote).td_report
    events = SimulatorProvider(SimulatorConfig(ppid=bytes(16)))  # only its event log is used
    chosen = sealing or str(document.get("sealing", "dstack"))
    measure_node_boot(events, sealing=chosen)
    return compute_app_identity(events.event_log(), report, ppid=None).mr_aggregated


def describe_release() -> str:
    return release_manifest().decode()
