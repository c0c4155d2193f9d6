"""The follower of `tkms relay` (core environment): each new epoch's manifest, signed.

It watches the chain (the latest generation's active epoch and, inside a rotation window, the
retiring generation's, every `interval` seconds); when a generation's epoch changes it reads
its committee (`guest.committee`, checked against the fingerprint), builds the manifest it
expects and asks the members for their partials over it (SignPartial KIND_EPOCH_MANIFEST,
over the attested channels `guest.kms_client` pins). Each member signs only what its own
chain view shows, so a relay behind a lying RPC gathers no signature. The envelope (manifest,
signature, key chain) is checked like any received one and handed to the gossip process; each
generation's newest is handed again every `republish` seconds so relays that joined late
(inside a rotation window too) learn it. Every few seconds it also asks each member of the
latest generation's signed epoch for its health note (GetHealthNote, signed with the member's
TLS key) and hands those on, and every second it checks whether a member of that epoch was
removed from the registry, in which case it has the committee sign a revocation notice
(SignPartial KIND_REVOCATION) and hands that on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import grpc

from contracts import GenerationStatus, GovernanceClient, NodeStatus
from guest.committee import CommitteeError, UntrustedNetwork, committee_from_chain, key_chain
from guest.kms_channel import ChannelRefused
from guest.kms_client import DerivationError, KmsClient
from guest.relay_check import manifest_of
from mpc.errors import MpcError
from mpc.group import G2
from mpc.manifest import SignedManifest, verify_envelope
from mpc.revocation import NODE_REMOVED, RevocationNotice, notice_envelope
from protos.tkms.v1 import kms_pb2

INTERVAL: Final = 0.2
#: Seconds before asking members again whose views lag the chain (nodes poll every 0.5 s).
RETRY: Final = 0.05
#: Seconds of refusals after which the committee is read from the chain again.
REREAD: Final = 3.0
REPUBLISH: Final = 30.0
#: Seconds between rounds of members' health notes.
HEALTH_INTERVAL: Final = 5.0
#: Seconds between checks of the signed committee's members for removal.
REVOKE_INTERVAL: Final = 1.0
_SIGN = kms_pb2.SignPartialRequest
#: What a member that is down, restarting or being replaced raises to a health request.
_UNANSWERED = (grpc.aio.AioRpcError, grpc.aio.UsageError, ChannelRefused, OSError, RuntimeError)


def _no_evidence(report_data: bytes) -> tuple[bytes, str]:
    raise RuntimeError("an epoch manifest is public: no evidence is ever asked for")


def active_epochs(governance: GovernanceClient) -> dict[int, int]:
    """generation -> its active epoch, for the generations clients are served now: the latest
    and, while it is retiring (a rotation window), the one before it; {} before the first DKG."""
    block = governance.w3.eth.block_number
    latest = governance.get_latest_generation(block=block)
    if latest == 0:
        return {}
    active = {latest: governance.get_generation(latest, block=block).active_epoch}
    if latest > 1:
        previous = governance.get_generation(latest - 1, block=block)
        if previous.status is GenerationStatus.RETIRING:
            active[latest - 1] = previous.active_epoch
    return active


@dataclass
class Pending:
    """An epoch being signed: its committee's client and the bytes the members must sign."""

    epoch: int
    client: KmsClient
    statement: bytes
    keys: tuple[G2, ...]
    links: tuple[bytes, ...]
    prepared: float = field(default_factory=time.monotonic)


async def prepare(
    governance: GovernanceClient, fingerprint: bytes, timeout: float, generation: int = 0
) -> Pending:
    """Read `generation`'s committee (0: the latest's; checked against the fingerprint) and
    its key chain."""
    committee = await asyncio.to_thread(
        committee_from_chain, governance, generation, fingerprint=fingerprint
    )
    generation = committee.network.generation
    block = await asyncio.to_thread(lambda: governance.w3.eth.block_number)
    info = await asyncio.to_thread(governance.get_generation, generation, block=block)
    keys, links = await asyncio.to_thread(key_chain, governance, generation, block, info.pk2)
    return Pending(
        epoch=committee.network.epoch,
        client=KmsClient(committee, _no_evidence, timeout=timeout),
        statement=manifest_of(committee).encode(),
        keys=tuple(keys),
        links=tuple(links),
    )


