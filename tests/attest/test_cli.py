"""End to end: `tkms attest verify` as a subprocess on the vendored real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ATTESTATION_DATA, REPO_ROOT

TKMS = REPO_ROOT / ".venv" / "bin" / "tkms"
REGISTERS = ("mrtd", "rtmr0", "rtmr1", "rtmr2")
KEYS = {
    "accepted",
    "tcb_status",
    "advisory_ids",
    "reason",
    "mrtd",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "report_data",
    "os_image_hash",
    "replayed",
    "identity",
}


def tkms(*args: str | Path, entry_point: bool = False) -> tuple[int, dict[str, Any]]:
    """Run `attest verify ... --json`; (exit status, parsed JSON).

    `entry_point=True` runs the installed `tkms` console script; otherwise the same command
    runs as `python -m attest.cli attest`, which skips the dispatcher's ~2 s of importing
    every package (web3 included) and keeps this file fast.
    """
    if entry_point:
        cmd = [str(TKMS), "attest", "verify", "--json"]
    else:
        cmd = [sys.executable, "-m", "attest.cli", "attest", "verify", "--json"]
    proc = subprocess.run(
        [*cmd, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO_ROOT,
    )
    report = json.loads(proc.stdout)
    assert report.keys() >= KEYS, proc.stdout
    return proc.returncode, report


def _set_cases() -> list[Any]:
    path = ATTESTATION_DATA / "expected.json"
    return [pytest.param(s, id=s["id"]) for s in json.loads(path.read_text())["sets"]]


@pytest.mark.parametrize("entry", _set_cases())
def test_every_set_with_default_policy(attestation_data: Path, entry: dict[str, Any]) -> None:
    want = entry["default"]
    code, report = tkms(
        attestation_data / entry["quote"],
        "--collateral",
        attestation_data / entry["collateral"],
        "--now",
        str(entry["now"]),
    )
    assert report["accepted"] is want["accepted"]
    assert code == (0 if want["accepted"] else 1)
    if want["accepted"]:
        assert report["tcb_status"] == want["tcb_status"]
        assert report["advisory_ids"] == want["advisory_ids"]
        assert report["reason"] is None
    else:
        assert report["reason"].startswith(want["reason"].split(" (")[0])
    if "replayed" in want:
        assert report["replayed"] is want["replayed"]
        assert report["identity"]["app_id"] == want["identity"]["app_id"]
    else:
        assert report["replayed"] is None and report["identity"] is None


def test_set_c_measurements_and_identity(attestation_data: Path) -> None:
    code, report = tkms(
        attestation_data / "dstack/quote-report.json",
        "--collateral",
        attestation_data / "dcap-qvl/tdx_quote_outdated_collateral.json",
        "--now",
        "1772323200",
        entry_point=True,
    )
    assert code == 0
    assert report["mrtd"].startswith("b24d3b24e9e3c160")
    assert report["rtmr3"].startswith("0f787c3877f3e950")
    assert report["report_data"] == "1234" + "00" * 62
    identity = report["identity"]
    assert identity["compose_hash"].startswith("3763bc34") and len(identity["compose_hash"]) == 64
    assert identity["instance_id"].startswith("c3714eb6")
    assert identity["key_provider"]["name"] == "local-sgx"
    assert identity["claimed_os_image_hash"].startswith("14ad42d0")
    # what governance allows: recomputed from MRTD and RTMR0-2, not the VM config's claim
    assert report["os_image_hash"] == identity["os_image_hash"] != identity["claimed_os_image_hash"]
    # and what an operator approving the platform computes from its registers
    regs = [f"--{name}={report[name]}" for name in REGISTERS]
    cmd = [sys.executable, "-m", "attest.cli", "attest", "os-image-hash"]
    proc = subprocess.run([*cmd, *regs], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0x" + report["os_image_hash"]
    bad = subprocess.run(
        [*cmd, *regs[:3], "--rtmr2=00"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and "--rtmr2: must be 48 bytes, got 1" in bad.stderr


def test_tampered_event_log_is_rejected(attestation_data: Path, tmp_path: Path) -> None:
    doc = json.loads((attestation_data / "dstack/quote-report.json").read_text())
    events = json.loads(doc["event_log"])
    compose = next(e for e in events if e.get("event") == "compose-hash")
    compose["event_payload"] = (
        f"{int(compose['event_payload'][:2], 16) ^ 1:02x}" + compose["event_payload"][2:]
    )
    log = tmp_path / "log.json"
    log.write_text(json.dumps(events))
    code, report = tkms(
        attestation_data / "dstack/quote-report.json",
        "--event-log",
        log,
        "--collateral",
        attestation_data / "dcap-qvl/tdx_quote_outdated_collateral.json",
        "--now",
        "1772323200",
    )
    assert (code, report["accepted"], report["replayed"]) == (1, False, False)
    assert report["tcb_status"] == "UpToDate"  # the quote itself is fine
    assert report["reason"] is not None and "RTMR3" in report["reason"]
    assert report["identity"] is None


def test_binary_ccel_event_log_replays(attestation_data: Path) -> None:
    code, report = tkms(
        attestation_data / "go-tdx-guest/ccel/cos-113-tdx-quote.dat",
        "--event-log",
        attestation_data / "go-tdx-guest/ccel/ccel_data.dat",
        "--collateral",
        attestation_data / "derived/automata_collateral_00806f050000_2025-07.json",
        "--now",
        "1752537600",
    )
    assert (code, report["replayed"], report["identity"]) == (0, True, None)
    assert report["rtmr0"].startswith("3fa2f61f395b7f5f")


@pytest.mark.parametrize(
    ("quote", "collateral", "now", "flags", "status"),
    [
        ("trustee/tdx_quote_4.dat", "derived/go-tdx-guest_collateral_50806f000000_2023-06.json",
         1688173200, ["--allow-debug"], "UpToDate"),
        ("automata/solana-tests-data/quote_tdx.bin",
         "derived/automata_collateral_00806f050000_2025-07.json", 1752537600,
         ["--accept-tcb", "UpToDate", "--accept-tcb", "OutOfDate"], "OutOfDate"),
        ("automata/quotev5.dat", "dcap-qvl/tdx_quote_outdated_collateral.json", 1772323200,
         ["--allow-service-td", "--accept-tcb", "UpToDate", "--accept-tcb", "OutOfDate"],
         "OutOfDate"),
    ],
)  # fmt: skip
def test_policy_flags(
    attestation_data: Path, quote: str, collateral: str, now: int, flags: list[str], status: str
) -> None:
    code, report = tkms(
        attestation_data / quote,
        "--collateral",
        attestation_data / collateral,
        "--now",
        str(now),
        *flags,
    )
    assert (code, report["accepted"], report["tcb_status"]) == (0, True, status)


def test_rejections_and_unusable_input(attestation_data: Path, tmp_path: Path) -> None:
    collateral = attestation_data / "dcap-qvl/tdx_quote_collateral.json"
    quote = attestation_data / "dcap-qvl/tdx_quote"
    code, report = tkms(quote, "--collateral", collateral, "--now", "1752969600")
    assert code == 1 and report["reason"].startswith("collateral expired")
    code, report = tkms(
        attestation_data / "dcap-qvl/sgx_quote",
        "--collateral",
        attestation_data / "dcap-qvl/sgx_quote_collateral.json",
        "--now",
        "1751328000",
    )
    assert code == 1 and "SGX quotes are not accepted by tkms" in report["reason"]
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(quote.read_bytes()[:1000])
    code, report = tkms(truncated, "--collateral", collateral, "--now", "1751328000")
    assert code == 2 and "quote truncated at offset 1000" in report["reason"]
    code, report = tkms(tmp_path / "missing", "--collateral", collateral)
    assert code == 2 and report["reason"].startswith("cannot read quote file")
    code, report = tkms(quote, "--now", "1751328000")
    assert code == 2 and report["reason"] == (
        "no collateral: pass --collateral FILE, --pccs-url URL or --collateral-cache DIR"
    )
    code, report = tkms(quote, "--collateral-cache", tmp_path, "--now", "1751328000")
    assert code == 2 and report["reason"].startswith("no collateral file B0C06F000000-platform")
    (tmp_path / "B0C06F000000-platform.json").write_text(collateral.read_text())
    code, report = tkms(quote, "--collateral-cache", tmp_path, "--now", "1751328000")
    assert (code, report["tcb_status"]) == (0, "UpToDate")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code, report = tkms(quote, "--collateral", bad, "--now", "1751328000")
    assert code == 2 and "missing field(s)" in report["reason"]
    bad_log = tmp_path / "log.json"
    bad_log.write_text('[{"imr": 9}]')
    code, report = tkms(quote, "--collateral", collateral, "--event-log", bad_log)
    assert code == 2 and report["accepted"] is False


def test_text_output(attestation_data: Path) -> None:
    proc = subprocess.run(
        [
            str(TKMS),
            "attest",
            "verify",
            str(attestation_data / "dcap-qvl/near-gas-test/quote_hex.txt"),
            "--collateral",
            str(attestation_data / "dcap-qvl/near-gas-test/quote_collateral.json"),
            "--now",
            "1757894400",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "OK: accepted, TCB UpToDate"
    mrtd = (
        "f06dfda6dce1cf904d4e2bab1dc370634cf95cefa2ceb2de2eee127c93826980"
        "90d7a4a13e14c536ec6c9c3c8fa87077"
    )
    assert f"  mrtd: {mrtd}" in lines
    assert any(line.startswith("  os_image_hash: ") for line in lines)


def test_simulator_quotes_need_allow_simulator(tmp_path: Path) -> None:
    from attest import event_log_to_json
    from attest.providers import SimulatorProvider

    provider = SimulatorProvider()
    provider.extend_rtmr(3, "system-preparing", b"")
    quote = provider.get_quote(bytes(range(64)))
    evidence = tmp_path / "sim.json"
    evidence.write_text(
        json.dumps({"quote": quote.hex(), "event_log": event_log_to_json(provider.event_log())})
    )
    code, report = tkms(evidence)
    assert code == 1 and report["reason"].startswith("simulator quote")
    assert report["replayed"] is True
    code, report = tkms(evidence, "--allow-simulator")
    assert (code, report["accepted"], report["tcb_status"]) == (0, True, "UpToDate")
    assert report["report_data"] == bytes(range(64)).hex()
