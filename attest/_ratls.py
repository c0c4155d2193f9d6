"""RA-TLS certificates (design §4.5): X.509 certificates that carry TDX evidence for their key.

The certificate's key is bound to the quote by report_data = SHA-512("ratls-cert:" || SPKI DER),
and the evidence travels in non-critical extensions under dstack's arc 1.3.6.1.4.1.62397.1,
encoded as dstack's `ra-tls` crate does (every value wrapped in a DER OCTET STRING):

======  ===================  ===============================================================
 .1      TDX quote            raw quote bytes
 .2      event log            dstack's JSON event log (optionally ``ELGZv1`` + gzip, on read)
 .3      app_id               raw app-id bytes
 .4      special usage        UTF-8 text: what dstack's KMS issued the certificate for
                              (``kms:rpc``, ``app:ca``, ``app:custom``)
 .8      attestation          SCALE ``VersionedAttestation::V0 { Attestation }`` with the quote,
                              the event log stripped to RTMR3, runtime events, report_data and
                              the VM config (dstack-attest's `to_scale` layout)
 .9      app info             MessagePack map keyed by field name (rmp-serde `to_vec_named`)
======  ===================  ===============================================================

tkms writes .1, .2 (full log, so RTMR0-2 can be replayed), .3 when given, .8 and .9 when
given; it reads .1/.2 when present, else .8, and refuses a certificate whose .1 and .8 quotes
differ. The SCALE and MessagePack codecs below cover only the types these extensions use.
"""

from __future__ import annotations

import datetime as dt
import gzip
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from attest._binding import BindingLabel, compute_report_data
from attest._eventlog import (
    EventLogEntry,
    EventLogError,
    event_log_to_json,
    parse_event_log,
)
from attest._evidence import EvidenceError, QuoteVerifier, VerifiedEvidence, verify_evidence
from attest._identity import AppIdentity
from attest._versioned import (
    AttestationFormatError,
    ScaleReader,
    VersionedAttestation,
    decode_versioned_attestation,
    encode_versioned_attestation,
    runtime_events_of,
)
from attest.errors import AttestError
from attest.providers._base import TeeProvider

__all__ = [
    "OID_APP_ID",
    "OID_APP_INFO",
    "OID_ATTESTATION",
    "OID_CERT_USAGE",
    "OID_EVENT_LOG",
    "OID_QUOTE",
    "RaTlsAttestation",
    "RaTlsError",
    "app_info_fields",
    "create_ratls_certificate",
    "read_ratls_certificate",
    "verify_ratls_certificate",
]

_ARC = "1.3.6.1.4.1.62397.1"
OID_QUOTE = x509.ObjectIdentifier(f"{_ARC}.1")
OID_EVENT_LOG = x509.ObjectIdentifier(f"{_ARC}.2")
OID_APP_ID = x509.ObjectIdentifier(f"{_ARC}.3")
OID_CERT_USAGE = x509.ObjectIdentifier(f"{_ARC}.4")
OID_ATTESTATION = x509.ObjectIdentifier(f"{_ARC}.8")
OID_APP_INFO = x509.ObjectIdentifier(f"{_ARC}.9")
_GZIP_MAGIC = b"ELGZv1"
_MAX_EVENT_LOG = 4 << 20


class RaTlsError(AttestError):
    """An RA-TLS certificate is malformed, lacks evidence, or its extensions disagree."""

    def diagnostics(self) -> str:
        return f"RA-TLS certificate rejected: {self}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RaTlsAttestation:
    """The unverified evidence read from a certificate, and the key it claims to bind."""

    quote: bytes
    event_log: tuple[EventLogEntry, ...]
    app_id: bytes | None
    app_info: dict[str, bytes] | None
    vm_config: str | None
    public_key_der: bytes


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def app_info_fields(identity: AppIdentity) -> dict[str, bytes]:
    """dstack's `AppInfo` of an identity, for extension .9 (`encode_app_info`)."""
    names = ("app_id", "compose_hash", "instance_id", "device_id", "mr_system")
    info = {n: getattr(identity, n) for n in names}
    info |= {
        "mr_aggregated": identity.mr_aggregated,
        "os_image_hash": identity.os_image_hash,
        "key_provider_info": identity.key_provider_info,
    }
    return info


