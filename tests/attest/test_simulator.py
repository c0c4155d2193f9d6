"""Simulator quotes: parsed like real ones, verified only under SimulatorAllowed, tamper-evident."""

from __future__ import annotations

import logging
import time

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from attest import (
    AttestError,
    PolicyError,
    QuoteParseError,
    VerificationError,
    compute_app_identity,
    parse_quote,
    verify_replay,
)
from attest.policy import AllOf, NotDebugTd, default_policy
from attest.providers import (
    SimulatorAllowed,
    SimulatorConfig,
    SimulatorProvider,
    simulator_root_ca,
    verify_simulator_quote,
)
from tests.attest.test_evidence_data import quote_rtmrs

NOW = 1_800_000_000
ALLOW = AllOf([SimulatorAllowed(), *default_policy().checks])
APP_ID = bytes.fromhex("3763bc34552cf3a27ff71ad5f7a90471562a1a2d")
COMPOSE = bytes(range(32))


@pytest.fixture(scope="module")
def booted() -> tuple[SimulatorProvider, bytes]:
    config = SimulatorConfig(
        rtmr0=b"\x10" * 48, rtmr1=b"\x11" * 48, rtmr2=b"\x12" * 48, ppid=bytes(range(16))
    )
    sim = SimulatorProvider(config)
    for name, payload in [
        ("system-preparing", b""),
        ("app-id", APP_ID),
        ("compose-hash", COMPOSE),
        ("instance-id", b"\x05" * 20),
        ("boot-mr-done", b""),
        ("key-provider", b'{"name":"tkms","id":"00"}'),
        ("system-ready", b""),
    ]:
        sim.extend_rtmr(3, name, payload)
    return sim, sim.get_quote(b"\xab" * 64)


def test_round_trip(booted: tuple[SimulatorProvider, bytes]) -> None:
    sim, raw = booted
    verified = verify_simulator_quote(raw, now=NOW, policy=ALLOW)
    assert verified.tcb_source == "simulator" and verified.quote.header.version == 4
    td = verified.quote.td_report
    assert td.report_data == b"\xab" * 64 and td.rtmr0 == b"\x10" * 48
    assert quote_rtmrs(raw) == list(td.rtmrs)  # dcap-qvl reads the same fields
    verify_replay([], [td.rtmr0, td.rtmr1, td.rtmr2, bytes(48)], indices=())
    verify_replay(sim.event_log(), td.rtmrs, indices=(3,))
    ident = compute_app_identity(sim.event_log(), td, ppid=verified.ppid)
    assert ident.app_id == APP_ID and ident.compose_hash == COMPOSE
    assert ident.key_provider is not None and ident.key_provider.name == "tkms"
    assert verified.ppid == bytes(range(16))
    assert verified.checks[-1] == "policy:tcb-status"


def test_rejected_without_simulator_policy(booted: tuple[SimulatorProvider, bytes]) -> None:
    _, raw = booted
    with pytest.raises(PolicyError, match="policy does not allow simulators"):
        verify_simulator_quote(raw, now=NOW, policy=default_policy())


def test_simulator_allowed_warns_on_every_use(
    booted: tuple[SimulatorProvider, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    _, raw = booted
    with caplog.at_level(logging.WARNING, logger="attest.simulator"):
        verify_simulator_quote(raw, now=NOW, policy=ALLOW)
        verify_simulator_quote(raw, now=NOW, policy=SimulatorAllowed())
    assert sum("prove nothing" in r.message for r in caplog.records) == 2


def test_other_policy_checks_still_apply() -> None:
    debug = SimulatorProvider(SimulatorConfig(td_attributes=1 | (1 << 28)))
    raw = debug.get_quote(bytes(64))
    with pytest.raises(PolicyError, match="debug TD"):
        verify_simulator_quote(raw, now=NOW, policy=AllOf([SimulatorAllowed(), NotDebugTd()]))


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (28, "quote signature is invalid"),  # header user_data
        (184, "quote signature is invalid"),  # MRTD
        (568, "quote signature is invalid"),  # REPORTDATA
        (636, "quote signature is invalid"),  # signature r
        (700, "QE report_data is not SHA-256"),  # attestation key
        (834, "QE report signature is invalid"),  # QE report MRENCLAVE
        (1154, "QE report signature is invalid"),  # QE report signature
        (1220, "QE report_data is not SHA-256"),  # QE auth data
    ],
)
def test_flipped_bytes_are_rejected(
    booted: tuple[SimulatorProvider, bytes], offset: int, message: str
) -> None:
    _, raw = booted
    bad = bytearray(raw)
    bad[offset] ^= 0x01
    with pytest.raises(VerificationError, match=message):
        verify_simulator_quote(bytes(bad), now=NOW, policy=ALLOW)


