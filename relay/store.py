"""The newest verified manifest of each unretired generation a relay holds, and the rules that
drop stale ones.

Pure and synchronous: the gossip validator calls `offer` for every message before libp2p
forwards it, so a forged, malformed or stale envelope is dropped at the first relay that sees
it and reaches neither the mesh nor a client.

During a rotation window two generations are served (the retiring one, by default until its
window ends, and the new one: `guest.serving.Policy.wanted` asks for the latest and the one
before it, never more), so a relay keeps the newest manifest of each of the newest
`GENERATIONS` = 2 generations it heard of: generations `G - 1` and `G` once it accepted one of
generation `G`. "Newer" is judged within a generation (an envelope older than the newest epoch
*of its own generation* is stale); an envelope of a generation below `G - 1` is stale too (no
client asks for it, and keeping it would let anyone fill the store with old signed bytes).

Health notes are about the newest generation's newest epoch (the follower asks its members);
revocation notices are kept per held generation, each for that generation's newest epoch (a
removed node may sit in the retiring generation's committee as well).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from mpc.encoding import unframe
from mpc.errors import MpcError
from mpc.manifest import EpochManifest, verify_envelope
from mpc.nodehealth import HealthNote, verify_note
from mpc.revocation import RevocationNotice, decode_notice, verify_notice

#: A health note older than this (by the note's own clock) is stale; one further ahead than
#: SKEW_MS is refused as from the future.
MAX_NOTE_AGE_MS: Final = 60_000
SKEW_MS: Final = 10_000
#: Generations kept: the latest and the retiring one of a rotation window (module docstring).
GENERATIONS: Final = 2


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str  # why it was dropped, or "new"/"current"
    manifest: EpochManifest | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """The newest accepted envelope of one generation, and its verified manifest."""

    envelope: bytes
    manifest: EpochManifest

    @property
    def epoch(self) -> int:
        return self.manifest.epoch


@dataclass
class ManifestStore:
    """Validation and the newest accepted envelope of each kept generation (module docstring)."""

    fingerprint: bytes
    #: generation -> its newest accepted envelope; at most GENERATIONS, the newest ones.
    held: dict[int, Held] = field(default_factory=dict)
    accepted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    #: The newest accepted health note of each member of the newest epoch: (note, envelope).
    health: dict[bytes, tuple[HealthNote, bytes]] = field(default_factory=dict)
    #: generation -> that generation's newest epoch's revocation notices by subject.
    revocations: dict[int, dict[bytes, tuple[RevocationNotice, bytes]]] = field(
        default_factory=dict
    )

    @property
    def newest_generation(self) -> int:
        return max(self.held, default=0)

    def of(self, generation: int = 0) -> Held | None:
        """The newest envelope of `generation` (0: of the newest generation), if held."""
        return self.held.get(generation or self.newest_generation)

    @property
    def newest(self) -> bytes:
        held = self.of()
        return b"" if held is None else held.envelope

    @property
    def newest_epoch(self) -> int:
        held = self.of()
        return 0 if held is None else held.epoch

    @property
    def manifest(self) -> EpochManifest | None:
        held = self.of()
        return None if held is None else held.manifest

    def check(self, data: bytes) -> Verdict:
        """Whether `data` may be forwarded; changes nothing."""
        try:
            manifest = verify_envelope(data, self.fingerprint)
        except (MpcError, ValueError) as exc:
            return Verdict(False, f"invalid: {exc}")
        generation, newest = manifest.generation, self.newest_generation
        if generation <= newest - GENERATIONS:
            return Verdict(
                False,
                f"stale: generation {generation} is older than the {GENERATIONS} newest "
                f"(generation {newest} is the newest)",
                manifest,
            )
        known = self.held.get(generation)
        if known is not None and manifest.epoch < known.epoch:
            return Verdict(
                False,
                f"stale: epoch {manifest.epoch} is older than generation {generation}'s newest, "
                f"{known.epoch}",
                manifest,
            )
        if known is not None and manifest.epoch == known.epoch:
            return Verdict(True, "current", manifest)
        return Verdict(True, "new", manifest)

    def offer(self, data: bytes) -> Verdict:
        """Check `data` and keep it if it is the newest of its generation; counts every
        outcome."""
        verdict = self.check(data)
        if not verdict.accepted:
            kind = verdict.reason.split(":", 1)[0]
            self.dropped[kind] = self.dropped.get(kind, 0) + 1
            return verdict
        self.accepted += 1
        if verdict.manifest is not None and verdict.reason == "new":
            generation = verdict.manifest.generation
            was_newest = self.newest_epoch
            self.held[generation] = Held(data, verdict.manifest)
            self.revocations.pop(generation, None)  # notices are about an epoch: re-signed
            for old in [g for g in self.held if g <= self.newest_generation - GENERATIONS]:
                del self.held[old]
                self.revocations.pop(old, None)
            if self.newest_epoch != was_newest:
                self.health.clear()  # notes are about the newest epoch: its members anew
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
        """Keep a revocation notice the network signed for the newest epoch of a held
        generation (checked against that generation's manifest)."""
        if not self.held:
            return self._drop("unknown: no manifest yet to check revocations against")
        try:
            parts = unframe(data, "revocation envelope")
            generation = decode_notice(parts[1]).generation if len(parts) == 3 else 0
        except (MpcError, ValueError) as exc:
            return self._drop(f"invalid: {exc}")
        held = self.held.get(generation) or self.held[self.newest_generation]
        try:
            notice = verify_notice(data, held.manifest)
        except (MpcError, ValueError) as exc:
            if "not the current epoch" in str(exc):
                return self._drop(f"stale: {exc}")
            return self._drop(f"invalid: {exc}")
        kept = self.revocations.setdefault(notice.generation, {})
        if notice.subject in kept:
            return Verdict(True, "current")
        kept[notice.subject] = (notice, data)
        self.accepted += 1
        return Verdict(True, "revocation")
