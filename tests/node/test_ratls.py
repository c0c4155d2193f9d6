"""node.ratls: the node's RA-TLS certificate and the peer-certificate check, step by step.

The helpers here (simulator-attested nodes, views, a KMS-measurement allow list) are shared
with the gRPC tests in test_peer.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attest import (
    BindingLabel,
    EventLogEntry,
    VerifiedEvidence,
    compute_report_data,
    default_policy,
    parse_quote,
    read_ratls_certificate,
)
from attest._ratls import OID_ATTESTATION, OID_EVENT_LOG, OID_QUOTE
from attest.providers import SimulatorProvider, TeeProvider
from node.chainview import ChainView, NodeRecord
from node.errors import NotReady, PolicyDenied, Unauthenticated
from node.identity import NodeIdentity
from node.ratls import (
    MAX_CLIENT_CERT_DER,
    PEER_TLS_NAME,
    PeerVerifier,
    fetch_peer_certificate,
    make_node_certificate,
    spki_hash,
    verify_peer_certificate,
)

POLICY = default_policy()


def attested_provider(compose: bytes = b"\x01" * 32) -> SimulatorProvider:
    """A simulated TD that booted like a dstack KMS app (so it has an mr_aggregated)."""
    p = SimulatorProvider()
    p.extend_rtmr(3, "app-id", b"\x4b" * 20)
    p.extend_rtmr(3, "compose-hash", compose)
    p.extend_rtmr(3, "system-ready", b"")
    return p


class OtherKeyProvider:
    """Quotes report_data for a different key than the one it is asked about."""

    name = "simulator"

    def __init__(self, inner: SimulatorProvider, other_spki: bytes) -> None:
        self.inner, self.other = inner, other_spki

    def get_quote(self, report_data: bytes) -> bytes:
        return self.inner.get_quote(compute_report_data(BindingLabel.RATLS_CERT, self.other))

    def extend_rtmr(
        self, index: int, event: str, payload: bytes, *, version: int = 1
    ) -> EventLogEntry:
        return self.inner.extend_rtmr(index, event, payload, version=version)

    def event_log(self) -> tuple[EventLogEntry, ...]:
        return self.inner.event_log()


def mr_aggregated_of(cert_pem: bytes) -> bytes:
    from attest import make_quote_verifier, verify_ratls_certificate
    from attest.providers import SimulatorAllowed

    verify = make_quote_verifier(now=int(time.time()), policy=SimulatorAllowed())
    evidence = verify_ratls_certificate(cert_pem, verify_quote=verify)
    assert evidence.identity is not None
    return evidence.identity.mr_aggregated


def self_signed(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A plain certificate (no evidence) for `key`, named like a node certificate."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no evidence")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(PEER_TLS_NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class PeerNode:
    """A node identity with its certificate; `registered_key_hash` is what the chain says."""

    identity: NodeIdentity
    cert_pem: bytes
    key_pem: bytes
    registered_key_hash: bytes
    endpoint: str = ""

    @property
    def address(self) -> bytes:
        return self.identity.eth_address

    def record(self) -> NodeRecord:
        return NodeRecord(
            address=self.address,
            kms_endpoint="127.0.0.1:1",
            peer_endpoint=self.endpoint,
            tls_key_hash=self.registered_key_hash,
            deal_public_key=bytes(1216),
        )


def key_pem_of(identity: NodeIdentity) -> bytes:
    return identity.tls_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def attested_node(provider: TeeProvider | None = None) -> PeerNode:
    identity = NodeIdentity.generate()
    cert, key = make_node_certificate(identity, provider or attested_provider())
    return PeerNode(identity, cert, key, identity.tls_key_hash)


def make_view(nodes: Mapping[bytes, NodeRecord], *, simulator_allowed: bool = True) -> ChainView:
    return ChainView(
        chain_id=31337,
        governance=bytes(20),
        head=100,
        head_timestamp=int(time.time()),
        latest_generation=0,
        committees={},
        running_epoch=0,
        nodes=dict(nodes),
        simulator_allowed=simulator_allowed,
    )


class AllowList:
    """Stands in for governance's `isKmsAllowed`: allowed mr_aggregated values; counts calls."""

    def __init__(self, *allowed: bytes) -> None:
        self.allowed, self.calls = set(allowed), 0

    def __call__(self, evidence: VerifiedEvidence) -> None:
        self.calls += 1
        assert evidence.identity is not None
        if evidence.identity.mr_aggregated not in self.allowed:
            raise PolicyDenied("KMS measurement is not allowed")


# -- make_node_certificate ------------------------------------------------------------------


