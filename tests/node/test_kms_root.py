"""The generation's KMS root on nodes: gathered from t verified partials, signed for apps.

`KmsRoots` of three nodes (t = 2) lend each other partials in process (the peer channel
has its own tests, and the network test runs the whole path between processes); then three
real `KmsServicer`s with real `Authorizer`s answer SignAppKey and SignPartial KIND_KMS_ROOT
over real gRPC to the guest's client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import grpc
import pytest

from contracts import AuthDecision
from guest.kms_channel import open_channel
from guest.kms_client import DerivationError, KmsClient
from guest.kms_root import certify_kms_root, find_kms_root
from mpc.derive import KeyKind
from mpc.k256 import kms_issued_digest, public_key, recover_signer
from mpc.kmsroot import derive_kms_root, kms_root_request, kms_root_statement, verify_kms_root
from node import chainview
from node.authz import Authorizer
from node.chainview import ChainView, NodeRecord
from node.errors import InvalidRequest, NotReady
from node.kms_root import KmsRoot, KmsRoots
from node.kms_service import KmsServicer
from node.metrics import NodeMetrics
from node.ratelimit import RateLimiter
from protos.tkms.v1 import kms_pb2, kms_pb2_grpc
from tests.mpc.dealer import DealtKeys
from tests.node.test_sign_statements import (
    APP,
    GEN1,
    GEN2,
    GOV,
    TLS,
    app_evidence,
    client_committee,
    serving,
    view_of,
)

Fetch = Any


def expected_root(keys: DealtKeys, generation: int) -> bytes:
    request = kms_root_request(31337, GOV, generation)
    return derive_kms_root(request.point() * keys.secret_poly.secret, 31337, GOV, generation)


class Nodes:
    """Three nodes' KmsRoots; `lie` makes a member answer with a wrong partial, `down` makes
    it refuse, `asked` counts partial requests."""

    def __init__(self, view: ChainView | None = None) -> None:
        self.view = view or view_of()
        self.lie: set[int] = set()
        self.down: set[int] = set()
        self.asked = 0
        shares = {1: GEN1.shares, 2: GEN2.shares}

        def lookup(member: int) -> Any:
            def share_for(generation: int) -> tuple[chainview.Committee, Any] | None:
                committee = self.view.committee(generation)
                if committee is None:
                    return None
                return committee, shares[committee.generation][member - 1]

            return share_for

        async def fetch(peer: NodeRecord, generation: int, epoch: int, requester: bytes) -> Any:
            self.asked += 1
            index = peer.address[0]
            if index in self.down:
                raise NotReady(f"peer {index} is down")
            partial = self.roots[index].partial_for(generation, epoch, requester)
            if index in self.lie:
                partial.z = partial.y  # a valid point, not the partial
            return partial

        self.roots = {
            k: KmsRoots(shares=lookup(k), view=lambda: self.view, fetch=fetch, timeout=2)
            for k in (1, 2, 3)
        }


def test_every_node_gathers_the_same_root_of_each_generation() -> None:
    nodes = Nodes()

    async def go() -> list[KmsRoot]:
        return [await nodes.roots[k].get(g) for k in (1, 2, 3) for g in (1, 2)]

    roots = asyncio.run(go())
    for g, keys in ((1, GEN1), (2, GEN2)):
        mine = [r for r in roots if r.generation == g]
        assert {r.public for r in mine} == {public_key(expected_root(keys, g))}
        assert {r.secret for r in mine} == {expected_root(keys, g)}
    assert roots[0].public != roots[1].public  # a rotation makes a new root
    assert "secret" not in repr(roots[0]) and roots[0].secret.hex() not in repr(roots[0])
    asked = nodes.asked

    async def again() -> KmsRoot:
        return await nodes.roots[1].get(1)

    assert asyncio.run(again()) == roots[0] and nodes.asked == asked  # gathered once


def test_a_lying_member_is_named_and_an_honest_one_suffices() -> None:
    nodes = Nodes()
    nodes.lie = {2}

    async def go() -> KmsRoot:
        return await nodes.roots[1].get(1)

    assert asyncio.run(go()).public == public_key(expected_root(GEN1, 1))
    fresh = Nodes()  # nothing cached: with member 3 down too, only 1 of 2 partials
    fresh.lie, fresh.down = {2}, {3}
    with pytest.raises(NotReady, match=r"1 of 2 partials \(member 2 \(0x0202.*DLEQ proof") as info:
        asyncio.run(fresh.roots[1].get(1))
    assert "member 3 (0x0303" in str(info.value) and "peer 3 is down" in str(info.value)


def test_a_partial_goes_only_to_the_active_epoch_and_a_valid_key() -> None:
    nodes = Nodes()
    e = GEN1.public  # any valid G1 point would do as the requester key
    requester = e.verification_key(1).to_bytes()  # type: ignore[arg-type]
    partial = nodes.roots[2].partial_for(1, 1, requester)
    assert partial.member == 2 and partial.generation == 1 and partial.epoch == 1
    with pytest.raises(NotReady, match="generation 1's active epoch here is 1, not 7"):
        nodes.roots[2].partial_for(1, 7, requester)
    with pytest.raises(NotReady, match="no active key share for generation 5"):
        nodes.roots[2].partial_for(5, 5, requester)
    with pytest.raises(InvalidRequest, match="generation must be >= 1"):
        nodes.roots[2].partial_for(0, 1, requester)
    with pytest.raises(InvalidRequest, match="invalid requester_key"):
        nodes.roots[2].partial_for(1, 1, b"\x01" * 48)


def servicers(nodes: Nodes) -> list[KmsServicer]:
    out = []
    for k in (1, 2, 3):
        metrics = NodeMetrics()
        authorizer = Authorizer(
            view=lambda: dataclasses.replace(nodes.view, head_timestamp=int(time.time())),
            approve=lambda info, block: AuthDecision(True, ""),
            max_head_age=60,
            limiter=RateLimiter(1000, 1000),
            metrics=metrics,
            accept_simulator=True,
        )
        out.append(
            KmsServicer(
                authorizer=authorizer,
                shares=nodes.roots[k]._shares,
                metrics=metrics,
                max_keys=4,
                roots=nodes.roots[k].get,
            )
        )
    return out


def run(nodes: Nodes, ask: Any) -> Any:
    async def go() -> Any:
        servers, ports = await serving(servicers(nodes))
        try:
            return await ask(ports)
        finally:
            for server in servers:
                await server.stop(None)

    return asyncio.run(go())


def test_an_attested_app_gets_dstacks_kms_signature_under_a_certified_root() -> None:
    app_key = public_key(b"\x21" * 32)
    root = public_key(expected_root(GEN2, 2))

    async def ask(ports: list[int]) -> Any:
        client = KmsClient(client_committee(2, GEN2, ports), app_evidence(), timeout=5)
        try:
            issued = await client.issue_app_key(APP, app_key)
            found = await find_kms_root(client)
            channel = await open_channel(f"127.0.0.1:{ports[0]}", TLS[0].key_hash)
            stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
            errors = []
            kind = kms_pb2.SignPartialRequest.KIND_KMS_ROOT
            for bad in (
                kms_pb2.SignPartialRequest(kind=kind, generation=2, public_key=app_key),
                kms_pb2.SignPartialRequest(kind=kind, generation=2, public_key=b"\x04" * 33),
                kms_pb2.SignPartialRequest(kind=kind, generation=2, nonce=b"n" * 16),
                kms_pb2.SignPartialRequest(kind=kind, generation=9),
            ):
                try:
                    await stub.SignPartial(bad)
                except grpc.aio.AioRpcError as exc:
                    errors.append((exc.code(), exc.details()))
            for bad_key in (b"", app_key[:32], b"\x04" + app_key[1:]):
                try:
                    await stub.SignAppKey(
                        kms_pb2.SignAppKeyRequest(
                            evidence=client.attested(bad_key or b"x"), public_key=bad_key
                        )
                    )
                except grpc.aio.AioRpcError as exc:
                    errors.append((exc.code(), exc.details()))
            try:  # evidence that binds another key
                await stub.SignAppKey(
                    kms_pb2.SignAppKeyRequest(
                        evidence=client.attested(public_key(b"\x22" * 32)), public_key=app_key
                    )
                )
            except grpc.aio.AioRpcError as exc:
                errors.append((exc.code(), exc.details()))
            await channel.close()
            return issued, found, errors
        finally:
            await client.close()

    issued, (found_root, found_cert), errors = run(Nodes(), ask)
    assert issued.root == root == found_root
    assert recover_signer(kms_issued_digest(APP, app_key), issued.signature) == root
    for certificate in (issued.certificate, found_cert.signature):
        verify_kms_root(
            GEN2.group_key_g2,
            chain_id=31337,
            governance=GOV,
            generation=2,
            public=root,
            certificate=certificate,
        )
    assert found_cert.statement == kms_root_statement(31337, GOV, 2, root)
    assert errors[0] == (
        grpc.StatusCode.PERMISSION_DENIED,
        f"generation 2's KMS root here is {root.hex()}, not {app_key.hex()}",
    )
    assert errors[1][0] == grpc.StatusCode.INVALID_ARGUMENT and "public_key" in errors[1][1]
    assert errors[2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "KIND_KMS_ROOT takes only a generation and a public_key",
    )
    assert errors[3] == (
        grpc.StatusCode.UNAVAILABLE,
        "this node holds no active key share for generation 9",
    )
    for code, details in errors[4:7]:
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "invalid public_key" in details
    assert errors[7][0] == grpc.StatusCode.PERMISSION_DENIED and "report_data" in errors[7][1]


def test_a_member_with_another_root_is_named_and_the_next_one_is_asked() -> None:
    """Node 1 signs with a root of its own (a leaked or corrupted root): the other two do not
    certify it, so the client names node 1 and takes node 2's signature."""
    nodes = Nodes()
    fake = KmsRoot(generation=2, public=public_key(b"\x66" * 32), secret=b"\x66" * 32)
    committee = nodes.view.committee(2)
    assert committee is not None
    nodes.roots[1]._roots[(2, committee.pk2.to_bytes())] = fake

    async def ask(ports: list[int]) -> Any:
        client = KmsClient(client_committee(2, GEN2, ports), app_evidence(), timeout=5)
        try:
            client._rotation = 0  # node 1 first
            issued = await client.issue_app_key(APP, public_key(b"\x21" * 32))
            with pytest.raises(DerivationError, match="KMS root here is"):
                await certify_kms_root(client, fake.public)
            return issued
        finally:
            await client.close()

    issued = run(nodes, ask)
    assert issued.member == 2 and issued.root == public_key(expected_root(GEN2, 2))


def test_no_app_request_reaches_the_root() -> None:
    """The Kms port decodes only KIND_KDF and KIND_IBE: the root's kind (3) is refused."""

    async def ask(ports: list[int]) -> Any:
        channel = await open_channel(f"127.0.0.1:{ports[0]}", TLS[0].key_hash)
        stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
        client = KmsClient(client_committee(2, GEN2, ports), app_evidence(), timeout=5)
        requester = GEN2.public.verification_key(1).to_bytes()  # type: ignore[arg-type]
        request = kms_pb2.DerivePartialRequest(
            evidence=client.attested(requester),
            requester_key=requester,
            keys=[kms_pb2.KeyRequest(kind=KeyKind.KMS_ROOT.value, app_id=APP)],  # type: ignore[arg-type]
        )
        try:
            await stub.DerivePartial(request)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
        finally:
            await channel.close()
            await client.close()
        return None

    assert run(Nodes(), ask) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "keys[0].kind 3 is not KIND_KDF or KIND_IBE",
    )
