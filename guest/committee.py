"""The committee an app talks to, read from the governance contract (design §7).

Everything a client needs is derivable from chain data alone: the active epoch of the
requested generation, its members in order, their public endpoints and registered TLS key
hashes (what the client pins its channels to), the threshold, the public polynomial (hence
every V_i) and PK2. Points are decoded strictly.
"""

from __future__ import annotations

from contracts import GovernanceClient
from guest.kms_client import Committee, Member
from mpc import G2, Epoch, Generation, NetworkContext, PublicPolynomial
from mpc.group import G1


class CommitteeError(Exception):
    """The chain shows no usable committee (none active, or malformed on-chain data)."""


def kms_endpoint(endpoint: str) -> str:
    """The `kms=HOST:PORT` part of a registered endpoint string (`kms=...,peer=...`)."""
    for part in endpoint.split(","):
        name, _, value = part.partition("=")
        if name == "kms" and value:
            return value
    raise CommitteeError(f"registered endpoint {endpoint!r} has no kms=HOST:PORT part")


def committee_from_chain(client: GovernanceClient, generation: int = 0) -> Committee:
    """The active committee of `generation` (0 = latest) at the latest block."""
    block = client.w3.eth.block_number
    gen = generation or client.get_latest_generation(block=block)
    if gen == 0:
        raise CommitteeError("no key generation is active yet (no DKG has completed)")
    info = client.get_generation(gen, block=block)
    if info.active_epoch == 0:
        raise CommitteeError(f"generation {gen} has no active epoch")
    epoch = client.get_epoch(info.active_epoch, block=block)
    try:
        public = PublicPolynomial(
            tuple(G1.from_bytes(c, f"A_{j}") for j, c in enumerate(epoch.public_polynomial))
        )
        pk2 = G2.from_bytes(epoch.pk2, "PK2")
    except ValueError as exc:
        raise CommitteeError(
            f"epoch {epoch.epoch} has malformed public keys on chain: {exc}"
        ) from None
    nodes = [client.get_node(address, block=block) for address in epoch.members]
    members = tuple(
        Member(
            index=k,
            endpoint=kms_endpoint(node.endpoint),
            verification_key=public.verification_key(k),  # type: ignore[arg-type]
            tls_key_hash=node.tls_key_hash,
        )
        for k, node in enumerate(nodes, start=1)
    )
    network = NetworkContext(
        chain_id=client.w3.eth.chain_id,
        contract=bytes.fromhex(client.address[2:]),
        generation=Generation(gen),
        epoch=Epoch(epoch.epoch),
    )
    return Committee(network=network, threshold=epoch.threshold, members=members, group_key=pk2)
