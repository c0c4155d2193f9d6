"""The relay network as a second source: the committee an RPC shows must be one the network
signed (docs/relay.md).

A client reads its committee from one JSON-RPC (`guest.committee`); PK2 there chains to the
fingerprint, but the members, endpoints and TLS pins do not. A relay delivers the newest epoch
manifest the network threshold-signed of each unretired generation (the latest and, in a
rotation window, the retiring one); `check_committee` verifies it against the client's own
fingerprint (the relay is never trusted) and refuses a committee that differs from it, or that
is older than it, within the committee's own generation: a lying RPC is caught before any
request is sent to its committee.
`without_revoked` then drops the members the network has revoked (`mpc.revocation`) for that
epoch.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from typing import Final

from guest.kms_types import Committee
from mpc.errors import MpcError
from mpc.manifest import EpochManifest, ManifestMember, verify_envelope
from mpc.revocation import verify_notice

#: Seconds a client waits for its relay's answer beyond any long-poll wait.
HTTP_SLACK: Final = 5.0


class RelayUnavailable(Exception):
    """The relay could not be asked, or had no verified manifest to give."""


class NoManifest(RelayUnavailable):
    """The relay answered, but holds no manifest newer than the epoch asked about."""


class UnsignedCommittee(Exception):
    """The committee from the RPC is not the one the network signed: do not use it."""


def manifest_of(committee: Committee) -> EpochManifest:
    """The manifest `committee` would be, as the network signs it (members need addresses)."""
    net = committee.network
    return EpochManifest(
        chain_id=net.chain_id,
        governance=net.contract,
        generation=net.generation,
        epoch=net.epoch,
        threshold=committee.threshold,
        group_key=committee.group_key,
        members=tuple(
            ManifestMember(m.address, m.endpoint, m.tls_key_hash) for m in committee.members
        ),
    )


def fetch_envelope(url: str, *, after: int = 0, wait: float = 0.0, generation: int = 0) -> bytes:
    """The newest envelope of `generation` (0: the newest generation) from the relay at `url`
    (http://HOST:PORT), once its epoch is newer than `after`."""
    target = f"{url.rstrip('/')}/v1/manifest?after={after}&wait={wait}"
    if generation:
        target += f"&generation={generation}"
    try:
        with urllib.request.urlopen(target, timeout=wait + HTTP_SLACK) as reply:
            body: bytes = reply.read()
            status = reply.status
    except (urllib.error.URLError, OSError) as exc:
        raise RelayUnavailable(f"relay {url}: {exc}") from None
    if status == 204 or not body:
        of = f" of generation {generation}" if generation else ""
        raise NoManifest(f"relay {url} has no manifest{of} newer than epoch {after}")
    return body


def verified_manifest(envelope: bytes, fingerprint: bytes) -> EpochManifest:
    try:
        return verify_envelope(envelope, fingerprint)
    except (MpcError, ValueError) as exc:
        raise RelayUnavailable(f"the relay's manifest does not verify: {exc}") from None


def check_committee(committee: Committee, envelope: bytes, fingerprint: bytes) -> EpochManifest:
    """The network-signed manifest `envelope` if `committee` is exactly it; else
    UnsignedCommittee naming the difference (RelayUnavailable if the envelope is bad)."""
    signed = verified_manifest(envelope, fingerprint)
    check_against(committee, signed)
    return signed


def check_against(committee: Committee, signed: EpochManifest) -> None:
    """UnsignedCommittee naming the difference unless `committee` is exactly the verified
    manifest `signed` of the committee's own generation."""
    net = committee.network
    if signed.generation != net.generation:
        raise UnsignedCommittee(
            f"generation {net.generation}'s committee from the RPC cannot be checked against "
            f"generation {signed.generation}'s manifest; refusing to send requests to it"
        )
    if signed.epoch > net.epoch:
        raise UnsignedCommittee(
            f"the RPC shows epoch {net.epoch} of generation {net.generation}, but the network "
            f"signed epoch {signed.epoch} of generation {signed.generation}: the RPC is stale "
            "or lying; refusing to send requests to its committee"
        )
    if signed.epoch < net.epoch:
        raise UnsignedCommittee(
            f"the RPC shows epoch {net.epoch}, newer than the newest the network signed "
            f"({signed.epoch}): wait for the relay network to deliver it"
        )
    shown = manifest_of(committee)
    if shown != signed:
        raise UnsignedCommittee(
            f"epoch {net.epoch}'s committee from the RPC differs from the one the network "
            f"signed ({_difference(shown, signed)}): the RPC is lying; refusing to send "
            "requests to its committee"
        )


def cross_check(
    committee: Committee, url: str, fingerprint: bytes, *, wait: float
) -> EpochManifest:
    """Ask the relay at `url` for the manifest of `committee`'s generation and epoch (or a newer
    epoch of that generation), waiting up to `wait` seconds for it to arrive, and check the
    committee against it (`check_against`). Fails closed: RelayUnavailable if no verified
    manifest of that generation came."""
    net = committee.network
    signed = fetch_signed(
        url, fingerprint, generation=net.generation, after=net.epoch - 1, wait=wait
    )
    check_against(committee, signed)
    return signed


def fetch_signed(
    url: str, fingerprint: bytes, *, generation: int, after: int, wait: float
) -> EpochManifest:
    """Generation `generation`'s newest manifest with an epoch newer than `after` from the
    relay at `url` (waiting up to `wait` s), verified against `fingerprint`; RelayUnavailable
    if none came, it does not verify, or it is of another generation."""
    envelope = fetch_envelope(url, after=after, wait=wait, generation=generation)
    signed = verified_manifest(envelope, fingerprint)
    if signed.generation != generation:
        raise RelayUnavailable(
            f"relay {url} answered with generation {signed.generation}'s manifest when asked "
            f"for generation {generation}'s (a relay that keeps the newest generation only?)"
        )
    return signed


def newest_signed(url: str, fingerprint: bytes) -> EpochManifest | None:
    """The newest generation's newest manifest the relay holds, verified (None if none)."""
    try:
        envelope = fetch_envelope(url)
    except NoManifest:
        return None
    return verified_manifest(envelope, fingerprint)


def fetch_revocations(url: str, generation: int = 0) -> list[bytes]:
    """The revocation envelopes the relay at `url` holds for `generation`'s newest epoch (0:
    the newest generation's; unverified: see `without_revoked`)."""
    target = f"{url.rstrip('/')}/v1/revocations"
    if generation:
        target += f"?generation={generation}"
    try:
        with urllib.request.urlopen(target, timeout=HTTP_SLACK) as r:
            doc = json.loads(r.read())
        return [bytes.fromhex(n["envelope"]) for n in doc["notices"]]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        raise RelayUnavailable(f"relay {url}: no revocation list ({exc})") from None


def without_revoked(
    committee: Committee, envelopes: list[bytes], signed: EpochManifest
) -> tuple[Committee, list[int]]:
    """`committee` without the members the network revoked for `signed`'s epoch, and their
    indices. A notice that does not verify is not believed (a relay may make anything up);
    fewer than t members left is UnsignedCommittee."""
    revoked: set[bytes] = set()
    for envelope in envelopes:
        try:
            revoked.add(verify_notice(envelope, signed).subject)
        except (MpcError, ValueError):
            continue
    dropped = [m.index for m in committee.members if m.address in revoked]
    kept = tuple(m for m in committee.members if m.address not in revoked)
    if len(kept) < committee.threshold:
        raise UnsignedCommittee(
            f"the network revoked members {dropped} of epoch {signed.epoch}: {len(kept)} left, "
            f"fewer than the threshold {committee.threshold}"
        )
    return dataclasses.replace(committee, members=kept), dropped


def _difference(shown: EpochManifest, signed: EpochManifest) -> str:
    if shown.threshold != signed.threshold:
        return f"threshold {shown.threshold}, signed {signed.threshold}"
    if len(shown.members) != len(signed.members):
        return f"{len(shown.members)} members, signed {len(signed.members)}"
    for k, (a, b) in enumerate(zip(shown.members, signed.members, strict=True), start=1):
        if a != b:
            return (
                f"member {k}: 0x{a.address.hex()} at {a.endpoint} pinned to "
                f"{a.tls_key_hash.hex()[:16]}…, signed 0x{b.address.hex()} at {b.endpoint} "
                f"pinned to {b.tls_key_hash.hex()[:16]}…"
            )
    return "chain, governance or group key"
