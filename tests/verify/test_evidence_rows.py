"""Evidence as rows: a real dstack quote through DCAP (set C of the vendored data), simulator
quotes only while governance allows them, and the gateway's challenge answer judged purely on
what it binds (a replayed answer, an answer for another key, a tampered answer)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attest import (
    BindingLabel,
    compute_report_data,
    event_log_to_json,
    load_collateral,
    zt_challenge_content,
)
from attest.providers import SimulatorProvider
from guest.measure import measure_app_boot
from verify.gateway_checks import FRESH, challenge_checks
from verify.quotes import TrustPolicy, check_evidence
from verify.report import FAIL, PASS, WARN

DATA = Path(__file__).resolve().parents[1] / "data" / "attestation"
SET_C_NOW = 1772323200  # tests/data/attestation/README.md, set C
ACCOUNT = "https://acme.example/acme/acct/9"
SIM = "governance 0xG on chain 31337 (a dev chain) allows simulated TEEs"


def set_c() -> tuple[bytes, str]:
    report = json.loads((DATA / "dstack" / "quote-report.json").read_text())
    return bytes.fromhex(report["quote"]), report["event_log"]


def collateral_c() -> object:
    return load_collateral(DATA / "dcap-qvl" / "tdx_quote_outdated_collateral.json")


def status(rows: list, name: str) -> str:  # type: ignore[type-arg]
    [row] = [r for r in rows if r.name == name]
    return str(row.status)


def test_a_real_quote_is_verified_with_dcap_and_its_identity_replayed() -> None:
    quote, log = set_c()
    trust = TrustPolicy(now=SET_C_NOW, collateral=collateral_c())  # type: ignore[arg-type]
    attested = check_evidence(
        "app",
        quote,
        log,
        trust,
        binding=(BindingLabel.DSTACK_APP_DATA, b"x", "something else"),
    )
    rows = {r.name: r for r in attested.checks}
    assert rows["app: quote (DCAP, TCB)"].status == PASS
    assert "DCAP verified, TCB UpToDate" in rows["app: quote (DCAP, TCB)"].detail
    assert rows["app: RTMR replay"].status == PASS
    assert attested.identity is not None
    assert attested.identity.app_id.hex() == "3763bc34552cf3a27ff71ad5f7a90471562a1a2d"
    # report_data is "1234" and zeros: it binds nothing the verifier asked for.
    binding = rows["app: report_data binds something else"]
    assert binding.status == FAIL and "made for something else" in binding.detail


def test_a_real_quote_past_its_collateral_or_without_any_no_longer_verifies() -> None:
    quote, log = set_c()
    later = TrustPolicy(now=SET_C_NOW + 400 * 86400, collateral=collateral_c())  # type: ignore[arg-type]
    row = check_evidence("node", quote, log, later, binding=None).checks[0]
    assert row.status == FAIL and row.detail.startswith("rejected:")
    none = check_evidence("node", quote, log, TrustPolicy(now=SET_C_NOW), binding=None).checks[0]
    assert none.status == FAIL and "no collateral" in none.detail


def simulator_app(report_data: bytes) -> tuple[bytes, str]:
    provider = SimulatorProvider()
    measure_app_boot(
        provider,
        app_id=b"\x42" * 20,
        compose=b"{}",
        instance_id=b"\x01" * 20,
        kms_id="ab" * 32,
        os_image=b"\x00" * 32,
    )
    return provider.get_quote(report_data), event_log_to_json(provider.event_log())


def test_simulator_quotes_are_a_warning_only_where_governance_allows_them() -> None:
    quote, log = simulator_app(bytes(64))
    allowed = TrustPolicy(now=int(time.time()), simulator_allowed=True, simulator_note=SIM)
    row = check_evidence("gw", quote, log, allowed, binding=None).checks[0]
    assert row.status == WARN and "SIMULATOR quote, not a hardware TEE" in row.detail
    assert SIM in row.detail
    refused = TrustPolicy(
        now=allowed.now, simulator_note="governance G does not allow simulated TEEs"
    )
    row = check_evidence("gw", quote, log, refused, binding=None).checks[0]
    assert row.status == FAIL and "does not allow simulated TEEs" in row.detail


def _spki() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def answer_for(nonce: bytes, spki: bytes, account: str = ACCOUNT) -> dict[str, str]:
    """What a gateway answers a challenge with (its quote from a simulated TEE)."""
    content = zt_challenge_content(nonce, spki, account)
    quote, log = simulator_app(compute_report_data(BindingLabel.ZT_CHALLENGE_V1, content))
    reply = {"quote": quote.hex(), "event_log": log, "vm_config": ""}
    return {
        "nonce": nonce.hex(),
        "public_key": spki.hex(),
        "account_uri": account,
        "quote": json.dumps(reply),
    }


@pytest.fixture
def trust() -> TrustPolicy:
    return TrustPolicy(now=int(time.time()), simulator_allowed=True, simulator_note=SIM)


def test_a_fresh_answer_for_our_nonce_and_the_served_key_passes(trust: TrustPolicy) -> None:
    nonce, spki = os.urandom(32), _spki()
    rows, attested = challenge_checks(answer_for(nonce, spki), nonce, spki, trust)
    assert status(rows, FRESH) == PASS
    assert attested is not None and attested.identity is not None


def test_a_replayed_answer_fails_as_a_stale_nonce(trust: TrustPolicy) -> None:
    old, ours, spki = os.urandom(32), os.urandom(32), _spki()
    rows, _ = challenge_checks(answer_for(old, spki), ours, spki, trust)
    [row] = [r for r in rows if r.name == FRESH]
    assert row.status == FAIL
    assert "stale nonce" in row.detail and "replayed" in row.detail


def test_a_certificate_whose_key_is_not_quoted_fails(trust: TrustPolicy) -> None:
    nonce, quoted, served = os.urandom(32), _spki(), _spki()
    rows, _ = challenge_checks(answer_for(nonce, quoted), nonce, served, trust)
    [row] = [r for r in rows if r.name == FRESH]
    assert row.status == FAIL and "not the quoted key" in row.detail
    # Claiming the served key without a quote for it does not help.
    forged = answer_for(nonce, quoted) | {"public_key": served.hex()}
    rows, _ = challenge_checks(forged, nonce, served, trust)
    [row] = [r for r in rows if r.name == FRESH]
    assert row.status == FAIL and "binds something else" in row.detail


def test_an_answer_naming_another_account_than_its_quote_fails(trust: TrustPolicy) -> None:
    nonce, spki = os.urandom(32), _spki()
    claimed = answer_for(nonce, spki) | {"account_uri": "https://acme.example/acme/acct/666"}
    rows, _ = challenge_checks(claimed, nonce, spki, trust)
    assert status(rows, FRESH) == FAIL


def test_a_malformed_answer_is_a_failed_row(trust: TrustPolicy) -> None:
    rows, attested = challenge_checks({"nonce": "00"}, os.urandom(32), _spki(), trust)
    assert attested is None and rows[0].status == FAIL and "malformed" in rows[0].detail