def create_ratls_certificate(
    key: ec.EllipticCurvePrivateKey,
    provider: TeeProvider,
    *,
    subject: str = "RA-TLS Cert",
    alt_names: Sequence[str] = (),
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    app_id: bytes | None = None,
    app_info: AppIdentity | None = None,
    vm_config: str = "",
    server_auth: bool = True,
    client_auth: bool = True,
) -> x509.Certificate:
    """Quote `key` through `provider` and issue a certificate carrying the evidence.

    Self-signed unless `issuer` (certificate, key) is given. `key` must be ECDSA P-256.
    """
    if not isinstance(key.curve, ec.SECP256R1):
        raise RaTlsError(f"RA-TLS keys are ECDSA P-256, got {key.curve.name}")
    spki = _spki(key.public_key())
    report_data = compute_report_data(BindingLabel.RATLS_CERT, spki)
    quote = provider.get_quote(report_data)
    log = provider.event_log()
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server_auth
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] * client_auth
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if alt_names:
        sans = [x509.DNSName(n) for n in alt_names]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    exts = [
        (OID_QUOTE, quote),
        (OID_EVENT_LOG, event_log_to_json(log).encode()),
        (OID_ATTESTATION, encode_attestation(quote, log, report_data, vm_config)),
    ]
    if app_id is not None:
        exts.append((OID_APP_ID, app_id))
    if app_info is not None:
        exts.append((OID_APP_INFO, encode_app_info(app_info_fields(app_info))))
    for oid, value in exts:
        ext = x509.UnrecognizedExtension(oid, octet_string(value))
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension) as exc:
        raise RaTlsError(f"certificate extensions are malformed: {exc}") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise RaTlsError(f"extension {oid.dotted_string} has an unexpected type")
    try:
        return unwrap_octet_string(value.value)
    except CodecError as exc:
        raise RaTlsError(f"extension {oid.dotted_string}: {exc}") from None


def _event_log_json(raw: bytes) -> tuple[EventLogEntry, ...]:
    if raw.startswith(_GZIP_MAGIC):
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = inflater.decompress(raw[len(_GZIP_MAGIC) :], _MAX_EVENT_LOG + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise RaTlsError(f"event log extension is not valid gzip: {exc}") from None
        if len(raw) > _MAX_EVENT_LOG:
            raise RaTlsError(f"event log extension inflates beyond {_MAX_EVENT_LOG} bytes")
    return parse_event_log(raw)


def _load(cert: x509.Certificate | bytes) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    try:
        if cert.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(cert)
        return x509.load_der_x509_certificate(cert)
    except (ValueError, x509.InvalidVersion) as exc:
        raise RaTlsError(f"not an X.509 certificate: {exc}") from None


def read_ratls_certificate(cert: x509.Certificate | bytes) -> RaTlsAttestation:
    """Extract the (unverified) evidence from an RA-TLS certificate (PEM, DER or parsed)."""
    cert = _load(cert)
    try:
        key = cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise RaTlsError(f"certificate public key is malformed: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise RaTlsError("RA-TLS certificate key is not an EC key")
    quote_ext, log_ext = _ext(cert, OID_QUOTE), _ext(cert, OID_EVENT_LOG)
    att_ext = _ext(cert, OID_ATTESTATION)
    info_ext, app_id = _ext(cert, OID_APP_INFO), _ext(cert, OID_APP_ID)
    try:
        att = decode_attestation(att_ext) if att_ext is not None else None
        app_info = decode_app_info(info_ext) if info_ext is not None else None
        if quote_ext is not None:
            quote, log = quote_ext, _event_log_json(log_ext or b"[]")
            if att is not None and att.quote != quote:
                raise RaTlsError("the quote in extension .1 differs from the one in .8")
        elif att is not None:
            quote, log = att.quote, att.event_log
        else:
            raise RaTlsError("certificate carries no attestation (no extension .1 or .8)")
    except (CodecError, EventLogError) as exc:
        raise RaTlsError(f"attestation extension: {exc}") from None
    return RaTlsAttestation(
        quote=quote,
        event_log=log,
        app_id=app_id,
        app_info=app_info,
        vm_config=(att.vm_config or None) if att is not None else None,
        public_key_der=_spki(key),
    )


def verify_ratls_certificate(
    cert: x509.Certificate | bytes, *, verify_quote: QuoteVerifier, vm_config: str | None = None
) -> VerifiedEvidence:
    """Verify an RA-TLS certificate's evidence: quote, replay, identity, and key binding.

    Also requires the app_id extension (.3), when present, to equal the measured app-id.
    The certificate's own signature and validity are the TLS stack's job.
    """
    att = read_ratls_certificate(cert)
    evidence = verify_evidence(
        att.quote,
        att.event_log,
        verify_quote=verify_quote,
        binding=(BindingLabel.RATLS_CERT, att.public_key_der),
        vm_config=vm_config if vm_config is not None else att.vm_config,
        require_identity=att.app_id is not None,
    )
    measured = evidence.identity.app_id if evidence.identity else None
    if att.app_id is not None and att.app_id != measured:
        mismatch = RaTlsError(
            f"app_id extension {att.app_id.hex()} differs from the measured app-id "
            f"{measured.hex() if measured is not None else 'none'}"
        )
        raise EvidenceError("identity", mismatch)
    return evidence


# --- codecs: DER OCTET STRING, SCALE (dstack-attest), MessagePack (app info) -----------------


class CodecError(ValueError):
    """Bytes in an extension do not follow the expected encoding."""


def octet_string(value: bytes) -> bytes:
    """DER OCTET STRING holding `value` (dstack wraps every extension value in one)."""
    n = len(value)
    if n < 0x80:
        return bytes([0x04, n]) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(size)]) + size + value


