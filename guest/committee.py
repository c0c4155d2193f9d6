"""The committee an app talks to, read from the governance contract and checked against the
network's fingerprint, the agent's trust anchor (design §7).

Everything a client needs is derivable from chain data: the active epoch of the requested
generation, its members in order, their public endpoints and registered TLS key hashes (what
the client pins its channels to), the threshold, the public polynomial (hence every V_i) and
PK2. Whoever answers the JSON-RPC could invent all of it, so nothing is used until PK2 chains
to the fingerprint (`mpc.anchor.verify_key_chain`): the generation-1 key hashes, with the chain
id and governance address, to the fingerprint, and each later generation's key carries its
predecessor's signature (`generationLink`). Points are decoded strictly.
"""

from __future__ import annotations

from contracts import GovernanceClient
from guest.kms_types import Committee, Member
from mpc import G2, Epoch, Generation, NetworkContext, PublicPolynomial
from mpc.anchor import AnchorMismatch, network_fingerprint, verify_key_chain
from mpc.group import G1


class CommitteeError(Exception):
    """The chain shows no usable committee yet (none active, a missing link, malformed data)."""


class UntrustedNetwork(Exception):
    """The chain's network is not the one the fingerprint names: never use its keys."""


def kms_endpoint(endpoint: str) -> str:
    """The `kms=HOST:PORT` part of a registered endpoint string (`kms=...,peer=...`)."""
    for part in endpoint.split(","):
        name, _, value = part.partition("=")
        if name == "kms" and value:
            return value
    raise CommitteeError(f"registered endpoint {endpoint!r} has no kms=HOST:PORT part")


def _key(raw: bytes, what: str) -> G2:
    try:
        return G2.from_bytes(raw, what)
    except ValueError as exc:
        raise CommitteeError(f"malformed {what} on chain: {exc}") from None


def chain_fingerprint(client: GovernanceClient) -> bytes:
    """The fingerprint of the network this RPC shows (to display; trust comes from comparing)."""
    block = client.w3.eth.block_number
    if client.get_latest_generation(block=block) == 0:
        raise CommitteeError("no key generation is active yet (no DKG has completed)")
    key = _key(client.get_generation(1, block=block).pk2, "PK2 of generation 1")
    governance = bytes.fromhex(client.address[2:])
    return network_fingerprint(int(client.w3.eth.chain_id), governance, key)


def key_chain(
    client: GovernanceClient, generation: int, block: int, latest: bytes
) -> tuple[list[G2], list[bytes]]:
    """(PK2 of generations 1..g, the links of generations 2..g) at `block`, unchecked;
    `latest` is generation g's PK2 as the caller read it at that block."""
    keys = [
        _key(client.get_generation(g, block=block).pk2, f"PK2 of generation {g}")
        for g in range(1, generation)
    ] + [_key(latest, f"PK2 of generation {generation}")]
    links = [client.get_generation_link(g, block=block) for g in range(2, generation + 1)]
    for g, link in enumerate(links, start=2):
        if not link:
            raise CommitteeError(
                f"generation {g} has no link to generation {g - 1} on chain yet (the governance "
                f"owner publishes it: tkms chain link-generation --generation {g})"
            )
    return keys, links


def committee_from_chain(
    client: GovernanceClient, generation: int = 0, *, fingerprint: bytes
) -> Committee:
    """The active committee of `generation` (0 = latest) at the latest block, if its key chains
    to `fingerprint` (else UntrustedNetwork)."""
    block = client.w3.eth.block_number
    gen = generation or client.get_latest_generation(block=block)
    if gen == 0:
        raise CommitteeError("no key generation is active yet (no DKG has completed)")
    info = client.get_generation(gen, block=block)
    if info.active_epoch == 0:
        raise CommitteeError(f"generation {gen} has no active epoch")
    epoch = client.get_epoch(info.active_epoch, block=block)
    chain_id = int(client.w3.eth.chain_id)
    governance = bytes.fromhex(client.address[2:])
    keys, links = key_chain(client, gen, block, info.pk2)
    try:
        verify_key_chain(
            fingerprint, chain_id=chain_id, governance=governance, keys=keys, links=links
        )
    except AnchorMismatch as exc:
        raise UntrustedNetwork(
            f"the chain's KMS network is not the configured one: {exc}"
        ) from None
    try:
        public = PublicPolynomial(
            tuple(G1.from_bytes(c, f"A_{j}") for j, c in enumerate(epoch.public_polynomial))
        )
        pk2 = G2.from_bytes(epoch.pk2, "PK2")
    except ValueError as exc:
        raise CommitteeError(
            f"epoch {epoch.epoch} has malformed public keys on chain: {exc}"
        ) from None
    if pk2 != keys[-1]:
        raise UntrustedNetwork(
            f"epoch {epoch.epoch}'s PK2 is not generation {gen}'s key: the chain data disagree"
        )
    nodes = [client.get_node(address, block=block) for address in epoch.members]
    members = tuple(
        Member(
            index=k,
            endpoint=kms_endpoint(node.endpoint),
            verification_key=public.verification_key(k),  # type: ignore[arg-type]
            tls_key_hash=node.tls_key_hash,
            address=bytes.fromhex(address[2:]),
        )
        for k, (address, node) in enumerate(zip(epoch.members, nodes, strict=True), start=1)
    )
    network = NetworkContext(
        chain_id=chain_id,
        contract=governance,
        generation=Generation(gen),
        epoch=Epoch(epoch.epoch),
    )
    return Committee(network=network, threshold=epoch.threshold, members=members, group_key=pk2)
