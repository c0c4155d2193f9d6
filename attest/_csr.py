"""dstack's certificate signing requests (`ra-tls` `CertSigningRequestV1/V2`), SCALE-encoded.

A dstack CVM asks its KMS to sign a certificate (`KMS.SignCert`) with::

    struct CertSigningRequestV2 {
        confirm: String,                    "please sign cert:"
        pubkey: Vec<u8>,                    SubjectPublicKeyInfo DER (ECDSA P-256)
        config: CertConfigV2 {
            org_name: Option<String>, subject: String, subject_alt_names: Vec<String>,
            usage_server_auth: bool, usage_client_auth: bool, ext_quote: bool,
            ext_app_info: bool, not_before: Option<u64>, not_after: Option<u64>,
        },
        attestation: VersionedAttestation,  (`attest._versioned`, V0)
    }

V1 has `CertConfig` (no ext_app_info, not_before, not_after) and, instead of the attestation,
`quote: Vec<u8>, event_log: Vec<u8>` (the event log's JSON). `Option` is 0x00, or 0x01 then
the value; `bool` one byte 0/1; `u64` 8 bytes little-endian. The request is signed by its own
key: ECDSA P-256 with SHA-256 over the SCALE bytes, DER-encoded (ring's
`ECDSA_P256_SHA256_ASN1`), and the confirm word must be exactly "please sign cert:". The
attestation's report_data binds the key (`ratls-cert:` ‖ pubkey), which the KMS checks when
it verifies the evidence. Decoding is strict (canonical lengths, booleans 0/1, no trailing
bytes) and says what is wrong where.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest._eventlog import EventLogEntry, EventLogError, event_log_to_json, parse_event_log
from attest._versioned import (
    AttestationFormatError,
    ScaleReader,
    VersionedAttestation,
    bytes_field,
    compact,
    encode_versioned_attestation,
    read_versioned_attestation,
)
from attest.errors import AttestError

__all__ = [
    "CONFIRM_WORD",
    "CertConfig",
    "CertSigningRequest",
    "CsrError",
    "decode_csr",
    "encode_csr",
    "sign_csr_bytes",
]

CONFIRM_WORD: Final = "please sign cert:"
#: dstack bounds request bodies at 10 MiB; a CSR is its attestation plus a few names.
MAX_CSR_BYTES: Final = 4 * 1024 * 1024
_MAX_NAMES: Final = 64


class CsrError(AttestError):
    """A signing request that does not decode, is not signed by its key, or is not confirmed."""

    def diagnostics(self) -> str:
        return f"certificate signing request rejected: {self}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertConfig:
    """`CertConfigV2` (a V1 config reads as V2 with ext_app_info False and no validity)."""

    subject: str
    org_name: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    usage_server_auth: bool = False
    usage_client_auth: bool = False
    ext_quote: bool = False
    ext_app_info: bool = False
    not_before: int | None = None
    not_after: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertSigningRequest:
    """A decoded request: V2's attestation, or V1's quote and event log, as one shape."""

    version: int  # 1 or 2
    confirm: str
    pubkey: bytes
    config: CertConfig
    quote: bytes
    event_log: tuple[EventLogEntry, ...]
    vm_config: str = ""

    def event_log_json(self) -> str:
        return event_log_to_json(self.event_log)


def _option(value: bytes | None) -> bytes:
    return b"\x00" if value is None else b"\x01" + value


def _text(value: str) -> bytes:
    return bytes_field(value.encode())


def _bool(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def _u64(value: int | None) -> bytes | None:
    if value is None:
        return None
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{value} is not a u64")
    return value.to_bytes(8, "little")


def _config_bytes(config: CertConfig, version: int) -> bytes:
    if len(config.subject_alt_names) > _MAX_NAMES:
        raise ValueError(f"at most {_MAX_NAMES} subject alt names")
    out = [
        _option(None if config.org_name is None else _text(config.org_name)),
        _text(config.subject),
        compact(len(config.subject_alt_names)),
        *(_text(n) for n in config.subject_alt_names),
        _bool(config.usage_server_auth),
        _bool(config.usage_client_auth),
        _bool(config.ext_quote),
    ]
    if version == 2:
        out += [
            _bool(config.ext_app_info),
            _option(_u64(config.not_before)),
            _option(_u64(config.not_after)),
        ]
    return b"".join(out)


def encode_csr(
    request: CertSigningRequest, attestation: VersionedAttestation | None = None
) -> bytes:
    """The SCALE bytes a dstack CVM signs and sends (V2 needs `attestation`, with the
    request's quote and log; V1 carries the quote and the log's JSON)."""
    head = _text(request.confirm) + bytes_field(request.pubkey)
    config = _config_bytes(request.config, request.version)
    if request.version == 2:
        if attestation is None:
            raise ValueError("a V2 request carries a VersionedAttestation")
        return head + config + encode_versioned_attestation(attestation)
    if request.version == 1:
        return (
            head
            + config
            + bytes_field(request.quote)
            + bytes_field(request.event_log_json().encode())
        )
    raise ValueError(f"request version {request.version} is not 1 or 2")


def _read_option(r: ScaleReader, what: str) -> bool:
    start = r.pos
    tag = r.take(1, what)[0]
    if tag > 1:
        raise AttestationFormatError(f"{what}: option tag {tag} is not 0 or 1", offset=start)
    return tag == 1


def _read_bool(r: ScaleReader, what: str) -> bool:
    start = r.pos
    value = r.take(1, what)[0]
    if value > 1:
        raise AttestationFormatError(f"{what}: boolean byte {value} is not 0 or 1", offset=start)
    return value == 1


def _read_u64(r: ScaleReader, what: str) -> int | None:
    if not _read_option(r, what):
        return None
    return int.from_bytes(r.take(8, what), "little")


def _read_config(r: ScaleReader, version: int) -> CertConfig:
    org = r.text("config.org_name") if _read_option(r, "config.org_name") else None
    subject = r.text("config.subject")
    start = r.pos
    count = r.compact("config.subject_alt_names")
    if count > _MAX_NAMES:
        raise AttestationFormatError(
            f"config.subject_alt_names has {count} names, limit {_MAX_NAMES}", offset=start
        )
    names = tuple(r.text(f"config.subject_alt_names[{i}]") for i in range(count))
    flags = {
        name: _read_bool(r, f"config.{name}")
        for name in ("usage_server_auth", "usage_client_auth", "ext_quote")
    }
    config = CertConfig(subject=subject, org_name=org, subject_alt_names=names, **flags)
    if version == 1:
        return config
    return replace(
        config,
        ext_app_info=_read_bool(r, "config.ext_app_info"),
        not_before=_read_u64(r, "config.not_before"),
        not_after=_read_u64(r, "config.not_after"),
    )


def _decode(data: bytes, version: int) -> CertSigningRequest:
    r = ScaleReader(data)
    confirm = r.text("confirm")
    pubkey = r.vec("pubkey")
    config = _read_config(r, version)
    if version == 2:
        att = read_versioned_attestation(r)
        quote, log, vm_config = att.quote, att.event_log, att.vm_config
    else:
        quote = r.vec("quote")
        raw_log = r.vec("event_log")
        try:
            log = parse_event_log(raw_log) if raw_log else ()
        except EventLogError as exc:
            raise CsrError(f"event_log: {exc}") from None
        vm_config = ""
    if r.pos != len(data):
        raise AttestationFormatError(f"{len(data) - r.pos} trailing bytes", offset=r.pos)
    return CertSigningRequest(
        version=version,
        confirm=confirm,
        pubkey=pubkey,
        config=config,
        quote=quote,
        event_log=tuple(log),
        vm_config=vm_config,
    )


def _public_key(spki: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CsrError(f"pubkey is not a SubjectPublicKeyInfo: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CsrError("pubkey is not an ECDSA P-256 key (dstack signs only those)")
    return key


def decode_csr(data: bytes, signature: bytes, version: int) -> CertSigningRequest:
    """Decode a request of `version` (1 or 2) and check it as dstack's KMS does: the signature
    by its own key over exactly `data`, and the confirm word. Raises CsrError naming what."""
    if version not in (1, 2):
        raise CsrError(f"unsupported API version {version} (1 or 2)")
    if len(data) > MAX_CSR_BYTES:
        raise CsrError(f"csr is {len(data)} bytes, limit {MAX_CSR_BYTES}")
    try:
        request = _decode(data, version)
    except AttestationFormatError as exc:
        raise CsrError(f"csr does not decode as CertSigningRequestV{version}: {exc}") from None
    key = _public_key(request.pubkey)
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise CsrError(
            "signature: not the request key's ECDSA P-256 signature over the csr"
        ) from None
    if request.confirm != CONFIRM_WORD:
        raise CsrError(f"confirm word {request.confirm[:32]!r} is not {CONFIRM_WORD!r}")
    return request


def sign_csr_bytes(data: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """What a dstack CVM sends as `signature`: DER ECDSA P-256/SHA-256 over the csr bytes."""
    return key.sign(data, ec.ECDSA(hashes.SHA256()))
