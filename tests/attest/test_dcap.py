"""DCAP verification of every README section-1 set, with its `now`, driven by expected.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attest import (
    PolicyError,
    UnsupportedQuoteError,
    VerificationError,
    default_policy,
    load_collateral,
    parse_quote,
    read_pck_info,
    verify_quote,
)
from attest._quote_input import load_evidence
from attest._tcb import evaluate_tdx_tcb
from attest.policy import AllOf

# Which expected.json variant maps to which policy.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "allow_debug": {"allow_debug": True},
    "allow_out_of_date": {"accepted_tcb_statuses": ("UpToDate", "OutOfDate")},
    "allow_service_td_and_out_of_date": {
        "allow_service_td": True,
        "accepted_tcb_statuses": ("UpToDate", "OutOfDate"),
    },
}
# expected.json's short reasons -> the error type and message tkms gives.
REASONS = {
    "no matching TCB level": (VerificationError, r"^no matching TCB level"),
    "debug TD": (PolicyError, r"^debug TD \(TDATTRIBUTES 01000010"),
    "service TD (MR_SERVICETD non-zero)": (
        PolicyError,
        r"^service TD \(MR_SERVICETD non-zero: 383c87d3",
    ),
    "TCB status OutOfDate below the minimum UpToDate": (
        PolicyError,
        r"^TCB status OutOfDate below the minimum UpToDate \(advisories: INTEL-SA-00960",
    ),
}


def _cases() -> list[Any]:
    from tests.conftest import ATTESTATION_DATA

    doc = json.loads((ATTESTATION_DATA / "expected.json").read_text())
    return [
        pytest.param(entry, variant, entry[variant], id=f"{entry['id']}-{variant}")
        for entry in doc["sets"]
        for variant in VARIANTS
        if variant in entry
    ]


@pytest.mark.parametrize(("entry", "variant", "want"), _cases())
def test_section1_set(
    attestation_data: Path, entry: dict[str, Any], variant: str, want: dict[str, Any]
) -> None:
    quote = load_evidence(attestation_data / entry["quote"]).quote
    collateral = load_collateral(attestation_data / entry["collateral"])
    policy = default_policy(**VARIANTS[variant])
    if want["accepted"]:
        verified = verify_quote(quote, collateral, now=entry["now"], policy=policy)
        assert verified.tcb_status == want["tcb_status"]
        if "advisory_ids" in want:
            assert list(verified.advisory_ids) == want["advisory_ids"]
        assert verified.quote == parse_quote(quote)
        assert verified.ppid == read_pck_info(verified.quote).ppid
        assert verified.checks[:4] == ("parse", "pck-chain-root", "td-attributes", "dcap-qvl")
        assert verified.checks[4:] == tuple(f"policy:{n}" for n in policy.names)
    else:
        error, match = REASONS[want["reason"]]
        with pytest.raises(error, match=match):
            verify_quote(quote, collateral, now=entry["now"], policy=policy)


def test_set_i_follows_intels_rule_not_all_16_bytes(attestation_data: Path) -> None:
    """TEE_TCB_SVN 04 01 07..: the best level needs byte 0 = 5, skipped because byte 1 > 0."""
    quote = load_evidence(attestation_data / "go-tdx-guest/ccel/cos-113-tdx-quote.dat").quote
    collateral = load_collateral(
        attestation_data / "derived/automata_collateral_00806f050000_2025-07.json"
    )
    verified = verify_quote(quote, collateral, now=1752537600, policy=default_policy())
    assert verified.tcb_status == "UpToDate" and verified.advisory_ids == ()
    assert verified.quote.td_report.tee_tcb_svn[:3] == bytes([4, 1, 7])
    assert verified.tcb_source == "dcap-qvl"


@pytest.mark.parametrize("set_id", ["A", "B", "C", "D", "H", "I"])
def test_own_tcb_evaluation_agrees_with_dcap_qvl(attestation_data: Path, set_id: str) -> None:
    """The fallback TCB evaluation (used only past dcap-qvl's attribute verdicts) must give
    exactly dcap-qvl's status wherever dcap-qvl itself gives one."""
    doc = json.loads((attestation_data / "expected.json").read_text())
    entry = next(s for s in doc["sets"] if s["id"] == set_id)
    raw = load_evidence(attestation_data / entry["quote"]).quote
    collateral = load_collateral(attestation_data / entry["collateral"])
    lax = default_policy(accepted_tcb_statuses=("UpToDate", "OutOfDate"))
    verified = verify_quote(raw, collateral, now=entry["now"], policy=lax)
    quote = verified.quote
    pck = read_pck_info(quote)
    own = evaluate_tdx_tcb(
        collateral.tcb_info,
        collateral.qe_identity,
        cpu_svn=pck.cpu_svn,
        pce_svn=pck.pce_svn,
        tee_tcb_svn=quote.td_report.tee_tcb_svn,
        mr_signer_seam=quote.td_report.mr_signer_seam,
        seam_attributes=quote.td_report.seam_attributes,
        qe_isv_svn=quote.signature.qe_report.isv_svn,
    )
    assert (own.status, own.advisory_ids) == (verified.tcb_status, verified.advisory_ids)


def test_policy_relaxations_use_tkms_tcb_and_still_need_every_signature(
    attestation_data: Path,
) -> None:
    raw = (attestation_data / "trustee/tdx_quote_4.dat").read_bytes()
    collateral = load_collateral(
        attestation_data / "derived/go-tdx-guest_collateral_50806f000000_2023-06.json"
    )
    policy = default_policy(allow_debug=True)
    verified = verify_quote(raw, collateral, now=1688173200, policy=policy)
    assert verified.tcb_source == "tkms" and verified.quote.is_debug
    # a debug quote with a broken signature must not slip through the relaxed path
    tampered = raw[:568] + bytes([raw[568] ^ 1]) + raw[569:]
    with pytest.raises(VerificationError, match="quote signature invalid"):
        verify_quote(tampered, collateral, now=1688173200, policy=policy)
    with pytest.raises(VerificationError, match="collateral expired"):
        verify_quote(raw, collateral, now=1688173200 + 30 * 86400, policy=policy)


def test_sgx_set_l_is_refused(attestation_data: Path) -> None:
    raw = (attestation_data / "dcap-qvl/sgx_quote").read_bytes()
    collateral = load_collateral(attestation_data / "dcap-qvl/sgx_quote_collateral.json")
    with pytest.raises(UnsupportedQuoteError, match="SGX quotes are not accepted by tkms"):
        verify_quote(raw, collateral, now=1751328000, policy=default_policy())


def test_all_of_refuses_to_be_empty() -> None:
    with pytest.raises(ValueError, match="empty policy accepts anything"):
        AllOf([])
