"""The follower of `tkms relay` (core environment): each new epoch's manifest, signed.

It watches the chain (the latest generation and its active epoch, every `interval` seconds);
when the epoch changes it reads the committee (`guest.committee`, checked against the
fingerprint), builds the manifest it expects and asks the members for their partials over it
(SignPartial KIND_EPOCH_MANIFEST, over the attested channels `guest.kms_client` pins). Each
member signs only what its own chain view shows, so a relay behind a lying RPC gathers no
signature. The envelope (manifest, signature, key chain) is checked like any received one and
handed to the gossip process; the newest is handed again every `republish` seconds so relays
that joined late learn it too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from contracts import GovernanceClient
from guest.committee import CommitteeError, UntrustedNetwork, committee_from_chain, key_chain
from guest.kms_client import DerivationError, KmsClient
from guest.relay_check import manifest_of
from mpc.errors import MpcError
from mpc.manifest import SignedManifest, verify_envelope
from protos.tkms.v1 import kms_pb2

INTERVAL: Final = 0.2
REPUBLISH: Final = 30.0
_SIGN = kms_pb2.SignPartialRequest


def _no_evidence(report_data: bytes) -> tuple[bytes, str]:
    raise RuntimeError("an epoch manifest is public: no evidence is ever asked for")


def active_epoch(governance: GovernanceClient) -> tuple[int, int]:
    """(latest generation, its active epoch) now; (0, 0) before the first DKG."""
    block = governance.w3.eth.block_number
    generation = governance.get_latest_generation(block=block)
    if generation == 0:
        return 0, 0
    return generation, governance.get_generation(generation, block=block).active_epoch


async def signed_envelope(
    governance: GovernanceClient, fingerprint: bytes, *, timeout: float = 5.0
) -> bytes:
    """The envelope of the latest generation's active epoch, threshold-signed by its members."""
    committee = await asyncio.to_thread(committee_from_chain, governance, fingerprint=fingerprint)
    generation = committee.network.generation
    block = await asyncio.to_thread(lambda: governance.w3.eth.block_number)
    info = await asyncio.to_thread(governance.get_generation, generation, block=block)
    keys, links = await asyncio.to_thread(key_chain, governance, generation, block, info.pk2)
    statement = manifest_of(committee).encode()
    client = KmsClient(committee, _no_evidence, timeout=timeout)
    try:
        request = _SIGN(kind=_SIGN.KIND_EPOCH_MANIFEST, generation=generation)
        signed = await client.sign_expected(request, statement)
    finally:
        await client.close()
    envelope = SignedManifest(statement, signed.signature, tuple(keys), tuple(links)).encode()
    verify_envelope(envelope, fingerprint)
    return envelope


async def follow(
    governance: GovernanceClient,
    fingerprint: bytes,
    publish: Callable[[bytes], None],
    report: Callable[[str], None],
    *,
    interval: float = INTERVAL,
    republish: float = REPUBLISH,
) -> None:
    """Publish every new epoch's envelope until cancelled (module docstring)."""
    signed_epoch, newest, last = 0, b"", 0.0
    while True:
        try:
            _, epoch = await asyncio.to_thread(active_epoch, governance)
            if epoch and epoch != signed_epoch:
                newest = await signed_envelope(governance, fingerprint)
                signed_epoch, last = epoch, 0.0
                report(f"signed the manifest of epoch {epoch}")
            if newest and time.monotonic() - last >= republish:
                publish(newest)
                last = time.monotonic()
        except (
            CommitteeError,
            UntrustedNetwork,
            DerivationError,
            MpcError,
            OSError,
            ValueError,
        ) as exc:
            # Members not yet at this epoch, a node down, an RPC hiccup: ask again shortly.
            report(f"cannot sign the current manifest yet: {exc}")
            await asyncio.sleep(1.0)
        await asyncio.sleep(interval)
