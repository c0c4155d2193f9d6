"""SignPartial KIND_EPOCH_MANIFEST (node/manifest.py): each member signs the active epoch's
manifest only as its own chain view shows it, so t honest views make the network's signature
and a committee that a lying RPC shows gathers none. Real nodes over real pinned TLS."""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from guest.kms_client import DerivationError, KmsClient
from mpc.errors import InvalidSignature
from mpc.manifest import EpochManifest, SignedManifest, verify_envelope
from mpc.nodehealth import verify_note
from mpc.revocation import (
    NODE_REMOVED,
    RevocationNotice,
    decode_notice,
    notice_envelope,
    verify_notice,
)
from node import chainview
from node.chainview import ChainView, NodeRecord
from node.errors import NotReady, PolicyDenied
from node.health import HealthReport
from node.kms_service import KmsServicer
from node.manifest import epoch_manifest, revocation_notice, signed_health
from protos.tkms.v1 import kms_pb2
from tests.node.test_sign_statements import (
    FINGERPRINT,
    GEN1,
    GEN2,
    GOV,
    TLS,
    app_evidence,
    client_committee,
    run,
    view_of,
)

_SIGN = kms_pb2.SignPartialRequest


def _records(endpoint_of_3: str = "10.0.0.3:7003") -> tuple[NodeRecord, ...]:
    endpoints = ["10.0.0.1:7001", "10.0.0.2:7002", endpoint_of_3]
    return tuple(
        NodeRecord(bytes([k]) * 20, endpoints[k - 1], "", TLS[k - 1].key_hash, b"")
        for k in (1, 2, 3)
    )


def _view(records: tuple[NodeRecord, ...]) -> ChainView:
    base = view_of()
    committees = {g: dataclasses.replace(c, members=records) for g, c in base.committees.items()}
    return dataclasses.replace(base, committees=committees)


def test_t_members_sign_the_manifest_their_views_agree_on() -> None:
    honest, moved = _view(_records()), _view(_records("6.6.6.6:443"))
    expected = epoch_manifest(honest, honest.committees[2]).encode()
    lying = epoch_manifest(moved, moved.committees[2]).encode()

    async def ask(ports: list[int]) -> Any:
        client = KmsClient(client_committee(2, GEN2, ports), app_evidence(), timeout=5)
        try:
            link = await client_link(ports)
            signed = await client.sign_expected(_SIGN(kind=_SIGN.KIND_EPOCH_MANIFEST), expected)
            try:
                await client.sign_expected(_SIGN(kind=_SIGN.KIND_EPOCH_MANIFEST), lying)
                refused = ""
            except DerivationError as exc:
                refused = str(exc)
            return link, signed, refused
        finally:
            await client.close()

    async def client_link(ports: list[int]) -> bytes:
        c1 = KmsClient(client_committee(1, GEN1, ports), app_evidence(), timeout=5)
        try:
            return (await c1.sign_generation(2, GEN2.group_key_g2)).signature
        finally:
            await c1.close()

    # Node 3 is lied to (it sees member 3 elsewhere): nodes 1 and 2 make the signature.
    link, signed, refused = run([honest, honest, moved], [None] * 3, ask)
    assert set(signed.signers) == {1, 2}
    envelope = SignedManifest(
        expected, signed.signature, (GEN1.group_key_g2, GEN2.group_key_g2), (link,)
    ).encode()
    manifest = verify_envelope(envelope, FINGERPRINT)
    assert manifest.members[2].endpoint == "10.0.0.3:7003" and manifest.threshold == 2
    # What a lying RPC shows is signed by one node at most (node 3): never by t.
    assert "only 1 of 2" in refused and "signed another statement" in refused


def test_a_node_whose_view_lacks_the_epoch_refuses_and_bad_requests_are_named() -> None:
    view = _view(_records())
    behind = dataclasses.replace(view, committees={1: view.committees[1]}, latest_generation=1)

    async def ask(ports: list[int]) -> Any:
        from guest.kms_channel import open_channel
        from protos.tkms.v1 import kms_pb2_grpc

        errors = []
        for port, request in (
            (ports[2], _SIGN(kind=_SIGN.KIND_EPOCH_MANIFEST, generation=2)),
            (ports[0], _SIGN(kind=_SIGN.KIND_EPOCH_MANIFEST, public_key=b"k")),
        ):
            index = ports.index(port)
            channel = await open_channel(f"127.0.0.1:{port}", TLS[index].key_hash)
            stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
            try:
                await stub.SignPartial(request)
            except grpc.aio.AioRpcError as exc:
                errors.append((exc.code(), exc.details()))
            await channel.close()
        return errors

    errors = run([view, view, behind], [None] * 3, ask)
    assert errors[0][0] == grpc.StatusCode.UNAVAILABLE and "generation 2" in errors[0][1]
    assert errors[1] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "KIND_EPOCH_MANIFEST takes only a generation",
    )


