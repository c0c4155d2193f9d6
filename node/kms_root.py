"""The generation's secp256k1 KMS root on a node: gathered from t partials, lent to peers.

The root (`mpc.kmsroot`, design §3.5) is sigma_root of a reserved request under its own DST,
hashed into a secp256k1 key. `KmsRoots.get(g)` makes it on first use: this node's own
partial plus those of other members of generation g's active epoch, asked concurrently over
the attested peer channel (`Peer.KmsRootPartial`, encrypted to a fresh ephemeral key, each
with its DLEQ proof against V_i); t verified partials are combined, checked against PK2 and
hashed. The root stays in memory (never sealed, never logged): after a restart the node
gathers it again. `KmsRoots.partial_for` answers a peer's request; the peer gate has already
checked that the caller is a member of the epoch it names, and this checks that the epoch is
the generation's active one here.

`KmsRoot` signs what dstack's KMS signs with its root (`sign_app_key`, and `sign_message` for
other app-bound values such as an env encryption key), so a dstack-compatible endpoint can
use it as is. Any node holding the root can sign anything with it: that is the price of a
dstack-verifiable chain without threshold ECDSA (docs/node-design.md).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from mpc import (
    EncodingError,
    EncryptedPartial,
    EphemeralKey,
    InvalidPartial,
    MpcError,
    NetworkContext,
)
from mpc.derive import (
    VerifiedPartial,
    combine_partials,
    derive_partial,
    is_consistent_with_group_key,
    open_partial,
)
from mpc.dleq import DleqProof
from mpc.group import G1, Rng
from mpc.k256 import kms_issued_digest, kms_message_digest, public_key, sign_recoverable
from mpc.kmsroot import derive_kms_root, kms_root_request
from mpc.sharing import Share
from mpc.types import Epoch, Generation, MemberIndex
from node.chainview import ChainView, Committee, NodeRecord
from node.errors import InvalidRequest, NodeError, NotReady
from node.logs import get_logger
from protos.tkms.v1 import kms_pb2

log = get_logger("tkms.node.kms_root")

#: Seconds to gather the root's partials from peers before giving up (the caller retries).
GATHER_TIMEOUT: Final = 8.0

ShareLookup = Callable[[int], tuple[Committee, Share] | None]
ViewSource = Callable[[], ChainView | None]
#: (peer, generation, epoch, requester key) -> the peer's encrypted partial of the root.
FetchPartial = Callable[[NodeRecord, int, int, bytes], Awaitable[kms_pb2.Partial]]


@dataclass(frozen=True, slots=True)
class KmsRoot:
    """A generation's KMS root key. Secret: its repr shows only the public key."""

    generation: int
    public: bytes  # 33 bytes SEC1-compressed
    secret: bytes = field(repr=False)

    def sign_app_key(self, app_id: bytes, app_public_key: bytes) -> bytes:
        """dstack's `k256_signature`: 65 bytes over keccak("dstack-kms-issued:" ‖ app ‖ key)."""
        return sign_recoverable(self.secret, kms_issued_digest(app_id, app_public_key))

    def sign_message(self, prefix: bytes, app_id: bytes, message: bytes) -> bytes:
        """dstack's `sign_message`: 65 bytes over keccak(prefix ‖ ":" ‖ app_id ‖ message)."""
        return sign_recoverable(self.secret, kms_message_digest(prefix, app_id, message))


def encode_partial(p: EncryptedPartial) -> kms_pb2.Partial:
    """The wire form of a derivation partial (DerivePartial, KmsRootPartial)."""
    return kms_pb2.Partial(
        generation=p.generation,
        epoch=p.epoch,
        member=p.member,
        y=p.y.to_bytes(),
        z=p.z.to_bytes(),
        proof=p.proof.to_bytes(),
    )


def _decode(partial: kms_pb2.Partial) -> EncryptedPartial:
    return EncryptedPartial(
        generation=Generation(partial.generation),
        epoch=Epoch(partial.epoch),
        member=MemberIndex(partial.member),
        y=G1.from_bytes(partial.y, "partial Y"),
        z=G1.from_bytes(partial.z, "partial Z"),
        proof=DleqProof.from_bytes(partial.proof),
    )


