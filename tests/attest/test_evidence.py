"""The combined evidence pipeline (quote -> replay -> identity -> binding), real and simulated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest import BindingLabel, compute_report_data, load_collateral
from attest._evidence import EvidenceError, make_quote_verifier, verify_evidence
from attest.policy import AllOf, default_policy
from attest.providers import SimulatorAllowed, SimulatorProvider

NOW = 1_800_000_000
SET_C_NOW = 1772323200
SIM_POLICY = AllOf([SimulatorAllowed(), *default_policy().checks])


def _spki() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _simulated(spki: bytes) -> tuple[SimulatorProvider, bytes]:
    sim = SimulatorProvider()
    sim.extend_rtmr(3, "app-id", b"\x07" * 20)
    sim.extend_rtmr(3, "compose-hash", b"\x08" * 32)
    sim.extend_rtmr(3, "system-ready", b"")
    return sim, sim.get_quote(compute_report_data(BindingLabel.RATLS_CERT, spki))


def test_simulated_evidence_verifies_under_simulator_policy() -> None:
    spki = _spki()
    sim, quote = _simulated(spki)
    ev = verify_evidence(
        quote,
        sim.event_log(),
        verify_quote=make_quote_verifier(now=NOW, policy=SIM_POLICY),
        binding=(BindingLabel.RATLS_CERT, spki),
    )
    assert ev.simulated and ev.replayed_rtmrs == (3,) and ev.binding is BindingLabel.RATLS_CERT
    assert ev.identity is not None and ev.identity.app_id == b"\x07" * 20
    assert ev.quote.td_report.rtmr3 == sim.rtmr3


def test_simulated_evidence_refused_by_hardware_policy() -> None:
    spki = _spki()
    sim, quote = _simulated(spki)
    with pytest.raises(EvidenceError, match=r"step 1 \(quote verification\).*not allow simulators"):
        verify_evidence(
            quote,
            sim.event_log(),
            verify_quote=make_quote_verifier(now=NOW, policy=default_policy()),
            binding=(BindingLabel.RATLS_CERT, spki),
        )


def test_each_step_is_named() -> None:
    spki = _spki()
    sim, quote = _simulated(spki)
    verifier = make_quote_verifier(now=NOW, policy=SIM_POLICY)
    log = list(sim.event_log())
    with pytest.raises(EvidenceError, match=r"step 2 \(event log replay\).*RTMR3 mismatch") as e:
        verify_evidence(quote, log[:-1], verify_quote=verifier, binding=None)
    assert e.value.step == "replay"
    with pytest.raises(EvidenceError, match=r"step 3 \(app identity\).*no dstack runtime events"):
        empty = SimulatorProvider()
        verify_evidence(empty.get_quote(bytes(64)), [], verify_quote=verifier, binding=None)
    with pytest.raises(EvidenceError, match=r"step 4 \(report_data binding\).*'ratls-cert:'"):
        verify_evidence(
            quote, log, verify_quote=verifier, binding=(BindingLabel.RATLS_CERT, _spki())
        )
    with pytest.raises(EvidenceError, match=r"step 4 .*under 'tkms-kdf:v1:'"):
        verify_evidence(
            quote, log, verify_quote=verifier, binding=(BindingLabel.KDF_V1, b"\xa0" + bytes(47))
        )


def test_dstack_set_c_end_to_end(attestation_data: Path) -> None:
    doc = json.loads((attestation_data / "dstack" / "quote-report.json").read_text())
    collateral = load_collateral(
        attestation_data / "dcap-qvl" / "tdx_quote_outdated_collateral.json"
    )
    verifier = make_quote_verifier(now=SET_C_NOW, policy=default_policy(), collateral=collateral)
    ev = verify_evidence(
        bytes.fromhex(doc["quote"]),
        doc["event_log"],
        verify_quote=verifier,
        binding=None,
        vm_config=doc["vm_config"],
    )
    assert ev.verified_quote.tcb_status == "UpToDate" and not ev.simulated
    assert ev.replayed_rtmrs == (0, 1, 2, 3) and ev.replayed.counts == (13, 5, 2, 8)
    assert ev.identity is not None
    assert ev.identity.app_id.hex() == "3763bc34552cf3a27ff71ad5f7a90471562a1a2d"
    assert ev.identity.claimed_os_image_hash.hex().startswith("14ad42d0")
    with pytest.raises(EvidenceError, match=r"step 4 .*does not bind this key"):
        verify_evidence(
            bytes.fromhex(doc["quote"]),
            doc["event_log"],
            verify_quote=verifier,
            binding=(BindingLabel.RATLS_CERT, _spki()),
        )


def test_hardware_quote_without_collateral(attestation_data: Path) -> None:
    doc = json.loads((attestation_data / "dstack" / "quote-report.json").read_text())
    verifier = make_quote_verifier(now=SET_C_NOW, policy=default_policy())
    with pytest.raises(EvidenceError, match=r"step 1 .*no collateral was supplied"):
        verify_evidence(
            bytes.fromhex(doc["quote"]), doc["event_log"], verify_quote=verifier, binding=None
        )


def test_wrong_time_fails_at_quote_step(attestation_data: Path) -> None:
    doc = json.loads((attestation_data / "dstack" / "quote-report.json").read_text())
    collateral = load_collateral(
        attestation_data / "dcap-qvl" / "tdx_quote_outdated_collateral.json"
    )
    verifier = make_quote_verifier(
        now=SET_C_NOW + 90 * 86400, policy=default_policy(), collateral=collateral
    )
    with pytest.raises(EvidenceError, match=r"step 1 \(quote verification\)") as e:
        verify_evidence(
            bytes.fromhex(doc["quote"]), doc["event_log"], verify_quote=verifier, binding=None
        )
    assert e.value.step == "quote"