def test_the_manifest_follows_a_members_current_registration() -> None:
    """A member that moved its endpoint since the epoch began is stated where it is now."""
    view = _view(_records())
    moved = dataclasses.replace(view.committees[2].members[0], kms_endpoint="10.9.9.9:1")
    current = dataclasses.replace(view, nodes={moved.address: moved})
    manifest: EpochManifest = epoch_manifest(current, current.committees[2])
    assert manifest.members[0].endpoint == "10.9.9.9:1"
    with pytest.raises(Exception, match="active epoch in this node's chain view is none"):
        epoch_manifest(dataclasses.replace(view, committees={}), view.committees[2])
    assert isinstance(view.committees[2], chainview.Committee)


def _tls_key(member: int) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(TLS[member - 1].key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_a_node_serves_its_health_signed_with_its_pinned_tls_key() -> None:
    """GetHealthNote over the pinned channel: the note verifies against the manifest the
    network signs (member 2's pin), and says what the node's health says."""
    view = _view(_records())
    manifest = epoch_manifest(view, view.committees[2])
    report = HealthReport(health="DEGRADED", reason="1 of 3 members not answering", epoch=2,
                          generation=2)  # fmt: skip

    def note() -> bytes:
        return signed_health(view, bytes([2]) * 20, report, _tls_key(2))

    async def ask(ports: list[int]) -> Any:
        from guest.kms_channel import open_channel
        from protos.tkms.v1 import kms_pb2_grpc

        answers = []
        for k in (2, 1):
            channel = await open_channel(f"127.0.0.1:{ports[k - 1]}", TLS[k - 1].key_hash)
            stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
            try:
                reply = await stub.GetHealthNote(kms_pb2.GetHealthNoteRequest())
                answers.append(bytes(reply.envelope))
            except grpc.aio.AioRpcError as exc:
                answers.append(f"{exc.code().name}: {exc.details()}".encode())
            await channel.close()
        return answers

    def prepare(k: int, servicer: KmsServicer) -> None:
        servicer._health_note = note if k == 2 else None

    served, unserved = run([view] * 3, [None] * 3, ask, prepare=prepare)
    signed = verify_note(served, manifest)
    assert signed.health_name == "DEGRADED" and signed.reason == report.reason
    assert signed.address == bytes([2]) * 20 and signed.head == view.head
    assert unserved == b"UNAVAILABLE: this node does not sign health notes"
    with pytest.raises(InvalidSignature, match="key other than its pin"):
        verify_note(signed_health(view, bytes([2]) * 20, report, _tls_key(1)), manifest)
    with pytest.raises(NotReady, match="no chain view"):
        signed_health(None, bytes([2]) * 20, report, _tls_key(2))


def test_t_members_revoke_a_node_their_views_no_longer_approve() -> None:
    records = _records()
    approved = {r.address: r for r in records[:2]}  # node 3 removed from the registry
    removed = dataclasses.replace(_view(records), nodes=approved)
    lagging = dataclasses.replace(_view(records), nodes={r.address: r for r in records})
    manifest = epoch_manifest(removed, removed.committees[2])

    def notice(subject: bytes) -> bytes:
        return RevocationNotice(31337, GOV, 2, 2, NODE_REMOVED, subject).encode()

    async def ask(ports: list[int]) -> Any:
        client = KmsClient(client_committee(2, GEN2, ports), app_evidence(), timeout=5)
        try:
            kind = _SIGN.KIND_REVOCATION
            signed = await client.sign_expected(
                _SIGN(kind=kind, subject=records[2].address), notice(records[2].address)
            )
            try:
                await client.sign_expected(
                    _SIGN(kind=kind, subject=records[0].address), notice(records[0].address)
                )
                refused = ""
            except DerivationError as exc:
                refused = str(exc)
            return signed, refused
        finally:
            await client.close()

    # Node 3's view still approves node 3: nodes 1 and 2 make the network's word.
    signed, refused = run([removed, removed, lagging], [None] * 3, ask)
    assert set(signed.signers) == {1, 2}
    envelope = notice_envelope(decode_notice(signed.statement), signed.signature)
    assert verify_notice(envelope, manifest).subject == records[2].address
    # Node 1 is approved everywhere: nobody revokes it.
    assert "only 0 of 2" in refused and "is approved at block 50" in refused
    with pytest.raises(PolicyDenied, match="approved at block 50: not revoked here"):
        revocation_notice(removed, removed.committees[2], records[0].address)