async def sign(pending: Pending, fingerprint: bytes) -> bytes:
    """The envelope, once t members sign exactly the expected manifest (DerivationError if
    fewer do: typically their chain views have not reached the epoch yet)."""
    generation = pending.client.committee.network.generation
    request = _SIGN(kind=_SIGN.KIND_EPOCH_MANIFEST, generation=generation)
    signed = await pending.client.sign_expected(request, pending.statement)
    envelope = SignedManifest(pending.statement, signed.signature, pending.keys, pending.links)
    data = envelope.encode()
    verify_envelope(data, fingerprint)
    return data


async def relay_health(
    current: Callable[[], Pending | None],
    publish_health: Callable[[bytes], None],
    report: Callable[[str], None],
    interval: float = HEALTH_INTERVAL,
) -> None:
    """Every `interval` seconds, each member's signed health note of the signed epoch, handed
    on as it is: the gossip validators check it against the manifest's TLS pins."""
    request = kms_pb2.GetHealthNoteRequest()
    while True:
        await asyncio.sleep(interval)
        pending = current()
        if pending is None:
            continue
        for member in pending.client.committee.members:
            try:
                reply: kms_pb2.GetHealthNoteResponse = await pending.client.rpc(
                    member, lambda stub: stub.GetHealthNote(request, timeout=2.0)
                )
            except _UNANSWERED as exc:
                # A member that does not answer is what the others' notes will show.
                report(f"no health note from member {member.index}: {exc}")
                continue
            publish_health(bytes(reply.envelope))


async def relay_revocations(
    governance: GovernanceClient,
    current: Callable[[], Pending | None],
    publish_revocation: Callable[[bytes], None],
    report: Callable[[str], None],
    interval: float = REVOKE_INTERVAL,
    republish: float = REPUBLISH,
) -> None:
    """Every `interval` seconds, check whether a member of the signed epoch has been removed
    from the registry; if so, have the committee sign a revocation notice for it (t members
    that no longer approve it) and hand it on; notices are handed again every `republish` s."""
    signed: dict[tuple[int, bytes], bytes] = {}
    last = 0.0
    while True:
        await asyncio.sleep(interval)
        pending = current()
        if pending is None:
            continue
        net = pending.client.committee.network
        for member in pending.client.committee.members:
            key = (net.epoch, member.address)
            if key in signed:
                continue
            node = await asyncio.to_thread(governance.get_node, "0x" + member.address.hex())
            if node.status is not NodeStatus.REMOVED:
                continue
            notice = RevocationNotice(
                chain_id=net.chain_id,
                governance=net.contract,
                generation=net.generation,
                epoch=net.epoch,
                kind=NODE_REMOVED,
                subject=member.address,
            )
            request = _SIGN(
                kind=_SIGN.KIND_REVOCATION, generation=net.generation, subject=member.address
            )
            try:
                done = await pending.client.sign_expected(request, notice.encode())
            except DerivationError as exc:
                report(f"members do not revoke 0x{member.address.hex()} yet: {exc}")
                continue
            signed[key] = notice_envelope(notice, done.signature)
            report(f"signed the revocation of member {member.index} (0x{member.address.hex()})")
            publish_revocation(signed[key])
        if time.monotonic() - last >= republish:
            for (epoch, _), envelope in signed.items():
                if epoch == net.epoch:
                    publish_revocation(envelope)
            last = time.monotonic()


@dataclass
class Track:
    """The follower's state for one generation: the epoch signed last, its envelope and when it
    was handed on, the committee of that epoch and the one being signed."""

    signed_epoch: int = 0
    newest: bytes = b""
    last: float = 0.0
    pending: Pending | None = None
    signed: Pending | None = None

    async def close(self) -> None:
        await _close(self.pending, keep=self.signed)
        await _close(self.signed, keep=None)


