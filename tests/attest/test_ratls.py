"""RA-TLS certificates: creation, reading (dstack's encodings), and verification end to end."""

from __future__ import annotations

import contextlib
import gzip
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from attest import AttestError
from attest._evidence import EvidenceError, make_quote_verifier
from attest._ratls import (
    OID_APP_ID,
    OID_ATTESTATION,
    OID_EVENT_LOG,
    OID_QUOTE,
    CodecError,
    RaTlsError,
    create_ratls_certificate,
    decode_app_info,
    decode_attestation,
    encode_app_info,
    encode_attestation,
    octet_string,
    read_ratls_certificate,
    unwrap_octet_string,
    verify_ratls_certificate,
)
from attest.policy import AllOf, default_policy
from attest.providers import SimulatorAllowed, SimulatorProvider

NOW = 1_800_000_000
VERIFY = make_quote_verifier(now=NOW, policy=AllOf([SimulatorAllowed(), *default_policy().checks]))
APP_ID = bytes.fromhex("86b0e55f2fa8e4fb69d890f14f54d5612707646e")


@pytest.fixture(scope="module")
def sim() -> SimulatorProvider:
    p = SimulatorProvider()
    p.extend_rtmr(3, "app-id", APP_ID)
    p.extend_rtmr(3, "compose-hash", b"\x01" * 32)
    p.extend_rtmr(3, "system-ready", b"")
    return p


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _rebuild(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, keep: set[str] | None = None
) -> x509.Certificate:
    """Copy `cert`'s RA-TLS extensions (optionally only `keep`) onto a certificate for `key`."""
    b = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        if ext.oid.dotted_string.startswith("1.3.6.1.4.1.62397.1.") and (
            keep is None or ext.oid.dotted_string in keep
        ):
            b = b.add_extension(ext.value, critical=False)
    return b.sign(key, hashes.SHA256())


def test_round_trip_and_verify(sim: SimulatorProvider) -> None:
    key = _key()
    cert = create_ratls_certificate(key, sim, app_id=APP_ID, alt_names=["node.example"])
    att = read_ratls_certificate(cert.public_bytes(serialization.Encoding.PEM))
    assert att.app_id == APP_ID and att.event_log == sim.event_log()
    ev = verify_ratls_certificate(
        cert.public_bytes(serialization.Encoding.DER), verify_quote=VERIFY
    )
    assert ev.identity is not None and ev.identity.app_id == APP_ID and ev.simulated


def test_refused_without_simulator_policy(sim: SimulatorProvider) -> None:
    cert = create_ratls_certificate(_key(), sim)
    strict = make_quote_verifier(now=NOW, policy=default_policy())
    with pytest.raises(EvidenceError, match="step 1 .*does not allow simulators"):
        verify_ratls_certificate(cert, verify_quote=strict)


def test_evidence_moved_to_another_key_fails_binding(sim: SimulatorProvider) -> None:
    stolen = _rebuild(create_ratls_certificate(_key(), sim), _key())
    with pytest.raises(EvidenceError, match=r"step 4 \(report_data binding\)") as e:
        verify_ratls_certificate(stolen, verify_quote=VERIFY)
    assert e.value.step == "binding"


def test_app_id_extension_must_match_measurement(sim: SimulatorProvider) -> None:
    cert = create_ratls_certificate(_key(), sim, app_id=b"\xff" * 20)
    with pytest.raises(EvidenceError, match="app_id extension ff+ differs from the measured"):
        verify_ratls_certificate(cert, verify_quote=VERIFY)


def test_attestation_extension_alone_is_enough(sim: SimulatorProvider) -> None:
    key = _key()
    only8 = _rebuild(create_ratls_certificate(key, sim), key, keep={OID_ATTESTATION.dotted_string})
    att = read_ratls_certificate(only8)
    assert [e.event for e in att.event_log] == ["app-id", "compose-hash", "system-ready"]
    assert all(e.digest == b"" for e in att.event_log)  # stripped, recomputed on replay
    ev = verify_ratls_certificate(only8, verify_quote=VERIFY)
    assert ev.replayed_rtmrs == (3,)


def test_no_evidence_and_conflicting_quotes(sim: SimulatorProvider) -> None:
    key = _key()
    cert = create_ratls_certificate(key, sim)
    with pytest.raises(RaTlsError, match="carries no attestation"):
        read_ratls_certificate(_rebuild(cert, key, keep=set()))
    other = create_ratls_certificate(_key(), sim)
    b = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(cert.extensions.get_extension_for_oid(OID_QUOTE).value, critical=False)
        .add_extension(
            other.extensions.get_extension_for_oid(OID_ATTESTATION).value, critical=False
        )
    )
    with pytest.raises(RaTlsError, match=r"quote in extension \.1 differs from the one in \.8"):
        read_ratls_certificate(b.sign(key, hashes.SHA256()))