def test_real_intel_chain_is_not_a_simulator_chain(attestation_data: object) -> None:
    from pathlib import Path

    assert isinstance(attestation_data, Path)
    raw = (attestation_data / "dcap-qvl" / "tdx_quote").read_bytes()
    with pytest.raises(VerificationError, match="PCK chain has 3 certificates, expected 2"):
        verify_simulator_quote(raw, now=NOW, policy=ALLOW)


def test_foreign_root_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A quote whose chain ends in another self-made root (same names) is refused."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from attest.providers import _simulator, _simulator_ca

    root, _ = simulator_root_ca()
    other = ec.generate_private_key(ec.SECP256R1())
    fake_root = (
        x509.CertificateBuilder()
        .subject_name(root.subject)
        .issuer_name(root.subject)
        .public_key(other.public_key())
        .serial_number(1)
        .not_valid_before(root.not_valid_before_utc)
        .not_valid_after(root.not_valid_after_utc)
        .sign(other, hashes.SHA256())
    )
    with monkeypatch.context() as m:
        for module in (_simulator, _simulator_ca):
            m.setattr(module, "simulator_root_ca", lambda: (fake_root, other))
        forged = SimulatorProvider().get_quote(bytes(64))
    assert fake_root.public_bytes(serialization.Encoding.PEM) in forged
    with pytest.raises(VerificationError, match="chain root is not the simulator root CA"):
        verify_simulator_quote(forged, now=NOW, policy=ALLOW)


def test_root_ca_is_deterministic() -> None:
    root, _ = simulator_root_ca()
    assert root.signature.hex() == simulator_root_ca.__wrapped__()[0].signature.hex()


def test_time_outside_validity(booted: tuple[SimulatorProvider, bytes]) -> None:
    _, raw = booted
    with pytest.raises(VerificationError, match="is not valid at 2100"):
        verify_simulator_quote(
            raw, now=int(time.mktime((2100, 6, 1, 0, 0, 0, 0, 0, 0))), policy=ALLOW
        )


def test_rtmr_index_other_than_3_is_refused() -> None:
    from attest.providers import ProviderError

    with pytest.raises(ProviderError, match="only extend RTMR3, not RTMR2"):
        SimulatorProvider().extend_rtmr(2, "x", b"")
    with pytest.raises(ProviderError, match="report_data must be 64 bytes, got 63"):
        SimulatorProvider().get_quote(bytes(63))


@settings(max_examples=40)
@given(st.data())
def test_any_flip_or_truncation_is_rejected(
    booted: tuple[SimulatorProvider, bytes], data: st.DataObject
) -> None:
    _, raw = booted
    bad = bytearray(raw)
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(raw) - 1))
        bad[i] ^= data.draw(st.integers(1, 255))
    else:
        del bad[data.draw(st.integers(0, len(raw) - 1)) :]
    try:
        verified = verify_simulator_quote(bytes(bad), now=NOW, policy=ALLOW)
    except AttestError:
        return
    # Only the unsigned PEM armour (whitespace) may change without detection: the
    # certificates it carries must be byte-identical to the original ones.
    from cryptography import x509

    def ders(pem: bytes) -> list[bytes]:
        certs = x509.load_pem_x509_certificates(pem)
        return [c.public_bytes(serialization.Encoding.DER) for c in certs]

    assert ders(verified.quote.signature.pck_chain_pem) == ders(
        parse_quote(raw).signature.pck_chain_pem
    )
    assert verified.quote.signed_region == parse_quote(raw).signed_region


def test_parse_error_is_documented_type(booted: tuple[SimulatorProvider, bytes]) -> None:
    _, raw = booted
    with pytest.raises(QuoteParseError):
        parse_quote(raw[:1000])


def test_providers_public_surface() -> None:
    import attest.providers as providers

    assert set(providers.__all__) == {
        "ConfigfsKernel",
        "ProviderError",
        "SIMULATED_SNP_MEASUREMENT",
        "SIMULATED_SNP_POLICY",
        "SimulatorAllowed",
        "SnpSimulator",
        "SimulatorConfig",
        "SimulatorProvider",
        "TdxProvider",
        "TeeProvider",
        "is_simulator_snp_chain",
        "policy_allows_simulator",
        "simulator_root_ca",
        "simulator_root_public_key_der",
        "verify_simulator_quote",
        "verify_simulator_snp_report",
    }
    assert all(getattr(providers, name) is not None for name in providers.__all__)
