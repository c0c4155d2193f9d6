"""Every committee the agent adopts, cross-checked with its relay (config `relay`; docs/guest.md
"While running", docs/relay.md).

The agent reads committees from its RPC at start (each generation it serves) and while running
(the chain watch: a rotation's new generation, the new epoch after a reshare or refresh). With a
relay configured, `RelayCheck.adopt` accepts one only if it is exactly the manifest the network
signed for that generation and epoch, verified here against the agent's own fingerprint
(`guest.relay_check`), waiting up to `relay_wait` for the relay to deliver that epoch. Members
the network revoked for the signed epoch are then left out.

Relays keep the newest manifest of each unretired generation (relay/store.py), so the agent
asks for the committee's own generation: inside a rotation window the retiring generation's
committee is checked against that generation's newest signed manifest, the new one's against
its own, whenever the agent started. The committee the agent starts with is the one its RPC
calls the latest: it is refused too if the relay network already signed a newer generation
(an RPC that hides a rotation is stale or lying).

When a committee is refused, the last one adopted for its generation stays in use if the
network has signed nothing newer for that generation since (the RPC shows an epoch the relay
has not delivered, or an old one); otherwise, or when the relay cannot be asked, the refusal
stands and the agent fails closed: the generation is not fetched, or its keys are not
confirmed, and requests get the error instead of keys.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

from guest.kms_types import Committee
from guest.relay_check import (
    RelayUnavailable,
    UnsignedCommittee,
    check_against,
    fetch_revocations,
    fetch_signed,
    newest_signed,
    without_revoked,
)
from guest.serving import ChainReading
from guest.watch import ChainSource
from mpc.manifest import EpochManifest

Log = Callable[[str], None]


class RelayCheck:
    """The newest verified manifest of each generation, and the committees adopted against them."""

    def __init__(self, url: str, fingerprint: bytes, *, wait: float, log: Log) -> None:
        self.url = url
        self.fingerprint = fingerprint
        self.wait = wait
        self._log = log
        self._lock = threading.Lock()
        #: generation -> the newest manifest of it this agent verified
        self.verified: dict[int, EpochManifest] = {}
        #: generation -> the last committee adopted (as the RPC showed it, revoked included)
        self.adopted: dict[int, Committee] = {}
        self._refused: set[tuple[int, int]] = set()

    def _record(self, manifest: EpochManifest) -> None:
        with self._lock:
            known = self.verified.get(manifest.generation)
            if known is None or manifest.epoch > known.epoch:
                self.verified[manifest.generation] = manifest

    def _newest(self, generation: int, after: int, wait: float) -> EpochManifest:
        """`generation`'s newest signed manifest once its epoch exceeds `after` (waiting up to
        `wait`), verified and remembered."""
        manifest = fetch_signed(
            self.url, self.fingerprint, generation=generation, after=after, wait=wait
        )
        self._record(manifest)
        return manifest

    def _signed(self, committee: Committee) -> EpochManifest:
        """The newest verified manifest of `committee`'s generation, once the relay delivered
        its epoch or a newer one of that generation (waiting up to `wait`)."""
        generation, epoch = int(committee.network.generation), int(committee.network.epoch)
        return self._newest(generation, epoch - 1, self.wait)

    def _no_newer_generation(self, committee: Committee) -> None:
        """UnsignedCommittee if the network signed a generation newer than `committee`'s, which
        the RPC calls the latest."""
        newest = newest_signed(self.url, self.fingerprint)
        generation = int(committee.network.generation)
        if newest is not None and newest.generation > generation:
            raise UnsignedCommittee(
                f"the RPC shows generation {generation} (epoch {committee.network.epoch}) as the "
                f"latest, but the network signed generation {newest.generation} (epoch "
                f"{newest.epoch}): the RPC is stale or lying; refusing to send requests to its "
                "committee"
            )

    def _still_valid(self, generation: int) -> Committee | None:
        """The last committee adopted for `generation` if the network signed nothing newer of
        that generation since (asks the relay for its newest now)."""
        last = self.adopted.get(generation)
        if last is None:
            return None
        try:
            self._newest(generation, 0, 0.0)
        except RelayUnavailable:
            return None
        signed = self.verified.get(generation)
        if signed is None or signed.epoch != int(last.network.epoch):
            return None
        return last

    def adopt(
        self, committee: Committee, *, latest: bool = False
    ) -> tuple[Committee, EpochManifest, list[int]]:
        """(the committee to use, the manifest it matches, the revoked members left out), or
        UnsignedCommittee / RelayUnavailable (module doc). `latest`: the RPC calls the
        committee's generation the latest one."""
        generation, epoch = int(committee.network.generation), int(committee.network.epoch)
        try:
            signed = self._signed(committee)
            check_against(committee, signed)
        except (UnsignedCommittee, RelayUnavailable) as exc:
            last = self._still_valid(generation)
            if last is None:
                if (generation, epoch) not in self._refused:  # once, not at every retry
                    self._refused.add((generation, epoch))
                    self._log(f"refusing generation {generation}'s committee from the RPC: {exc}")
                raise
            self._log(
                f"not adopting generation {generation}'s committee of epoch {epoch} from the "
                f"RPC ({exc}); epoch {last.network.epoch}'s, which the network signed, stays"
            )
            committee, signed = last, self.verified[generation]
        else:
            if latest:  # no fallback: the last committee adopted is as old as this one
                self._no_newer_generation(committee)
            previous = self.adopted.get(generation)
            self.adopted[generation] = committee
            if previous is None or previous.network.epoch != committee.network.epoch:
                self._log(
                    f"generation {generation}'s committee of epoch {epoch} matches the "
                    f"network-signed manifest from {self.url}"
                )
        notices = fetch_revocations(self.url, generation)
        kept, revoked = without_revoked(committee, notices, signed)
        return kept, signed, revoked


class RelayCheckedChain:
    """A `ChainSource` whose committees pass `RelayCheck.adopt` (readings pass unchanged)."""

    def __init__(self, source: ChainSource, check: RelayCheck) -> None:
        self.source = source
        self.check = check

    def read(self, watched: Callable[[int], Collection[int]]) -> ChainReading:
        return self.source.read(watched)

    def committee(self, generation: int) -> Committee:
        kept, _, _ = self.check.adopt(self.source.committee(generation))
        return kept
