"""The generation's KMS root, client side: dstack's KMS signature for an app key, and the
network's certificate of the root (design §3.5).

dstack's verifiers accept an app's key chain when its element 1 recovers to a KMS root they
trust. tkms's root (`mpc.kmsroot`) lives in the nodes; every node signs
`tkms-k256-root:v1` (SignPartial KIND_KMS_ROOT) only over the root it derived itself, so t
partials over one root make it the network's (checked under PK2):

* `issue_app_key` (the agent at start): asks one member at a time for `SignAppKey` over the
  app's key (evidence binds it), checks that the signature recovers to the root the member
  names, and has the network certify that root. A member whose root does not recover, or
  that the network does not certify, is named and the next member is asked.
* `find_kms_root` (no app): the same with the root a member signs in its own
  KIND_KMS_ROOT partial; `publish_kms_root` then stores it in governance
  (`setKmsRoot(g, root, certificate)`, governance owner), the anchor dstack-style verifiers
  read (`kmsRoot(g)`); `tkms chain publish-kms-root` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc

from contracts import GovernanceClient
from guest.committee import (
    chain_fingerprint,
    committee_from_chain,
)
from guest.kms_channel import ChannelRefused
from guest.kms_types import DerivationError, IssuedAppKey, SignedStatement
from guest.links import add_owner_arguments, owner_command
from guest.verify import kms_root_from_chain
from mpc.errors import MpcError
from mpc.k256 import PUBLIC_SIZE, decode_public_key, kms_issued_digest, recover_signer
from mpc.kmsroot import kms_root_statement
from protos.tkms.v1 import kms_pb2

if TYPE_CHECKING:
    from guest.kms_client import KmsClient
    from guest.kms_types import Member

_SIGN = kms_pb2.SignPartialRequest


async def certify_kms_root(client: KmsClient, root: bytes) -> SignedStatement:
    """The network's signature certifying `root` as its generation's KMS root: t members
    that each derived exactly this root (a member that derived another refuses)."""
    net = client.committee.network
    expected = kms_root_statement(net.chain_id, net.contract, net.generation, root)
    message = _SIGN(kind=_SIGN.KIND_KMS_ROOT, generation=net.generation, public_key=root)
    return await client.sign_expected(message, expected)


def _failure(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name.lower()}: {exc.details()}"
    return str(exc)


#: Asks one member for (the root it names, that root's signature over the request).
AskMember = Callable[["Member"], Awaitable[tuple[bytes, bytes]]]


async def _first_certified(
    client: KmsClient, ask: AskMember
) -> tuple[Member, bytes, bytes, SignedStatement]:
    """(member, root, its signature, certificate) from the first member whose answer verifies
    and whose root the network certifies; DerivationError naming every member that failed."""
    certified: dict[bytes, SignedStatement] = {}
    refused: dict[bytes, str] = {}  # a root asked about once is not asked about again
    failures: dict[int, str] = {}
    for member in client.members_in_turn():
        try:
            root, signature = await ask(member)
            if root not in certified and root not in refused:
                try:
                    certified[root] = await certify_kms_root(client, root)
                except DerivationError as exc:
                    refused[root] = str(exc)
            if root in refused:
                raise ValueError(
                    f"names KMS root {root.hex()}, which the network does not certify: "
                    f"{refused[root]}"
                )
        except (grpc.aio.AioRpcError, ChannelRefused, MpcError, ValueError) as exc:
            failures[member.index] = _failure(exc)
            continue
        return member, root, signature, certified[root]
    endpoints = {m.index: m.endpoint for m in client.committee.members}
    raise DerivationError(0, 1, failures, endpoints)


async def issue_app_key(client: KmsClient, app_id: bytes, public_key: bytes) -> IssuedAppKey:
    """Element 1 of the app's chains (module docstring); the key must be 33 bytes compressed."""
    decode_public_key(public_key, "app key")
    generation = client.committee.network.generation
    request = kms_pb2.SignAppKeyRequest(
        evidence=client.attested(public_key), public_key=public_key, generation=generation
    )
    digest = kms_issued_digest(app_id, public_key)

    async def ask(member: Member) -> tuple[bytes, bytes]:
        reply: kms_pb2.SignAppKeyResponse = await client.rpc(
            member, lambda stub: stub.SignAppKey(request, timeout=client.timeout)
        )
        if reply.generation != generation:
            raise ValueError(f"signed for generation {reply.generation}, not {generation}")
        root = decode_public_key(bytes(reply.root_public_key), "KMS root")
        if recover_signer(digest, bytes(reply.signature), "KMS signature") != root:
            raise ValueError(f"its signature is not by the KMS root {root.hex()} it names")
        return root, bytes(reply.signature)

    member, root, signature, certificate = await _first_certified(client, ask)
    return IssuedAppKey(
        root=root, signature=signature, certificate=certificate.signature, member=member.index
    )


async def find_kms_root(client: KmsClient) -> tuple[bytes, SignedStatement]:
    """(the generation's KMS root, the network's certificate of it), with no app involved."""
    net = client.committee.network
    request = _SIGN(kind=_SIGN.KIND_KMS_ROOT, generation=net.generation)

    async def ask(member: Member) -> tuple[bytes, bytes]:
        reply: kms_pb2.SignPartialResponse = await client.rpc(
            member, lambda stub: stub.SignPartial(request, timeout=client.timeout)
        )
        root = decode_public_key(bytes(reply.statement[-PUBLIC_SIZE:]), "KMS root")
        expected = kms_root_statement(net.chain_id, net.contract, net.generation, root)
        if reply.statement != expected:
            raise ValueError("signed another statement than a tkms-k256-root:v1 of this network")
        return root, b""

    _, root, _, certificate = await _first_certified(client, ask)
    return root, certificate


def _no_evidence(report_data: bytes) -> tuple[bytes, str]:
    raise RuntimeError("a KMS root is public: no evidence is ever asked for")


async def _find(
    governance: GovernanceClient, generation: int, timeout: float
) -> tuple[bytes, bytes]:
    from guest.kms_client import KmsClient

    committee = committee_from_chain(
        governance, generation, fingerprint=chain_fingerprint(governance)
    )
    client = KmsClient(committee, _no_evidence, timeout=timeout)
    try:
        root, certificate = await find_kms_root(client)
    finally:
        await client.close()
    return root, certificate.signature


def publish_kms_root(
    governance: GovernanceClient, generation: int, *, timeout: float = 10.0
) -> tuple[bytes, bytes]:
    """Find, check and publish generation `generation`'s KMS root (owner transactor); returns
    (root, certificate). The fingerprint is the one this RPC shows: the owner trusts its own
    chain. A root already published must be this one."""
    if generation < 1:
        raise ValueError(f"key generations start at 1, got {generation}")
    root, certificate = asyncio.run(_find(governance, generation, timeout))
    published, _ = governance.get_kms_root(generation)
    if published and published != root:
        raise ValueError(
            f"generation {generation} already has KMS root {published.hex()} on chain, but its "
            f"network certifies {root.hex()}"
        )
    if not published:
        governance.send_set_kms_root(generation, root, certificate)
    kms_root_from_chain(governance, generation, fingerprint=chain_fingerprint(governance))
    return root, certificate


def _publish(governance: GovernanceClient, args: argparse.Namespace) -> str:
    root, certificate = publish_kms_root(governance, args.generation, timeout=args.timeout)
    return f"generation {args.generation} KMS root {root.hex()} (certificate 0x{certificate.hex()})"


publish_kms_root_command = owner_command("publish-kms-root", _publish)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_owner_arguments(parser, lowest=1, handler=publish_kms_root_command)
