"""GPU evidence a CVM carries, its RTMR3 event, and the check a relying party runs on GpuInfo.

The evidence is NVIDIA's own evidence document, the JSON its attestation SDK sends to NVIDIA's
remote verifier (nvtrust ``attest_gpu_remote.build_payload``)::

    {"nonce": "<64 hex>", "arch": "HOPPER",
     "evidence_list": [{"evidence": "<base64 report>", "certificate": "<base64 PEM chain>"}, ...]}

one entry per GPU, every report answering the same nonce. `verify_gpu_evidence` checks each
report against NVIDIA's root (`attest._gpu_verify`).

A guest agent with GPU evidence measures, before ``system-ready``, the dstack runtime event
``gpu-attestation`` whose payload is `gpu_event_payload` (dstack's shape; sorted keys, no
spaces)::

    {"arch": "HOPPER", "devices": N, "evidence_sha256": "<SHA-256 of the exact evidence text>",
     "nonce": "<hex>", "provider": "nvidia", "version": 2}

and its ``GpuInfo`` returns the evidence text itself. As dstack prescribes for its GpuInfo,
`verify_gpu_info` binds the two: after the quote is verified and the event log replayed, exactly
one ``gpu-attestation`` event before ``system-ready``, its evidence_sha256 equal to SHA-256 of
the exact UTF-8 bytes GpuInfo returned, then the evidence verified for the event's nonce (and
the caller's, when it chose one). No event and an empty GpuInfo: no GPU.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

from attest._eventlog import DSTACK_RUNTIME_EVENT_TYPE, EventLogEntry
from attest._gpu_report import GpuEvidenceError
from attest._gpu_verify import VerifiedGpuReport, verify_gpu_report

__all__ = [
    "GPU_EVENT",
    "GpuEvidence",
    "VerifiedGpuEvidence",
    "gpu_event_payload",
    "parse_gpu_evidence",
    "verify_gpu_evidence",
    "verify_gpu_info",
]

GPU_EVENT = "gpu-attestation"
#: At most this many GPUs per CVM (an HGX board has 8).
MAX_GPUS = 16
_ARCHES = ("HOPPER",)


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuEvidence:
    """A parsed (unverified) evidence document; `text` is exactly what was parsed."""

    text: str
    nonce: bytes
    arch: str
    items: tuple[tuple[bytes, bytes], ...]  # (report, PEM certificate chain) per GPU

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.text.encode()).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedGpuEvidence:
    """Evidence whose every report verified for its nonce."""

    evidence: GpuEvidence
    devices: tuple[VerifiedGpuReport, ...]


def _b64(value: object, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise GpuEvidenceError("must be a non-empty base64 string", field=field)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise GpuEvidenceError("is not base64", field=field) from None


def parse_gpu_evidence(text: str) -> GpuEvidence:
    """Parse an evidence document strictly; `GpuEvidenceError` names the field at fault."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise GpuEvidenceError(f"not JSON: {exc}", field="evidence") from None
    if not isinstance(doc, dict):
        raise GpuEvidenceError("must be a JSON object", field="evidence")
    nonce_text = doc.get("nonce")
    try:
        nonce = bytes.fromhex(nonce_text) if isinstance(nonce_text, str) else b""
    except ValueError:
        nonce = b""
    if len(nonce) != 32:
        raise GpuEvidenceError("must be 32 bytes as hex", field="nonce")
    arch = doc.get("arch")
    if arch not in _ARCHES:
        raise GpuEvidenceError(
            f"{arch!r} is not a GPU architecture tkms verifies {_ARCHES}", field="arch"
        )
    listed = doc.get("evidence_list")
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_GPUS:
        raise GpuEvidenceError(f"must list 1 to {MAX_GPUS} GPUs", field="evidence_list")
    items = []
    for i, entry in enumerate(listed):
        if not isinstance(entry, dict):
            raise GpuEvidenceError("must be an object", field=f"evidence_list[{i}]")
        report = _b64(entry.get("evidence"), f"evidence_list[{i}].evidence")
        chain = _b64(entry.get("certificate"), f"evidence_list[{i}].certificate")
        items.append((report, chain))
    return GpuEvidence(text=text, nonce=nonce, arch=arch, items=tuple(items))


