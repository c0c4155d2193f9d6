"""Gathering a sigma on a node: its own partial plus those of other members, over the peer channel.

A node assembles a sigma itself in two places: the generation's KMS root (`node.kms_root`)
and, for an app that opted in, the app's root seed for an unmodified dstack guest
(`node.dstack_service`). Both ask every other member of the generation's active epoch at once
for its partial, encrypted to a fresh ephemeral key; each answer is decrypted and checked with
its DLEQ proof against the member's V_i; the first t valid ones (this node's own included) are
combined and checked against PK2. Fewer than t within `timeout`: NotReady naming each member
that failed and why, so the caller retries or asks another node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mpc import EncodingError, EncryptedPartial, EphemeralKey, InvalidPartial, MpcError
from mpc.derive import (
    KeyRequest,
    NetworkContext,
    VerifiedPartial,
    combine_partials,
    is_consistent_with_group_key,
    open_partial,
)
from mpc.dleq import DleqProof
from mpc.group import G1, Rng
from mpc.sharing import Share
from mpc.types import Epoch, Generation, MemberIndex
from node.chainview import Committee, NodeRecord
from node.errors import InvalidRequest, NodeError, NotReady
from protos.tkms.v1 import kms_pb2

#: (member index, member, requester key E) -> that member's encrypted partial.
FetchPartial = Callable[[int, NodeRecord, bytes], Awaitable[kms_pb2.Partial]]
#: generation (0 = latest) -> the active committee of that generation and this node's share.
ShareLookup = Callable[[int], tuple[Committee, Share] | None]


def held_share(shares: ShareLookup, generation: int) -> tuple[Committee, Share]:
    """This node's share of `generation` (0 = latest), or NotReady saying it holds none."""
    found = shares(generation)
    if found is None:
        which = "the latest generation" if generation == 0 else f"generation {generation}"
        raise NotReady(f"this node holds no active key share for {which}")
    return found


def lend_partial_request(
    shares: ShareLookup, generation: int, epoch: int, requester: bytes
) -> tuple[Committee, Share, G1]:
    """A member's request for our partial, checked: the generation's active epoch here is the
    one it names, and its key E decodes. (committee, our share, E) or the error to answer."""
    if generation < 1:
        raise InvalidRequest(f"generation must be >= 1, got {generation}")
    committee, share = held_share(shares, generation)
    if committee.epoch != epoch:
        raise NotReady(
            f"generation {generation}'s active epoch here is {committee.epoch}, not {epoch}"
        )
    try:
        key = G1.from_bytes(requester, "requester_key")
    except EncodingError as exc:
        raise InvalidRequest(str(exc)) from None
    return committee, share, key


def decode_partial(partial: kms_pb2.Partial) -> EncryptedPartial:
    """The wire form of a partial (`node.kms_root.encode_partial`) decoded and checked."""
    return EncryptedPartial(
        generation=Generation(partial.generation),
        epoch=Epoch(partial.epoch),
        member=MemberIndex(partial.member),
        y=G1.from_bytes(partial.y, "partial Y"),
        z=G1.from_bytes(partial.z, "partial Z"),
        proof=DleqProof.from_bytes(partial.proof),
    )


async def gather_sigma(
    *,
    committee: Committee,
    share: Share,
    request: KeyRequest,
    network: NetworkContext,
    fetch: FetchPartial,
    rng: Rng,
    timeout: float,
    what: str,
) -> G1:
    """sigma of `request` from t verified partials (module docstring); `what` names it in
    errors ("generation 2's KMS root", ...)."""
    ephemeral = EphemeralKey.generate(rng)
    good: dict[int, VerifiedPartial] = {
        share.member: VerifiedPartial(share.member, request.point() * share.value)
    }
    failures: dict[str, str] = {}

    async def ask(index: int, peer: NodeRecord) -> VerifiedPartial:
        answer = await fetch(index, peer, ephemeral.public.to_bytes())
        partial = decode_partial(answer)
        if partial.member != index:
            raise InvalidPartial(index, f"answered as member {partial.member}")
        return open_partial(
            partial,
            request,
            ephemeral=ephemeral,
            verification_key=committee.verification_key(index),
            network=network,
        )

    tasks = {
        asyncio.ensure_future(ask(k, peer)): (k, peer)
        for k, peer in enumerate(committee.members, start=1)
        if k != share.member
    }
    pending = set(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while pending and len(good) < committee.threshold:
            done, pending = await asyncio.wait(
                pending,
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                break
            for task in done:
                index, peer = tasks[task]
                try:
                    good[index] = task.result()
                except (NodeError, MpcError) as exc:
                    failures[f"member {index} (0x{peer.address.hex()})"] = str(exc)
    finally:
        for task in pending:
            task.cancel()
    if len(good) < committee.threshold:
        detail = "; ".join(f"{who}: {why}" for who, why in sorted(failures.items()))
        raise NotReady(
            f"cannot gather {what}: {len(good)} of {committee.threshold} partials "
            f"({detail or 'no answer in time'})"
        )
    sigma = combine_partials(list(good.values()), committee.threshold)
    if not is_consistent_with_group_key(sigma, request, committee.pk2):
        raise NotReady(f"{what}: the partials disagree with generation {network.generation}'s PK2")
    return sigma
