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

from mpc import EncryptedPartial, NetworkContext
from mpc.derive import derive_partial
from mpc.group import Rng
from mpc.k256 import kms_issued_digest, kms_message_digest, public_key, sign_recoverable
from mpc.kmsroot import derive_kms_root, kms_root_request
from mpc.sharing import Share
from mpc.types import Epoch, Generation
from node.chainview import ChainView, Committee, NodeRecord
from node.errors import NotReady
from node.gather import gather_sigma, held_share, lend_partial_request
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

    def partial_for(self, generation: int, epoch: int, requester: bytes) -> kms_pb2.Partial:
        """A peer's request: our partial of the root, encrypted to `requester` (E)."""
        committee, share, key = lend_partial_request(self._shares, generation, epoch, requester)
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
        committee, share = held_share(self._shares, generation)
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

        async def fetch(index: int, peer: NodeRecord, requester: bytes) -> kms_pb2.Partial:
            return await self._fetch(peer, g, committee.epoch, requester)

        sigma = await gather_sigma(
            committee=committee,
            share=share,
            request=request,
            network=network,
            fetch=fetch,
            rng=self._rng,
            timeout=self._timeout,
            what=f"generation {g}'s KMS root",
        )
        secret = derive_kms_root(sigma, view.chain_id, view.governance, g)
        root = KmsRoot(generation=g, public=public_key(secret), secret=secret)
        log.info("kms_root_ready", generation=g, public_key=root.public.hex())
        return root