def unwrap_octet_string(der: bytes) -> bytes:
    """The content of a DER OCTET STRING that spans exactly `der`."""
    if len(der) < 2 or der[0] != 0x04:
        raise CodecError("extension value is not a DER OCTET STRING")
    first, pos = der[1], 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or len(der) < 2 + count or der[2] == 0:
            raise CodecError("bad DER length in OCTET STRING")
        length, pos = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
        if length < 0x80:
            raise CodecError("non-minimal DER length in OCTET STRING")
    if pos + length != len(der):
        raise CodecError(f"OCTET STRING length {length} does not match {len(der) - pos} bytes")
    return der[pos:]


def encode_attestation(
    quote: bytes, log: Sequence[EventLogEntry], report_data: bytes, config: str
) -> bytes:
    """SCALE `VersionedAttestation::V0` with the log stripped to RTMR3, as dstack embeds it:
    runtime events without their digest (replay recomputes it)."""
    stripped = tuple(replace(e, digest=b"") if e.is_runtime_event else e for e in log if e.imr == 3)
    return encode_versioned_attestation(
        VersionedAttestation(
            quote=quote,
            event_log=stripped,
            runtime_events=runtime_events_of(log),
            report_data=report_data,
            vm_config=config,
        )
    )


def decode_attestation(data: bytes) -> VersionedAttestation:
    """Parse extension .8 (TDX attestations only, `attest._versioned`)."""
    try:
        return decode_versioned_attestation(data)
    except AttestationFormatError as exc:
        raise CodecError(str(exc)) from None


def encode_app_info(info: dict[str, bytes]) -> bytes:
    """MessagePack map {str: bin} (what rmp-serde's `to_vec_named` emits for AppInfo)."""
    out = bytearray([0x80 | len(info)])
    for name, value in info.items():
        key = name.encode()
        out += bytes([0xA0 | len(key)]) + key
        n = len(value)
        out += (bytes([0xC4, n]) if n < 256 else b"\xc5" + n.to_bytes(2, "big")) + value
    return bytes(out)


def decode_app_info(data: bytes) -> dict[str, bytes]:
    """Read the MessagePack map of extension .9 (maps of str to bin; nothing else)."""
    try:
        return _decode_app_info(data)
    except AttestationFormatError as exc:
        raise CodecError(f"app info: {exc}") from None


def _decode_app_info(data: bytes) -> dict[str, bytes]:
    r = ScaleReader(data)  # reused for its bounds-checked `take`
    head = r.take(1, "map")[0]
    if head & 0xF0 != 0x80:
        raise CodecError("app info is not a MessagePack map (positional form unsupported)")
    out: dict[str, bytes] = {}
    for _ in range(head & 0x0F):
        tag = r.take(1, "key")[0]
        if tag & 0xE0 != 0xA0:
            raise CodecError("app info key is not a short string")
        key = r.take(tag & 0x1F, "key").decode("utf-8", "replace")
        kind = r.take(1, "value")[0]
        widths = {0xC4: 1, 0xC5: 2, 0xC6: 4}
        if kind not in widths:
            raise CodecError(f"app info value of {key!r} is not binary")
        out[key] = r.take(int.from_bytes(r.take(widths[kind], "len"), "big"), "value")
    if r.pos != len(data):
        raise CodecError("trailing bytes after the app info map")
    return out
