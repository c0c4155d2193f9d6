"""The newest verified manifest a relay holds, and the rule that drops stale ones.

Pure and synchronous: the gossip validator calls `offer` for every message before libp2p
forwards it, so a forged, malformed or stale envelope is dropped at the first relay that sees
it and reaches neither the mesh nor a client. Epoch numbers grow across generations (the
governance numbers every epoch once), so "newer" is simply a larger epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mpc.errors import MpcError
from mpc.manifest import EpochManifest, verify_envelope


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
    accepted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

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
        return verdict