async def _step(
    track: Track,
    generation: int,
    epoch: int,
    governance: GovernanceClient,
    fingerprint: bytes,
    publish: Callable[[bytes], None],
    report: Callable[[str], None],
    *,
    republish: float,
    timeout: float,
) -> bool:
    """Sign `generation`'s `epoch` if it is new, hand its envelope on when due; True if the
    members should be asked again soon (their chain views lag)."""
    try:
        if epoch and epoch != track.signed_epoch:
            if track.pending is None or track.pending.epoch != epoch:
                await _close(track.pending, keep=track.signed)
                track.pending = None
                track.pending = await prepare(governance, fingerprint, timeout, generation)
            track.newest = await sign(track.pending, fingerprint)
            track.signed_epoch, track.last = track.pending.epoch, 0.0
            previous, track.signed = track.signed, track.pending
            await _close(previous, keep=track.pending)
            report(f"signed the manifest of generation {generation}'s epoch {track.signed_epoch}")
        if track.newest and time.monotonic() - track.last >= republish:
            publish(track.newest)
            track.last = time.monotonic()
    except DerivationError as exc:
        # Members whose chain views have not reached the epoch sign the one before: they catch
        # up within their poll interval, so ask again soon.
        report(f"members do not sign generation {generation}'s epoch {epoch} yet: {exc}")
        if track.pending is not None and time.monotonic() - track.pending.prepared > REREAD:
            # Still refused: the chain may have changed since (a member moved its endpoint),
            # so read the committee again.
            await _close(track.pending, keep=track.signed)
            track.pending = None
        return True
    except (CommitteeError, UntrustedNetwork, MpcError, OSError, ValueError) as exc:
        report(f"cannot sign generation {generation}'s current manifest: {exc}")
        await asyncio.sleep(1.0)
    return False


async def follow(
    governance: GovernanceClient,
    fingerprint: bytes,
    publish: Callable[[bytes], None],
    report: Callable[[str], None],
    *,
    publish_health: Callable[[bytes], None] | None = None,
    publish_revocation: Callable[[bytes], None] | None = None,
    interval: float = INTERVAL,
    republish: float = REPUBLISH,
    timeout: float = 5.0,
) -> None:
    """Publish every new epoch's envelope of the latest generation and, inside a rotation
    window, of the retiring one (and, with `publish_health`, the latest's members' health
    notes) until cancelled (module docstring)."""
    tracks: dict[int, Track] = {}
    latest = [0]

    def current() -> Pending | None:
        track = tracks.get(latest[0])
        return None if track is None else track.signed

    helpers: list[asyncio.Future[None]] = []
    if publish_health is not None:
        helpers.append(asyncio.ensure_future(relay_health(current, publish_health, report)))
    if publish_revocation is not None:
        revoke = relay_revocations(governance, current, publish_revocation, report)
        helpers.append(asyncio.ensure_future(revoke))
    try:
        while True:
            try:
                active = await asyncio.to_thread(active_epochs, governance)
            except (OSError, ValueError) as exc:
                report(f"cannot read the active epochs: {exc}")
                await asyncio.sleep(1.0)
                continue
            latest[0] = max(active, default=0)
            for gone in [g for g in tracks if g not in active]:
                await tracks.pop(gone).close()  # retired: its members erase their shares
            again = False
            for generation, epoch in sorted(active.items(), reverse=True):
                track = tracks.setdefault(generation, Track())
                again |= await _step(
                    track,
                    generation,
                    epoch,
                    governance,
                    fingerprint,
                    publish,
                    report,
                    republish=republish,
                    timeout=timeout,
                )
            await asyncio.sleep(RETRY if again else interval)
    finally:
        for helper in helpers:
            helper.cancel()
        for track in tracks.values():
            await track.close()


async def _close(pending: Pending | None, *, keep: Pending | None) -> None:
    if pending is not None and pending is not keep:
        await pending.client.close()