def test_node_certificate_binds_the_identity_tls_key() -> None:
    node = attested_node()
    cert = x509.load_pem_x509_certificate(node.cert_pem)
    assert spki_hash(cert) == node.identity.tls_key_hash
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [PEER_TLS_NAME]
    att = read_ratls_certificate(node.cert_pem)
    expected = compute_report_data(BindingLabel.RATLS_CERT, node.identity.tls_spki_der)
    assert parse_quote(att.quote).td_report.report_data == expected
    present = {ext.oid.dotted_string for ext in cert.extensions}
    assert OID_ATTESTATION.dotted_string in present  # the evidence, once
    assert not present & {OID_QUOTE.dotted_string, OID_EVENT_LOG.dotted_string}
    assert len(cert.public_bytes(serialization.Encoding.DER)) < MAX_CLIENT_CERT_DER
    key = serialization.load_pem_private_key(node.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.private_numbers() == node.identity.tls_key.private_numbers()


# -- verify_peer_certificate -------------------------------------------------------------------


def _verify(
    node: PeerNode, view: ChainView, allow: AllowList | None = None, now: int | None = None
) -> NodeRecord:
    allow = allow or AllowList(mr_aggregated_of(node.cert_pem))
    return verify_peer_certificate(
        node.cert_pem,
        view,
        policy=POLICY,
        now=now or int(time.time()),
        kms_allowed=allow,
        accept_simulator=True,
    )


def test_accepts_an_attested_registered_node() -> None:
    node, other = attested_node(), attested_node()
    view = make_view({n.address: n.record() for n in (node, other)})
    assert _verify(node, view) == node.record()


def test_refuses_a_key_that_is_not_registered() -> None:
    node, other = attested_node(), attested_node()
    view = make_view({other.address: other.record()})
    with pytest.raises(Unauthenticated, match=r"^registry: TLS key [0-9a-f]{64} is not the key"):
        _verify(node, view)


@pytest.mark.parametrize("evil_first", [True, False])
def test_refuses_a_key_registered_by_two_approved_nodes(evil_first: bool) -> None:
    """Another approved record carrying the honest node's (public) key hash: refused as
    ambiguous in either registry order, before any evidence is looked at."""
    honest = attested_node()
    evil = attested_node()
    evil.registered_key_hash = honest.identity.tls_key_hash
    order = [evil, honest] if evil_first else [honest, evil]
    view = make_view({n.address: n.record() for n in order})
    allow = AllowList(mr_aggregated_of(honest.cert_pem))
    names = sorted(f"0x{n.address.hex()}" for n in (honest, evil))
    with pytest.raises(
        Unauthenticated,
        match=rf"^registry: TLS key {honest.identity.tls_key_hash.hex()} is registered by 2 "
        rf"approved nodes \({names[0]}, {names[1]}\): ambiguous",
    ):
        _verify(honest, view, allow)
    assert allow.calls == 0
    with pytest.raises(Unauthenticated, match="ambiguous"):
        PeerVerifier(policy=POLICY, kms_allowed=allow, accept_simulator=True).verify(
            honest.cert_pem, view
        )


def test_refuses_a_certificate_without_evidence() -> None:
    identity = NodeIdentity.generate()
    node = PeerNode(
        identity, self_signed(identity.tls_key), key_pem_of(identity), identity.tls_key_hash
    )
    view = make_view({node.address: node.record()})
    with pytest.raises(Unauthenticated, match=r"^evidence: certificate carries no attestation"):
        verify_peer_certificate(
            node.cert_pem,
            view,
            policy=POLICY,
            now=int(time.time()),
            kms_allowed=AllowList(),
            accept_simulator=True,
        )


def test_refuses_evidence_bound_to_another_key() -> None:
    other = NodeIdentity.generate()
    node = attested_node(OtherKeyProvider(attested_provider(), other.tls_spki_der))
    view = make_view({node.address: node.record()})
    with pytest.raises(Unauthenticated, match=r"^evidence: .*step 4 \(report_data binding\)"):
        _verify(node, view, AllowList())


def test_refuses_simulator_evidence_when_governance_disallows_it() -> None:
    node = attested_node()
    view = make_view({node.address: node.record()}, simulator_allowed=False)
    with pytest.raises(
        Unauthenticated,
        match=r"simulator quote refused: governance has simulatorAllowed = false",
    ):
        _verify(node, view)


def test_a_tdx_node_refuses_simulator_peers_whatever_governance_says() -> None:
    node = attested_node()
    view = make_view({node.address: node.record()}, simulator_allowed=True)
    allow = AllowList(mr_aggregated_of(node.cert_pem))
    verifier = PeerVerifier(policy=POLICY, kms_allowed=allow, accept_simulator=False)
    with pytest.raises(
        Unauthenticated, match=r"^evidence: simulator quote refused: this node runs on TDX"
    ):
        verifier.verify(node.cert_pem, view)
    assert allow.calls == 0


def test_refuses_simulator_peers_off_development_chains() -> None:
    node = attested_node()
    view = dataclasses.replace(make_view({node.address: node.record()}), chain_id=1)
    with pytest.raises(
        Unauthenticated, match=r"simulator quote refused: chain 1 is not a development chain"
    ):
        _verify(node, view)


def test_refuses_a_measurement_governance_does_not_allow() -> None:
    node, approved = attested_node(), attested_node(attested_provider(compose=b"\x02" * 32))
    view = make_view({node.address: node.record()})
    allow = AllowList(mr_aggregated_of(approved.cert_pem))
    with pytest.raises(
        Unauthenticated,
        match=r"^measurement: mr_aggregated [0-9a-f]{64} not allowed .*measurement is not allowed",
    ):
        _verify(node, view, allow)
    assert allow.calls == 1


def test_refuses_evidence_without_a_dstack_identity() -> None:
    node = attested_node(SimulatorProvider())  # booted without runtime events
    view = make_view({node.address: node.record()})
    with pytest.raises(
        Unauthenticated, match=r"^identity: the evidence has no dstack runtime events"
    ):
        _verify(node, view, AllowList())


def test_refuses_an_expired_certificate_and_garbage() -> None:
    node = attested_node()
    view = make_view({node.address: node.record()})
    later = int(time.time()) + 400 * 86400
    with pytest.raises(Unauthenticated, match=r"^certificate: not valid at"):
        _verify(node, view, now=later)
    with pytest.raises(Unauthenticated, match=r"^certificate: not a PEM X.509 certificate"):
        verify_peer_certificate(
            b"junk", view, policy=POLICY, now=0, kms_allowed=AllowList(), accept_simulator=True
        )


def test_chain_unavailable_is_not_turned_into_a_refusal() -> None:
    node = attested_node()
    view = make_view({node.address: node.record()})

    def unavailable(evidence: VerifiedEvidence) -> None:
        raise NotReady("chain view is stale")

    with pytest.raises(NotReady, match="stale"):
        verify_peer_certificate(
            node.cert_pem,
            view,
            policy=POLICY,
            now=int(time.time()),
            kms_allowed=unavailable,
            accept_simulator=True,
        )


def test_verifier_caches_per_view_snapshot() -> None:
    node = attested_node()
    allow = AllowList(mr_aggregated_of(node.cert_pem))
    verifier = PeerVerifier(policy=POLICY, kms_allowed=allow, accept_simulator=True)
    view = make_view({node.address: node.record()})
    assert verifier.verify(node.cert_pem, view).address == node.address
    assert verifier.verify(node.cert_pem, view).address == node.address
    assert allow.calls == 1
    newer = make_view({node.address: node.record()}, simulator_allowed=False)
    with pytest.raises(Unauthenticated, match="simulatorAllowed = false"):
        verifier.verify(node.cert_pem, newer)


def test_fetch_from_a_closed_port_names_the_endpoint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NotReady, match=rf"cannot fetch the certificate of 127.0.0.1:{port}"):
        asyncio.run(fetch_peer_certificate(f"127.0.0.1:{port}", timeout=1.0))