class KmsRoots:
    """The KMS roots of the generations this node holds shares of (module docstring)."""

    def __init__(
        self,
        *,
        shares: ShareLookup,
        view: ViewSource,
        fetch: FetchPartial,
        rng: Rng = os.urandom,
        timeout: float = GATHER_TIMEOUT,
    ) -> None:
        self._shares, self._view, self._fetch = shares, view, fetch
        self._rng, self._timeout = rng, timeout
        self._roots: dict[tuple[int, bytes], KmsRoot] = {}
        self._locks: dict[tuple[int, bytes], asyncio.Lock] = {}

    def _network(self, committee: Committee) -> tuple[NetworkContext, ChainView]:
        view = self._view()
        if view is None:
            raise NotReady("no chain view yet")
        network = NetworkContext(
            chain_id=view.chain_id,
            contract=view.governance,
            generation=Generation(committee.generation),
            epoch=Epoch(committee.epoch),
        )
        return network, view

    def _held(self, generation: int) -> tuple[Committee, Share]:
        found = self._shares(generation)
        if found is None:
            which = "the latest generation" if generation == 0 else f"generation {generation}"
            raise NotReady(f"this node holds no active key share for {which}")
        return found

    def partial_for(self, generation: int, epoch: int, requester: bytes) -> kms_pb2.Partial:
        """A peer's request: our partial of the root, encrypted to `requester` (E)."""
        if generation < 1:
            raise InvalidRequest(f"generation must be >= 1, got {generation}")
        committee, share = self._held(generation)
        if committee.epoch != epoch:
            raise NotReady(
                f"generation {generation}'s active epoch here is {committee.epoch}, not {epoch}"
            )
        try:
            key = G1.from_bytes(requester, "requester_key")
        except EncodingError as exc:
            raise InvalidRequest(str(exc)) from None
        network, view = self._network(committee)
        request = kms_root_request(view.chain_id, view.governance, committee.generation)
        partial = derive_partial(
            share,
            request,
            requester=key,
            network=network,
            rng=self._rng,
            verification_key=committee.verification_key(share.member),
        )
        return encode_partial(partial)

    async def get(self, generation: int = 0) -> KmsRoot:
        """The root of `generation` (0 = latest), gathered on first use (module docstring)."""
        committee, share = self._held(generation)
        key = (committee.generation, committee.pk2.to_bytes())
        root = self._roots.get(key)
        if root is not None:
            return root
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one gathering per generation, however many callers wait
            root = self._roots.get(key)
            if root is None:
                root = self._roots[key] = await self._gather(committee, share)
        return root

    async def _gather(self, committee: Committee, share: Share) -> KmsRoot:
        network, view = self._network(committee)
        g = committee.generation
        request = kms_root_request(view.chain_id, view.governance, g)
        ephemeral = EphemeralKey.generate(self._rng)
        good: dict[int, VerifiedPartial] = {
            share.member: VerifiedPartial(share.member, request.point() * share.value)
        }
        failures: dict[str, str] = {}

        async def ask(index: int, peer: NodeRecord) -> VerifiedPartial:
            answer = await self._fetch(peer, g, committee.epoch, ephemeral.public.to_bytes())
            partial = _decode(answer)
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
        deadline = loop.time() + self._timeout
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
                f"cannot gather generation {g}'s KMS root: {len(good)} of "
                f"{committee.threshold} partials ({detail or 'no answer in time'})"
            )
        sigma = combine_partials(list(good.values()), committee.threshold)
        if not is_consistent_with_group_key(sigma, request, committee.pk2):
            raise NotReady(f"generation {g}'s KMS root partials disagree with its PK2")
        secret = derive_kms_root(sigma, view.chain_id, view.governance, g)
        root = KmsRoot(generation=g, public=public_key(secret), secret=secret)
        log.info(
            "kms_root_ready", generation=g, public_key=root.public.hex(), partials=sorted(good)
        )
        return root
