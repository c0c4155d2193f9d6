"""The newest verified manifest a relay holds, and the rule that drops stale ones.

Pure and synchronous: the gossip validator calls `offer` for every message before libp2p
forwards it, so a forged, malformed or stale envelope is dropped at the first relay that sees
it and reaches neither the mesh nor a client. Epoch numbers grow across generations (the
governance numbers every epoch once), so "newer" is simply a larger epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from mpc.errors import MpcError
from mpc.manifest import EpochManifest, verify_envelope
from mpc.nodehealth import HealthNote, verify_note
from mpc.revocation import RevocationNotice, verify_notice

#: A health note older than this (by the note's own clock) is stale; one further ahead than
#: SKEW_MS is refused as from the future.
MAX_NOTE_AGE_MS: Final = 60_000
SKEW_MS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str  # why it was dropped, or "new"/"current"
    manifest: EpochManifest | None = None


@dataclass
class ManifestStore:
    """Validation and the newest accepted envelope (module docstring)."""

    fingerprint: bytes
    newest: bytes = b""
    newest_epoch: int = 0
    manifest: EpochManifest | None = None
    accepted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    #: The newest accepted health note of each member of the newest epoch: (note, envelope).
    health: dict[bytes, tuple[HealthNote, bytes]] = field(default_factory=dict)
    #: The newest epoch's revocation notices by subject: (notice, envelope).
    revocations: dict[bytes, tuple[RevocationNotice, bytes]] = field(default_factory=dict)

    def check(self, data: bytes) -> Verdict:
        """Whether `data` may be forwarded; changes nothing."""
        try:
            manifest = verify_envelope(data, self.fingerprint)
        except (MpcError, ValueError) as exc:
            return Verdict(False, f"invalid: {exc}")
        if manifest.epoch < self.newest_epoch:
            return Verdict(
                False, f"stale: epoch {manifest.epoch} is older than {self.newest_epoch}", manifest
            )
        if manifest.epoch == self.newest_epoch:
            return Verdict(True, "current", manifest)
        return Verdict(True, "new", manifest)

    def offer(self, data: bytes) -> Verdict:
        """Check `data` and keep it if it is the newest; counts every outcome."""
        verdict = self.check(data)
        if not verdict.accepted:
            kind = verdict.reason.split(":", 1)[0]
            self.dropped[kind] = self.dropped.get(kind, 0) + 1
            return verdict
        self.accepted += 1
        if verdict.manifest is not None and verdict.reason == "new":
            self.newest, self.newest_epoch = data, verdict.manifest.epoch
            self.manifest = verdict.manifest
            self.health.clear()  # notes are about an epoch: the new members speak anew
            self.revocations.clear()  # so are notices: re-signed for the new epoch if needed
        return verdict

    def _drop(self, reason: str) -> Verdict:
        kind = reason.split(":", 1)[0]
        self.dropped[kind] = self.dropped.get(kind, 0) + 1
        return Verdict(False, reason)

    def offer_health(self, data: bytes, now_ms: int) -> Verdict:
        """Keep a member's health note if it verifies against the newest manifest (its pinned
        TLS key), is fresh, and is newer than that member's last one (no replays)."""
        if self.manifest is None:
            return self._drop("unknown: no manifest yet to check health notes against")
        try:
            note = verify_note(data, self.manifest)
        except (MpcError, ValueError) as exc:
            if "not the current epoch" in str(exc):
                return self._drop(f"stale: {exc}")
            return self._drop(f"invalid: {exc}")
        if note.issued_ms > now_ms + SKEW_MS:
            return self._drop(f"invalid: health note issued {note.issued_ms - now_ms} ms ahead")
        if note.issued_ms < now_ms - MAX_NOTE_AGE_MS:
            return self._drop(f"stale: health note {now_ms - note.issued_ms} ms old")
        last = self.health.get(note.address)
        if last is not None and note.issued_ms <= last[0].issued_ms:
            return self._drop("stale: not newer than this member's last health note")
        self.health[note.address] = (note, data)
        self.accepted += 1
        return Verdict(True, "health")

    def offer_revocation(self, data: bytes) -> Verdict:
        """Keep a revocation notice the network signed for the newest epoch."""
        if self.manifest is None:
            return self._drop("unknown: no manifest yet to check revocations against")
        try:
            notice = verify_notice(data, self.manifest)
        except (MpcError, ValueError) as exc:
            if "not the current epoch" in str(exc):
                return self._drop(f"stale: {exc}")
            return self._drop(f"invalid: {exc}")
        if notice.subject in self.revocations:
            return Verdict(True, "current")
        self.revocations[notice.subject] = (notice, data)
        self.accepted += 1
        return Verdict(True, "revocation")
