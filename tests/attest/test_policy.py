"""Policy checks one by one, on real parsed quotes wrapped as verification results."""

from __future__ import annotations

from pathlib import Path

import pytest

from attest import (
    AllOf,
    NoServiceTd,
    NotDebugTd,
    PolicyError,
    SeptVeDisabled,
    TcbStatusIn,
    VerifiedQuote,
    default_policy,
    parse_quote,
)


def _verified(base: Path, name: str, status: str = "UpToDate") -> VerifiedQuote:
    quote = parse_quote((base / name).read_bytes())
    return VerifiedQuote(
        quote=quote,
        tcb_status=status,
        advisory_ids=("INTEL-SA-00001",) if status != "UpToDate" else (),
        ppid=bytes(16),
        fmspc="B0C06F000000",
        checks=(),
        tcb_source="dcap-qvl",
    )


GOOD = "dcap-qvl/tdx_quote"
DEBUG = "trustee/tdx_quote_4.dat"
SERVICE_TD = "automata/quotev5.dat"
NO_SEPT_VE = "go-tdx-guest/tdx_prod_quote_SPR_E4.dat"


def test_each_check_passes_a_clean_quote(attestation_data: Path) -> None:
    good = _verified(attestation_data, GOOD)
    for check in (NotDebugTd(), NoServiceTd(), SeptVeDisabled(), TcbStatusIn()):
        check.verify(good)
    default_policy().verify(good)


def test_not_debug_td(attestation_data: Path) -> None:
    with pytest.raises(PolicyError, match=r"^debug TD .*DEBUG = 1; expected 0") as e:
        NotDebugTd().verify(_verified(attestation_data, DEBUG))
    assert (e.value.check, e.value.found, e.value.expected) == (
        "not-debug-td",
        "DEBUG=1",
        "DEBUG=0",
    )


def test_no_service_td(attestation_data: Path) -> None:
    with pytest.raises(PolicyError, match=r"MR_SERVICETD non-zero: 383c87d3.*expected all zero"):
        NoServiceTd().verify(_verified(attestation_data, SERVICE_TD))
    NoServiceTd().verify(_verified(attestation_data, "go-tdx-guest/quote_v5_sample.dat"))


def test_sept_ve_disabled_required(attestation_data: Path) -> None:
    with pytest.raises(PolicyError, match=r"SEPT_VE_DISABLE not set \(TDATTRIBUTES 00000040"):
        SeptVeDisabled().verify(_verified(attestation_data, NO_SEPT_VE))


@pytest.mark.parametrize(
    ("accepted", "status", "match"),
    [
        (("UpToDate",), "OutOfDate", r"^TCB status OutOfDate below the minimum UpToDate "),
        (
            ("UpToDate", "SWHardeningNeeded"),
            "Revoked",
            r"TCB status Revoked below the minimum \(accepted: UpToDate, SWHardeningNeeded\)",
        ),
    ],
)
def test_tcb_status_in_rejects(
    attestation_data: Path, accepted: tuple[str, ...], status: str, match: str
) -> None:
    with pytest.raises(PolicyError, match=match) as e:
        TcbStatusIn(accepted).verify(_verified(attestation_data, GOOD, status))
    assert e.value.found == status


def test_tcb_status_in_accepts_listed(attestation_data: Path) -> None:
    TcbStatusIn(["UpToDate", "OutOfDate"]).verify(_verified(attestation_data, GOOD, "OutOfDate"))


def test_tcb_status_in_validates_its_configuration() -> None:
    with pytest.raises(ValueError, match="at least one accepted TCB status"):
        TcbStatusIn([])
    with pytest.raises(ValueError, match="unknown TCB status UpToDat "):
        TcbStatusIn(["UpToDat"])


def test_all_of_runs_in_order_and_stops_at_first_failure(attestation_data: Path) -> None:
    debug_and_outdated = _verified(attestation_data, DEBUG, "OutOfDate")
    with pytest.raises(PolicyError, match=r"^debug TD"):
        AllOf([NotDebugTd(), TcbStatusIn()]).verify(debug_and_outdated)
    with pytest.raises(PolicyError, match=r"^TCB status OutOfDate"):
        AllOf([TcbStatusIn(), NotDebugTd()]).verify(debug_and_outdated)
    with pytest.raises(ValueError, match="AllOf needs at least one check"):
        AllOf([])


def test_default_policy_switches(attestation_data: Path) -> None:
    assert default_policy().names == (
        "not-debug-td",
        "no-service-td",
        "sept-ve-disabled",
        "tcb-status",
    )
    assert default_policy(allow_debug=True, allow_service_td=True).names == (
        "sept-ve-disabled",
        "tcb-status",
    )
    default_policy(allow_debug=True).verify(_verified(attestation_data, DEBUG))
    with pytest.raises(PolicyError, match=r"^service TD"):
        default_policy(allow_debug=True).verify(_verified(attestation_data, SERVICE_TD))