def test_spki_hash_is_the_registered_form() -> None:
    identity = NodeIdentity.generate()
    cert = x509.load_pem_x509_certificate(self_signed(identity.tls_key))
    assert spki_hash(cert) == hashlib.sha256(identity.tls_spki_der).digest()


def test_refuses_a_key_that_is_not_ecdsa_p256() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, None)
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(Unauthenticated, match=r"^certificate: key is Ed25519PublicKey, not ECDSA"):
        verify_peer_certificate(
            pem,
            make_view({}),
            policy=POLICY,
            now=int(time.time()),
            kms_allowed=AllowList(),
            accept_simulator=True,
        )


def test_verifier_turns_an_unexpected_failure_into_a_refusal() -> None:
    node = attested_node()

    def broken(evidence: VerifiedEvidence) -> None:
        raise KeyError("surprise")

    verifier = PeerVerifier(policy=POLICY, kms_allowed=broken, accept_simulator=True)
    view = make_view({node.address: node.record()})
    with pytest.raises(
        Unauthenticated, match=r"^measurement: the governance check failed \(KeyError"
    ):
        verifier.verify(node.cert_pem, view)

    class Exploding:
        simulator_allowed = True
        chain_id = 31337

        @property
        def nodes(self) -> dict[bytes, NodeRecord]:
            raise RuntimeError("registry snapshot is corrupt")

    with pytest.raises(Unauthenticated, match=r"^certificate: could not be processed \(Runtime"):
        verifier.verify(node.cert_pem, Exploding())


def test_fetch_from_a_silent_listener_times_out() -> None:
    async def test() -> None:
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        try:
            with pytest.raises(NotReady, match=rf"127.0.0.1:{port}: timed out"):
                await fetch_peer_certificate(f"127.0.0.1:{port}", timeout=0.2)
        finally:
            silent.close()

    asyncio.run(test())
