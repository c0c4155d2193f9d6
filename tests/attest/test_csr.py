"""dstack's certificate signing requests (attest._csr): the SCALE layout of ra-tls's
`CertSigningRequestV1/V2`, written out byte by byte here, and the checks dstack's KMS makes
(signature by the request's own key, the confirm word) with strict decoding."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from attest import BindingLabel, CsrError, compute_report_data, decode_csr, encode_csr
from attest import sign_csr_bytes as sign
from attest._ratls import decode_attestation, encode_attestation
from attest.providers import SimulatorProvider

CONFIRM = "please sign cert:"


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _compact(n: int) -> bytes:
    assert n < 1 << 14
    return bytes([n << 2]) if n < 64 else ((n << 2) | 1).to_bytes(2, "little")


def _vec(data: bytes) -> bytes:
    return _compact(len(data)) + data


def _hand_v1(pubkey: bytes, quote: bytes, log_json: bytes) -> bytes:
    """CertSigningRequestV1 { confirm, pubkey, CertConfig { org_name: Some("Org"),
    subject: "app", subject_alt_names: ["a.example", "b.example"], server: true, client: false,
    ext_quote: true }, quote, event_log }, field after field as parity-scale-codec writes it."""
    return b"".join(
        [
            _vec(CONFIRM.encode()),
            _vec(pubkey),
            b"\x01" + _vec(b"Org"),
            _vec(b"app"),
            _compact(2) + _vec(b"a.example") + _vec(b"b.example"),
            b"\x01\x00\x01",
            _vec(quote),
            _vec(log_json),
        ]
    )


def test_a_v1_request_written_byte_by_byte_decodes_and_encodes_back() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = _hand_v1(_spki(key), b"\x04" * 70, b"[]")
    request = decode_csr(data, sign(data, key), 1)
    assert request.pubkey == _spki(key) and request.quote == b"\x04" * 70
    config = request.config
    assert (config.org_name, config.subject) == ("Org", "app")
    assert config.subject_alt_names == ("a.example", "b.example")
    assert (config.usage_server_auth, config.usage_client_auth, config.ext_quote) == (
        True,
        False,
        True,
    )
    assert encode_csr(request) == data


def _v2(key: ec.EllipticCurvePrivateKey, **config: object) -> bytes:
    """A V2 request with a simulator attestation bound to `key` (`ratls-cert:`)."""
    from attest import CertConfig, CertSigningRequest

    provider = SimulatorProvider()
    provider.extend_rtmr(3, "app-id", b"\x11" * 20)
    report_data = compute_report_data(BindingLabel.RATLS_CERT, _spki(key))
    quote, log = provider.get_quote(report_data), provider.event_log()
    att = decode_attestation(encode_attestation(quote, log, report_data, '{"a": 1}'))
    request = CertSigningRequest(
        version=2,
        confirm=CONFIRM,
        pubkey=_spki(key),
        config=CertConfig(subject="app", **config),  # type: ignore[arg-type]
        quote=quote,
        event_log=log,
    )
    return encode_csr(request, att)


@settings(max_examples=20, deadline=None)
@given(
    names=st.lists(st.text(min_size=1, max_size=20), max_size=4),
    not_before=st.none() | st.integers(0, 2**64 - 1),
    not_after=st.none() | st.integers(0, 2**64 - 1),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)
def test_v2_requests_round_trip(
    names: list[str],
    not_before: int | None,
    not_after: int | None,
    flags: tuple[bool, bool, bool, bool],
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = _v2(
        key,
        subject_alt_names=tuple(names),
        not_before=not_before,
        not_after=not_after,
        usage_server_auth=flags[0],
        usage_client_auth=flags[1],
        ext_quote=flags[2],
        ext_app_info=flags[3],
    )
    request = decode_csr(data, sign(data, key), 2)
    assert request.config.subject_alt_names == tuple(names)
    assert (request.config.not_before, request.config.not_after) == (not_before, not_after)
    assert request.config.ext_app_info is flags[3]
    assert request.vm_config == '{"a": 1}'
    assert json.loads(request.event_log_json())[0]["event"] == "app-id"


def test_a_signature_by_another_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = _v2(key)
    with pytest.raises(CsrError, match="signature: not the request key's"):
        decode_csr(data, sign(data, ec.generate_private_key(ec.SECP256R1())), 2)
    with pytest.raises(CsrError, match="signature"):
        decode_csr(data, b"\x30\x00", 2)


def test_a_wrong_confirm_word_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = _hand_v1(_spki(key), b"q", b"[]").replace(b"please sign cert:", b"please sign cert!")
    with pytest.raises(CsrError, match="confirm word 'please sign cert!'"):
        decode_csr(data, sign(data, key), 1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d + b"\x00", "1 trailing bytes"),
        (lambda d: d[:-1], "does not decode as CertSigningRequestV1"),
        (lambda d: d.replace(b"\x01\x00\x01", b"\x02\x00\x01"), "boolean byte 2 is not 0 or 1"),
    ],
)
def test_malformed_scale_is_refused_saying_where(mutate: object, message: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = mutate(_hand_v1(_spki(key), b"q", b"[]"))  # type: ignore[operator]
    with pytest.raises(CsrError, match=message):
        decode_csr(data, sign(data, key), 1)


def test_versions_and_keys_dstack_does_not_sign_are_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = _hand_v1(_spki(key), b"q", b"[]")
    with pytest.raises(CsrError, match="unsupported API version 3"):
        decode_csr(data, sign(data, key), 3)
    k1 = ec.generate_private_key(ec.SECP256K1())
    data = _hand_v1(_spki(k1), b"q", b"[]")
    with pytest.raises(CsrError, match="not an ECDSA P-256 key"):
        decode_csr(data, sign(data, k1), 1)
