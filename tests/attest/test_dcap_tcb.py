"""The fallback TCB evaluation (attest/_tcb.py) on edited copies of real TCB info documents.

Cross-checked against dcap-qvl on every real set in test_dcap.py; these cases pin the rules
the real data does not reach (convergence, module identity mismatches)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from attest import VerificationError, load_collateral
from attest._tcb import TcbResult, converge, evaluate_tdx_tcb, match_module_level

# Platform values at the best level of the 90C06F000000 TCB info (as sets C and D have)
CPU_SVN = bytes([3, 3, 2, 2, 4, 1, 0, 5] + [0] * 8)
TEE_TCB_SVN = bytes([6, 1, 3] + [0] * 13)


@pytest.fixture
def docs(attestation_data: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    c = load_collateral(attestation_data / "dcap-qvl/tdx_quote_outdated_collateral.json")
    return copy.deepcopy(dict(c.tcb_info)), copy.deepcopy(dict(c.qe_identity))


def _eval(tcb: dict[str, Any], qe: dict[str, Any], **overrides: Any) -> TcbResult:
    args: dict[str, Any] = {
        "cpu_svn": CPU_SVN,
        "pce_svn": 13,
        "tee_tcb_svn": TEE_TCB_SVN,
        "mr_signer_seam": bytes(48),
        "seam_attributes": bytes(8),
        "qe_isv_svn": 4,
    }
    args.update(overrides)
    return evaluate_tdx_tcb(tcb, qe, **args)


def test_up_to_date_platform_module_and_qe(docs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    assert _eval(*docs) == TcbResult("UpToDate", ())


def test_module_svn_below_best_level_is_out_of_date(
    docs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    result = _eval(*docs, tee_tcb_svn=bytes([5, 1, 3] + [0] * 13))
    assert result == TcbResult("OutOfDate", ("INTEL-SA-01036", "INTEL-SA-01099"))


def test_bytes_0_and_1_skipped_only_when_module_version_is_set(
    docs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    tcb, qe = docs
    # byte 0 = 0 is below the platform's tdx component 0 (5), but TEE_TCB_SVN[1] = 3 skips it;
    # the module identity TDX_03 then judges byte 0 (3 >= 3: UpToDate)
    assert _eval(tcb, qe, tee_tcb_svn=bytes([3, 3, 3] + [0] * 13)).status == "UpToDate"
    with pytest.raises(VerificationError, match="no matching TCB level"):
        _eval(tcb, qe, tee_tcb_svn=bytes([4, 0, 3] + [0] * 13))  # no module version: compared


def test_qe_out_of_date_converges(docs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    tcb, qe = docs
    qe["tcbLevels"].append(
        {"tcb": {"isvsvn": 2}, "tcbStatus": "OutOfDate", "advisoryIDs": ["INTEL-SA-00999"]}
    )
    assert _eval(tcb, qe, qe_isv_svn=3) == TcbResult("OutOfDate", ("INTEL-SA-00999",))
    with pytest.raises(VerificationError, match="QE ISVSVN 1 is below every QE identity"):
        _eval(tcb, qe, qe_isv_svn=1)


@pytest.mark.parametrize(
    ("platform", "other", "expected"),
    [
        ("UpToDate", "OutOfDate", "OutOfDate"),
        ("SWHardeningNeeded", "OutOfDate", "OutOfDate"),
        ("ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("OutOfDate", "UpToDate", "OutOfDate"),
        ("UpToDate", "Revoked", "Revoked"),
        ("ConfigurationNeeded", "UpToDate", "ConfigurationNeeded"),
    ],
)
def test_convergence(platform: str, other: str, expected: str) -> None:
    merged = converge(TcbResult(platform, ("A", "B")), TcbResult(other, ("B", "C")))
    assert merged == TcbResult(expected, ("A", "B", "C"))


def test_module_identity_must_match(docs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    tcb, _ = docs
    with pytest.raises(VerificationError, match="TDX module TDX_07 is not listed"):
        match_module_level(
            tcb,
            tee_tcb_svn=bytes([1, 7] + [0] * 14),
            mr_signer_seam=bytes(48),
            seam_attributes=bytes(8),
        )
    with pytest.raises(VerificationError, match="MRSIGNERSEAM 01"):
        match_module_level(
            tcb,
            tee_tcb_svn=TEE_TCB_SVN,
            mr_signer_seam=b"\x01" + bytes(47),
            seam_attributes=bytes(8),
        )
    with pytest.raises(VerificationError, match="SEAMATTRIBUTES 0100000000000000 do not match"):
        match_module_level(
            tcb,
            tee_tcb_svn=TEE_TCB_SVN,
            mr_signer_seam=bytes(48),
            seam_attributes=b"\x01" + bytes(7),
        )
    assert (
        match_module_level(
            tcb, tee_tcb_svn=bytes(16), mr_signer_seam=bytes(48), seam_attributes=bytes(8)
        )
        is None
    )


def test_malformed_documents_are_verification_errors(
    docs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    tcb, qe = docs
    del tcb["tcbLevels"][0]["tcb"]["pcesvn"]
    with pytest.raises(VerificationError, match="malformed TCB info or QE identity"):
        _eval(tcb, qe)