def verify_gpu_evidence(
    text: str, *, now: int, expected_nonce: bytes | None = None
) -> VerifiedGpuEvidence:
    """Verify every GPU's report for the document's nonce (and `expected_nonce` if given)."""
    evidence = parse_gpu_evidence(text)
    if expected_nonce is not None and not hmac.compare_digest(evidence.nonce, expected_nonce):
        raise GpuEvidenceError(
            f"the evidence is for nonce {evidence.nonce.hex()}, not {expected_nonce.hex()}",
            field="nonce",
        )
    devices = []
    for i, (report, chain) in enumerate(evidence.items):
        try:
            devices.append(verify_gpu_report(report, chain, nonce=evidence.nonce, now=now))
        except GpuEvidenceError as exc:
            raise GpuEvidenceError(str(exc), field=f"evidence_list[{i}]") from exc
    return VerifiedGpuEvidence(evidence=evidence, devices=tuple(devices))


def gpu_event_payload(verified: VerifiedGpuEvidence) -> bytes:
    """The ``gpu-attestation`` event payload (module docstring)."""
    ev = verified.evidence
    doc = {
        "arch": ev.arch,
        "devices": len(verified.devices),
        "evidence_sha256": ev.sha256.hex(),
        "nonce": ev.nonce.hex(),
        "provider": "nvidia",
        "version": 2,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _gpu_events(entries: Sequence[EventLogEntry]) -> list[EventLogEntry]:
    found = []
    for e in entries:
        if e.event_type != DSTACK_RUNTIME_EVENT_TYPE:
            continue
        if e.event == "system-ready":
            break
        if e.event == GPU_EVENT:
            found.append(e)
    return found


def verify_gpu_info(
    attestation: str,
    entries: Sequence[EventLogEntry],
    *,
    now: int,
    expected_nonce: bytes | None = None,
) -> VerifiedGpuEvidence | None:
    """Bind a GpuInfo ``attestation`` to a replayed event log, then verify it (module docstring).

    `entries` must come from a log that `verify_replay` accepted against a verified quote.
    Returns None for a CVM without GPU evidence (no event, empty GpuInfo).
    """
    events = _gpu_events(entries)
    if not events:
        if attestation:
            raise GpuEvidenceError(
                "GpuInfo returned evidence but the event log measured no gpu-attestation event "
                "before system-ready: nothing binds it to this CVM",
                field="event_log",
            )
        return None
    if len(events) > 1:
        raise GpuEvidenceError(
            f"{len(events)} gpu-attestation events before system-ready; exactly one is allowed",
            field="event_log",
        )
    try:
        payload = json.loads(events[0].event_payload)
        measured = bytes.fromhex(payload["evidence_sha256"])
        nonce = bytes.fromhex(payload["nonce"])
    except (ValueError, KeyError, TypeError):
        raise GpuEvidenceError(
            "the gpu-attestation payload has no hex evidence_sha256 and nonce", field="event_log"
        ) from None
    actual = hashlib.sha256(attestation.encode()).digest()
    if not hmac.compare_digest(measured, actual):
        raise GpuEvidenceError(
            f"GpuInfo's evidence hashes to {actual.hex()}, the measured gpu-attestation event "
            f"says {measured.hex()}",
            field="attestation",
        )
    verified = verify_gpu_evidence(attestation, now=now, expected_nonce=nonce)
    if expected_nonce is not None and not hmac.compare_digest(nonce, expected_nonce):
        raise GpuEvidenceError(
            f"the measured evidence is for nonce {nonce.hex()}, not {expected_nonce.hex()}",
            field="nonce",
        )
    if payload.get("devices") != len(verified.devices):
        raise GpuEvidenceError(
            f"the event says {payload.get('devices')!r} devices, the evidence has "
            f"{len(verified.devices)}",
            field="event_log",
        )
    return verified
