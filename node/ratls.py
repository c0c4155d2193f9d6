"""The node's RA-TLS certificate, and the check every peer certificate must pass (design §6.4).

A node's certificate is a standard RA-TLS certificate (attest) for its sealed TLS key:
report_data = SHA-512("ratls-cert:" || SPKI DER), dstack's extensions, self-signed, with the
fixed DNS name `PEER_TLS_NAME` so that peers dial it with ``grpc.ssl_target_name_override``
(endpoints are IP addresses or arbitrary host names; the name proves nothing, the pin does).

`verify_peer_certificate` accepts a certificate only if, in this order (cheap checks first, so
an unregistered caller cannot make us verify quotes):

1. ``certificate``  it parses and is valid at `now`;
2. ``registry``     SHA-256 of its SPKI is the TLS key hash of exactly one approved node in
                    the view (two approved nodes with one key hash: refused as ambiguous);
3. ``evidence``     its RA-TLS evidence verifies (quote, replay, identity, key binding);
                    simulator quotes only when this node accepts them (`accept_simulator`,
                    False on TDX), the view says ``simulatorAllowed`` and the chain is a
                    development chain (`node.tee.simulator_refusal`);
4. ``identity``     the evidence carries a dstack identity (mr_aggregated is what is approved);
5. ``measurement``  `kms_allowed(evidence)` (the node asks governance) does not raise.

Every refusal raises `Unauthenticated` whose message starts with the step name.

Also here: `PeerVerifier` (the check with the node's settings, cached per chain view),
`fetch_peer_certificate` (read what a peer endpoint serves, to verify and pin it; the fetch
itself, `fetch_context` and `spki_hash` live in `attest`, shared with the guest's pinned Kms
channels) and `TrustBundle` (the peer server's grpc TLS configuration: its own pair plus the
verified peer certificates as client-certificate roots).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest import (
    NODE_TLS_NAME,
    AllOf,
    AttestError,
    CertificateFetchError,
    Collateral,
    Policy,
    SimulatorAllowed,
    VerifiedEvidence,
    create_ratls_certificate,
    fetch_certificate,
    fetch_context,
    is_simulator_quote,
    make_quote_verifier,
    parse_quote,
    read_ratls_certificate,
    spki_hash,
    verify_ratls_certificate,
)
from attest._ratls import OID_EVENT_LOG, OID_QUOTE
from attest.providers import TeeProvider
from node.errors import NodeError, NotReady, Unauthenticated
from node.identity import NodeIdentity
from node.logs import get_logger
from node.tee import simulator_refusal

__all__ = [
    "MAX_CLIENT_CERT_DER",
    "PEER_TLS_NAME",
    "KmsAllowed",
    "PeerRecord",
    "PeerRegistry",
    "PeerVerifier",
    "TrustBundle",
    "Trusted",
    "fetch_context",
    "fetch_peer_certificate",
    "make_node_certificate",
    "spki_hash",
    "verify_peer_certificate",
]

log = get_logger("tkms.node.ratls")

#: The DNS name in every node certificate (attest's `NODE_TLS_NAME`); clients override the
#: target name to it.
PEER_TLS_NAME = NODE_TLS_NAME
#: Node certificates are re-made at every start; a year only bounds a forgotten process.
CERT_LIFETIME = dt.timedelta(days=365)
#: Client certificates larger than this (DER) make grpc 1.85's TLS fail after the handshake
#: (measured: 7.8 KB works, 9.2 KB fails); see `make_node_certificate`.
MAX_CLIENT_CERT_DER = 8 * 1024

#: Asks governance whether the evidence's KMS measurement (OS image, TCB) is allowed; raises
#: (`PolicyDenied` with the chain's reason) when it is not.
KmsAllowed = Callable[[VerifiedEvidence], None]


class PeerRecord(Protocol):
    """What this module needs of a registry entry (`node.chainview.NodeRecord`)."""

    @property
    def address(self) -> bytes: ...
    @property
    def peer_endpoint(self) -> str: ...
    @property
    def tls_key_hash(self) -> bytes: ...


R_co = TypeVar("R_co", bound=PeerRecord, covariant=True)


class PeerRegistry(Protocol[R_co]):
    """What this module needs of a chain snapshot (`node.chainview.ChainView`)."""

    @property
    def nodes(self) -> Mapping[bytes, R_co]: ...
    @property
    def simulator_allowed(self) -> bool: ...
    @property
    def chain_id(self) -> int: ...


R = TypeVar("R", bound=PeerRecord)


def make_node_certificate(identity: NodeIdentity, provider: TeeProvider) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM): a fresh RA-TLS certificate for the node's TLS key.

    The evidence is carried once, in dstack's versioned attestation (.8: quote, RTMR3 log,
    report_data); the duplicate raw quote (.1) and full JSON event log (.2) that
    `create_ratls_certificate` also writes are left out. The size matters: the certificate
    is our *client* certificate too, the server's TLS 1.3 session tickets carry it, and
    grpc's TLS layer fails every connection once they outgrow its 17 KB buffer (certificates
    above roughly `MAX_CLIENT_CERT_DER` bytes; grpc/grpc#17340). The key PEM is what grpcio
    needs to serve and present the certificate; keep it in memory only (the sealed TLS key).
    """
    address = "0x" + identity.eth_address.hex()
    now = dt.datetime.now(dt.UTC)
    full = create_ratls_certificate(
        identity.tls_key,
        provider,
        subject=f"tkms-node {address}",
        alt_names=[PEER_TLS_NAME],
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + CERT_LIFETIME,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(full.subject)
        .issuer_name(full.issuer)
        .public_key(identity.tls_key.public_key())
        .serial_number(full.serial_number)
        .not_valid_before(full.not_valid_before_utc)
        .not_valid_after(full.not_valid_after_utc)
    )
    for ext in full.extensions:
        if ext.oid not in (OID_QUOTE, OID_EVENT_LOG):
            builder = builder.add_extension(ext.value, critical=ext.critical)
    cert = builder.sign(identity.tls_key, hashes.SHA256())
    size = len(cert.public_bytes(serialization.Encoding.DER))
    if size > MAX_CLIENT_CERT_DER:
        log.warning("node_certificate_large", der_bytes=size, limit=MAX_CLIENT_CERT_DER)
    key_pem = identity.tls_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _load(cert_pem: bytes, now: int) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise Unauthenticated(f"certificate: not a PEM X.509 certificate ({exc})") from None
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise Unauthenticated(f"certificate: unusable public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Unauthenticated(f"certificate: key is {type(key).__name__}, not ECDSA P-256")
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise Unauthenticated(
            f"certificate: not valid at {when.isoformat()} (valid "
            f"{cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()})"
        )
    return cert


def _registered(cert: x509.Certificate, view: PeerRegistry[R]) -> R:
    """The one approved node whose registered TLS key hash is the certificate's key.

    Two approved registrations with one key hash make the certificate's owner ambiguous: the
    key hash is public, so a second registration could carry an honest node's and have that
    node's certificate (and calls) attributed to it. Refused, naming both, never resolved by
    registry order.
    """
    key_hash = spki_hash(cert)
    owners = [record for record in view.nodes.values() if record.tls_key_hash == key_hash]
    if len(owners) == 1:
        return owners[0]
    if owners:
        names = ", ".join(sorted(f"0x{record.address.hex()}" for record in owners))
        raise Unauthenticated(
            f"registry: TLS key {key_hash.hex()} is registered by {len(owners)} approved nodes "
            f"({names}): ambiguous, refused until governance removes all but one"
        )
    raise Unauthenticated(f"registry: TLS key {key_hash.hex()} is not the key of any approved node")


def _evidence(
    cert: x509.Certificate,
    view: PeerRegistry[R],
    policy: Policy,
    now: int,
    collateral: Collateral | None,
    accept_simulator: bool,
) -> VerifiedEvidence:
    try:
        quote = parse_quote(read_ratls_certificate(cert).quote)
        simulated = is_simulator_quote(quote)
        if simulated:
            refusal = simulator_refusal(
                accept_locally=accept_simulator,
                chain_id=view.chain_id,
                allowed_on_chain=view.simulator_allowed,
            )
            if refusal is not None:
                raise Unauthenticated(f"evidence: simulator quote refused: {refusal}")
            policy = AllOf([policy, SimulatorAllowed()])
        verifier = make_quote_verifier(now=now, policy=policy, collateral=collateral)
        return verify_ratls_certificate(cert, verify_quote=verifier)
    except AttestError as exc:
        raise Unauthenticated(f"evidence: {exc}") from None


def verify_peer_certificate(
    cert_pem: bytes,
    view: PeerRegistry[R],
    *,
    policy: Policy,
    now: int,
    kms_allowed: KmsAllowed,
    accept_simulator: bool,
    collateral: Collateral | None = None,
) -> R:
    """The approved node `cert_pem` belongs to; raises `Unauthenticated` naming the step.

    Steps in the module docstring. `collateral` is needed for hardware quotes (DCAP).
    `accept_simulator` is this node's own say (`node.tee.accepts_simulator`).
    `NotReady` from `kms_allowed` (the chain cannot be asked) propagates unchanged.
    """
    cert = _load(cert_pem, now)  # (1)
    record = _registered(cert, view)  # (2)
    evidence = _evidence(cert, view, policy, now, collateral, accept_simulator)  # (3)
    if evidence.identity is None:  # (4)
        raise Unauthenticated(
            "identity: the evidence has no dstack runtime events, so no KMS measurement"
        )
    try:  # (5)
        kms_allowed(evidence)
    except NotReady:
        raise
    except NodeError as exc:
        raise Unauthenticated(
            f"measurement: mr_aggregated {evidence.identity.mr_aggregated.hex()} "
            f"not allowed for KMS nodes: {exc}"
        ) from None
    except Exception as exc:  # the check itself failed: refuse, saying so
        raise Unauthenticated(
            f"measurement: the governance check failed ({type(exc).__name__}: {exc})"
        ) from exc
    return record


class PeerVerifier:
    """`verify_peer_certificate` with the node's settings and a small per-view cache.

    A hit needs the same certificate bytes and the very same view snapshot (views are
    immutable and replaced on every change) no older than `ttl` seconds, so a revocation on
    chain takes effect with the next view.
    """

    def __init__(
        self,
        *,
        policy: Policy,
        kms_allowed: KmsAllowed,
        accept_simulator: bool,
        collateral: Collateral | None = None,
        clock: Callable[[], float] = time.time,
        ttl: float = 60.0,
        max_entries: int = 256,
    ) -> None:
        self.policy, self.kms_allowed, self.collateral = policy, kms_allowed, collateral
        self.accept_simulator = accept_simulator
        self.clock, self.ttl, self.max_entries = clock, ttl, max_entries
        self._cache: OrderedDict[bytes, tuple[object, PeerRecord, float]] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, cert_pem: bytes, view: PeerRegistry[R]) -> R:
        """The node the certificate belongs to, or `Unauthenticated` with the reason."""
        digest, now = hashlib.sha256(cert_pem).digest(), self.clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] is view and now - hit[2] < self.ttl:
            return cast("R", hit[1])
        try:
            record = verify_peer_certificate(
                cert_pem,
                view,
                policy=self.policy,
                now=int(now),
                kms_allowed=self.kms_allowed,
                accept_simulator=self.accept_simulator,
                collateral=self.collateral,
            )
        except NodeError:
            raise
        except Exception as exc:
            # Certificates come from the network: whatever a parser below us trips on is a
            # refusal of that certificate, never a crash of the task that asked.
            raise Unauthenticated(
                f"certificate: could not be processed ({type(exc).__name__}: {exc})"
            ) from exc
        with self._lock:
            self._cache[digest] = (view, record, now)
            self._cache.move_to_end(digest)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return record