def test_gzip_event_log_extension_is_read(sim: SimulatorProvider) -> None:
    key = _key()
    cert = create_ratls_certificate(key, sim)
    log = unwrap_octet_string(
        cert.extensions.get_extension_for_oid(OID_EVENT_LOG).value.value  # type: ignore[attr-defined]
    )
    packed = x509.UnrecognizedExtension(OID_EVENT_LOG, octet_string(b"ELGZv1" + gzip.compress(log)))
    b = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.subject)
        .public_key(key.public_key())
        .serial_number(3)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(cert.extensions.get_extension_for_oid(OID_QUOTE).value, critical=False)
        .add_extension(packed, critical=False)
    )
    assert read_ratls_certificate(b.sign(key, hashes.SHA256())).event_log == sim.event_log()


def test_dstack_scale_vector() -> None:
    # From dstack ra-tls `test_csr_v2_scale_encoding_stable_with_tdx_quote`: the attestation
    # part of the expected encoding for quote [9], no events, zero report_data, empty config.
    assert (
        encode_attestation(b"\x09", [], bytes(64), "")
        == b"\x00\x00\x04\x09\x00\x00" + bytes(64) + b"\x00"
    )
    decoded = decode_attestation(b"\x00\x00\x04\x09\x00\x00" + bytes(64) + b"\x00")
    assert decoded.quote == b"\x09" and decoded.vm_config == ""


def test_app_info_map_round_trip() -> None:
    info = {"app_id": b"\x01" * 20, "key_provider_info": json.dumps({"id": "a" * 300}).encode()}
    assert decode_app_info(encode_app_info(info)) == info
    with pytest.raises(CodecError, match="positional form unsupported"):
        decode_app_info(b"\x92\xc4\x00\xc4\x00")


def test_app_info_extension_is_written(sim: SimulatorProvider) -> None:
    from attest import compute_app_identity, parse_quote

    td = parse_quote(sim.get_quote(bytes(64))).td_report
    ident = compute_app_identity(sim.event_log(), td, ppid=None)
    att = read_ratls_certificate(create_ratls_certificate(_key(), sim, app_info=ident))
    assert att.app_info is not None and att.app_info["mr_aggregated"] == ident.mr_aggregated


@pytest.mark.parametrize(
    ("der", "message"),
    [
        (b"\x05\x00", "not a DER OCTET STRING"),
        (b"\x04\x05ab", "length 5 does not match 2"),
        (b"\x04\x81\x05abcde", "non-minimal DER length"),
    ],
)
def test_octet_string_errors(der: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        unwrap_octet_string(der)


def test_non_p256_keys_are_refused(sim: SimulatorProvider) -> None:
    with pytest.raises(RaTlsError, match="ECDSA P-256, got secp384r1"):
        create_ratls_certificate(ec.generate_private_key(ec.SECP384R1()), sim)


@given(st.binary(max_size=200))
def test_random_attestation_bytes_raise_only_codec_error(data: bytes) -> None:
    for blob in (data, b"\x00\x00" + data):
        with contextlib.suppress(CodecError):
            decode_attestation(blob)
    with contextlib.suppress(CodecError):
        decode_app_info(data)


def test_app_id_oid_is_dstacks() -> None:
    assert OID_APP_ID.dotted_string == "1.3.6.1.4.1.62397.1.3"


@settings(max_examples=50)
@given(st.data())
def test_corrupted_certificates_fail_cleanly(sim: SimulatorProvider, data: st.DataObject) -> None:
    der = _CERT_DER.setdefault("der", _der_cert(sim))
    bad = bytearray(der)
    i = data.draw(st.integers(0, len(der) - 1))
    bad[i] ^= data.draw(st.integers(1, 255))
    try:
        verify_ratls_certificate(bytes(bad), verify_quote=VERIFY)
    except AttestError:
        return
    # Accepted: then the evidence and the bound key are untouched (only signature/metadata bytes
    # of the certificate itself changed, which the TLS stack checks).
    att = read_ratls_certificate(bytes(bad))
    assert att.public_key_der == read_ratls_certificate(der).public_key_der
    assert att.quote == read_ratls_certificate(der).quote


_CERT_DER: dict[str, bytes] = {}


def _der_cert(sim: SimulatorProvider) -> bytes:
    cert = create_ratls_certificate(_key(), sim, app_id=APP_ID)
    return cert.public_bytes(serialization.Encoding.DER)
