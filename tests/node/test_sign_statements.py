"""SignPartial's statements about the network and an app's env, end to end over real gRPC:
three real `KmsServicer`s (t = 2) with real `Authorizer`s and key shares of generations 1
and 2, asked by the guest's `KmsClient` (Security III G-01, G-03)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from attest.providers import SimulatorProvider
from contracts import AppBootInfo, AuthDecision
from guest.agent import provider_evidence
from guest.kms_channel import open_channel
from guest.kms_client import Committee, DerivationError, KmsClient, Member
from guest.measure import measure_app_boot
from mpc import Epoch, Generation, MemberIndex, NetworkContext
from mpc.anchor import AnchorMismatch, generation_statement, network_fingerprint, verify_key_chain
from mpc.tsig import app_env_statement, verify_signature
from node import chainview
from node.authz import ApprovalCheck, Authorizer
from node.chainview import ChainView, NodeRecord
from node.kms_service import EnvPolicy, KmsServicer
from node.metrics import NodeMetrics
from node.ratelimit import RateLimiter
from node.tee import SIMULATED_OS_IMAGE
from protos.tkms.v1 import kms_pb2, kms_pb2_grpc
from tests.guest.test_kms_client import TlsIdentity, serve
from tests.mpc.dealer import DealtKeys, deal

GOV = b"\x42" * 20
APP = b"\xab" * 20
SIGNER = b"\x5e" * 20
GEN1, GEN2 = deal(3, 2, seed=21), deal(3, 2, seed=22)
FINGERPRINT = network_fingerprint(31337, GOV, GEN1.group_key_g2)


def chain_committee(generation: int, keys: DealtKeys) -> chainview.Committee:
    members = tuple(NodeRecord(bytes([k]) * 20, f"127.0.0.1:{k}", "", b"", b"") for k in (1, 2, 3))
    return chainview.Committee(
        generation=generation,
        epoch=generation,
        threshold=2,
        members=members,
        public=keys.public,
        pk2=keys.group_key_g2,
    )


def always(info: AppBootInfo, block: int) -> AuthDecision:
    return AuthDecision(True, "")


def servicer(
    member: int, view: ChainView, env_policy: EnvPolicy | None, approve: ApprovalCheck = always
) -> KmsServicer:
    shares = {1: GEN1.shares[member - 1], 2: GEN2.shares[member - 1]}

    def lookup(generation: int) -> tuple[chainview.Committee, Any] | None:
        committee = view.committee(generation)
        if committee is None:
            return None
        return committee, shares[committee.generation]

    metrics = NodeMetrics()
    authorizer = Authorizer(
        view=lambda: dataclasses.replace(view, head_timestamp=int(time.time())),
        approve=approve,
        max_head_age=60,
        limiter=RateLimiter(1000, 1000),
        metrics=metrics,
        accept_simulator=True,
    )
    return KmsServicer(
        authorizer=authorizer, shares=lookup, metrics=metrics, max_keys=4, env_policy=env_policy
    )


def view_of(second: DealtKeys = GEN2) -> ChainView:
    return ChainView(
        chain_id=31337,
        governance=GOV,
        head=50,
        head_timestamp=0,
        latest_generation=2,
        committees={1: chain_committee(1, GEN1), 2: chain_committee(2, second)},
        running_epoch=0,
        nodes={},
        simulator_allowed=True,
        fingerprint=FINGERPRINT,
    )


#: The members' TLS identities: the Kms port is TLS, pinned to the registered key hash.
TLS = [TlsIdentity.generate() for _ in range(3)]


def client_committee(generation: int, keys: DealtKeys, ports: list[int]) -> Committee:
    members = tuple(
        Member(
            k,
            f"127.0.0.1:{port}",
            keys.public.verification_key(MemberIndex(k)),
            tls_key_hash=TLS[k - 1].key_hash,
        )
        for k, port in enumerate(ports, start=1)
    )
    network = NetworkContext(
        chain_id=31337, contract=GOV, generation=Generation(generation), epoch=Epoch(generation)
    )
    return Committee(network=network, threshold=2, members=members, group_key=keys.group_key_g2)


def app_evidence() -> Callable[[bytes], tuple[bytes, str]]:
    provider = SimulatorProvider()
    measure_app_boot(
        provider,
        app_id=APP,
        compose=b"{}",
        instance_id=os.urandom(20),
        kms_id=FINGERPRINT.hex(),
        os_image=SIMULATED_OS_IMAGE,
    )
    return provider_evidence(provider)


async def serving(servicers: list[KmsServicer]) -> tuple[list[grpc.aio.Server], list[int]]:
    servers, ports = [], []
    for s, tls in zip(servicers, TLS, strict=True):
        server, port = await serve(s, tls)
        servers.append(server)
        ports.append(port)
    return servers, ports


def run(
    views: list[ChainView],
    policies: list[EnvPolicy | None],
    ask: Callable[[list[int]], Any],
    approve: ApprovalCheck = always,
    prepare: Callable[[int, KmsServicer], None] | None = None,
) -> Any:
    """Serve one servicer per view (`prepare(k, servicer)` may adjust each), then `ask`."""

    async def go() -> Any:
        pairs = enumerate(zip(views, policies, strict=True), 1)
        servicers = [servicer(k, v, p, approve) for k, (v, p) in pairs]
        if prepare is not None:
            for k, s in enumerate(servicers, start=1):
                prepare(k, s)
        servers, ports = await serving(servicers)
        try:
            return await ask(ports)
        finally:
            for server in servers:
                await server.stop(None)

    return asyncio.run(go())


def test_generation_1_links_generation_2_and_a_node_signs_only_the_key_it_sees() -> None:
    """Node 3's chain view shows another generation-2 key (it is lied to, or lies): its
    partial is over another statement, named, and the other two suffice."""
    liar = view_of(deal(3, 2, seed=99))

    async def ask(ports: list[int]) -> Any:
        client = KmsClient(client_committee(1, GEN1, ports), app_evidence(), timeout=5)
        try:
            signed = await client.sign_generation(2, GEN2.group_key_g2)
            channel = await open_channel(f"127.0.0.1:{ports[0]}", TLS[0].key_hash)
            stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
            kind = kms_pb2.SignPartialRequest.KIND_GENERATION
            first = await stub.SignPartial(kms_pb2.SignPartialRequest(kind=kind, generation=2))
            again = await stub.SignPartial(kms_pb2.SignPartialRequest(kind=kind, generation=2))
            errors = []
            for bad in (
                kms_pb2.SignPartialRequest(kind=kind, generation=1),
                kms_pb2.SignPartialRequest(kind=kind, generation=3),
                kms_pb2.SignPartialRequest(kind=kind, generation=2, public_key=b"k"),
            ):
                try:
                    await stub.SignPartial(bad)
                except grpc.aio.AioRpcError as exc:
                    errors.append((exc.code(), exc.details()))
            await channel.close()
            return signed, first, again, errors
        finally:
            await client.close()

    signed, first, again, errors = run([view_of(), view_of(), liar], [None] * 3, ask)
    statement = generation_statement(31337, GOV, 2, GEN2.group_key_g2)
    assert signed.statement == statement and set(signed.signers) == {1, 2}
    assert verify_signature(GEN1.group_key_g2, statement, signed.signature)
    verify_key_chain(
        FINGERPRINT,
        chain_id=31337,
        governance=GOV,
        keys=[GEN1.group_key_g2, GEN2.group_key_g2],
        links=[signed.signature],
    )
    assert first == again  # one partial per generation and epoch, cached
    assert errors == [
        (grpc.StatusCode.INVALID_ARGUMENT, "generation: only generations >= 2 are linked, got 1"),
        (
            grpc.StatusCode.UNAVAILABLE,
            "generation 3 has no active key in this node's chain view",
        ),
        (grpc.StatusCode.INVALID_ARGUMENT, "KIND_GENERATION takes only a generation"),
    ]
    # An attacker's generation-2 key is never linked by the honest generation 1.
    with pytest.raises(AnchorMismatch):
        verify_key_chain(
            FINGERPRINT,
            chain_id=31337,
            governance=GOV,
            keys=[GEN1.group_key_g2, deal(3, 2, seed=99).group_key_g2],
            links=[signed.signature],
        )


def test_the_network_certifies_only_the_env_signer_and_version_appauth_names() -> None:
    named: dict[bytes, tuple[bytes, int]] = {APP: (SIGNER, 3)}
    reads: list[tuple[bytes, int]] = []

    def policy(app_id: bytes, block: int) -> tuple[bytes, int]:
        reads.append((app_id, block))
        return named[app_id]

    async def ask(ports: list[int]) -> Any:
        client = KmsClient(client_committee(2, GEN2, ports), app_evidence(), timeout=5)
        try:
            signed = await client.sign_env_policy(APP, SIGNER, 3)
            refusals = []
            for signer, version in ((SIGNER, 2), (b"\x66" * 20, 3)):
                try:
                    await client.sign_env_policy(APP, signer, version)
                except DerivationError as exc:
                    refusals.append(str(exc))
            return signed, refusals
        finally:
            await client.close()

    signed, refusals = run([view_of()] * 3, [policy, policy, None], ask)
    nonce = signed.statement[-32:]
    assert signed.statement == app_env_statement(31337, GOV, APP, SIGNER, 3, nonce)
    assert verify_signature(GEN2.group_key_g2, signed.statement, signed.signature)
    assert set(reads) == {(APP, 50)}  # read at the node's view head
    assert "permission_denied: env: at block 50 app 0x" in refusals[0]
    assert (
        f"names env signer 0x{SIGNER.hex()} and envVersion 3, not 0x{SIGNER.hex()} and 2"
        in (refusals[0])
    )
    assert "unavailable: this node does not serve env statements" in refusals[0]
    assert f"not 0x{'66' * 20} and 3" in refusals[1]


def test_a_fresh_nonce_makes_every_env_statement_new() -> None:
    async def ask(ports: list[int]) -> Any:
        client = KmsClient(client_committee(2, GEN2, ports), app_evidence(), timeout=5)
        try:
            return [await client.sign_env_policy(APP, SIGNER, 1) for _ in range(2)]
        finally:
            await client.close()

    policy: EnvPolicy = lambda app_id, block: (SIGNER, 1)  # noqa: E731
    first, second = run([view_of()] * 3, [policy] * 3, ask)
    assert first.statement != second.statement and first.signature != second.signature