async def fetch_peer_certificate(
    endpoint: str, *, timeout: float, context: ssl.SSLContext | None = None
) -> bytes:
    """The certificate (PEM) the peer at `endpoint` serves, NOT verified: verify it, then pin it.

    `attest.fetch_certificate` with its failure as `NotReady` (retryable); `context` comes
    from `fetch_context` (default: one that presents no certificate).
    """
    try:
        return await fetch_certificate(endpoint, timeout=timeout, context=context)
    except CertificateFetchError as exc:
        raise NotReady(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Trusted:
    """A peer certificate admitted to the bundle, and the registry entry it was checked for."""

    address: bytes
    endpoint: str
    tls_key_hash: bytes
    cert_pem: bytes
    #: when the certificate last passed `verify_peer_certificate` (monotonic seconds)
    verified_at: float = field(default=0.0, compare=False)


class TrustBundle:
    """The server's TLS configuration: its own pair plus the verified peer certificates.

    grpc calls `fetch` (from its own threads) at every handshake; it returns a new
    configuration only when the bundle changed since the last one it handed out.
    """

    def __init__(self, certificate: tuple[bytes, bytes]) -> None:
        self._cert, self._key = certificate
        self._trusted: dict[bytes, Trusted] = {}
        self._lock = threading.Lock()
        self._version = self._served = 0

    def trusted(self) -> Mapping[bytes, Trusted]:
        with self._lock:
            return dict(self._trusted)

    def replace(self, trusted: Mapping[bytes, Trusted]) -> bool:
        """Install a new set of trusted peers; True if it differs from the current one."""
        with self._lock:
            if dict(trusted) == self._trusted:
                return False
            self._trusted, self._version = dict(trusted), self._version + 1
            return True

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        with self._lock:
            # Our own certificate is always a root: grpc needs a non-empty bundle, and a
            # node calling itself is harmless.
            roots = b"".join([self._cert, *(t.cert_pem for t in self._trusted.values())])
            self._served = self._version
        return grpc.ssl_server_certificate_configuration([(self._key, self._cert)], roots)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            changed = self._served != self._version
        return self.configuration() if changed else None
