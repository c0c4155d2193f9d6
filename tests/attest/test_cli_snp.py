"""`tkms attest verify-snp` and `snp-platform-hash` on the vendored SEV-SNP data, in-process
(`attest.cli.main`, what `python -m attest.cli attest …` runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attest import snp_platform_hash
from attest.cli import main
from tests.attest.snp_data import NOW
from tests.conftest import ATTESTATION_DATA

D = ATTESTATION_DATA
DSTACK = D / "dstack/sev-snp"
CERTS = ["--ask", str(DSTACK / "sev_snp_ask.pem"), "--vcek", str(DSTACK / "sev_snp_vcek.pem")]


def verify_snp(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, dict[str, Any]]:
    code = main(["attest", "verify-snp", "--json", "--now", str(NOW), *map(str, args)])
    return code, json.loads(capsys.readouterr().out)


def test_the_dstack_attestation_with_its_certificates(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = verify_snp(capsys, DSTACK / "sev_snp_attestation.bin", *CERTS)
    assert code == 1 and "TCB status OutOfDate is not accepted" in report["reason"]
    assert report["identity"]["app_id"] == "86e59625be93207bc2351c4d1bba20037cec8e16"
    code, report = verify_snp(
        capsys, DSTACK / "sev_snp_attestation.bin", *CERTS, "--accept-tcb", "OutOfDate"
    )
    assert code == 0 and report["accepted"] and report["tcb_status"] == "OutOfDate"
    assert report["product"] == "Milan" and report["source"] == "amd"
    measurement = bytes.fromhex(report["measurement"])
    assert report["os_image_hash"] == snp_platform_hash(measurement, 0x30000).hex()
    assert report["identity"]["os_image_hash"] == report["os_image_hash"]


def test_a_hex_report_with_der_certificates(capsys: pytest.CaptureFixture[str]) -> None:
    chain: list[str | Path] = [
        "--ask",
        D / "virtee-sev/builtin/milan/ask.pem",
        "--vcek",
        D / "virtee-sev/vcek_milan.der",
    ]
    code, report = verify_snp(capsys, D / "virtee-sev/report_milan.hex", *chain)
    assert code == 0 and report["tcb_status"] == "UpToDate" and report["identity"] is None
    assert report["measurement"].startswith("7a1e5c266c0108db")


def test_rejections_and_unusable_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, report = verify_snp(capsys, D / "trustee/snp/test-report.bin")
    assert code == 1 and "no AMD certificates" in report["reason"]
    assert report["policy"] == "0x3001f"  # the fields are shown also when rejected
    code, report = verify_snp(
        capsys, D / "trustee/snp/test-report.bin", "--ask", DSTACK / "sev_snp_ask.pem"
    )
    assert code == 2 and "--ask and --vcek go together" in report["reason"]
    short = tmp_path / "short.bin"
    short.write_bytes(b"\x00\x03\x01")
    code, report = verify_snp(capsys, short)
    assert code == 2 and "truncated while reading report" in report["reason"]
    code, report = verify_snp(capsys, tmp_path / "missing.bin")
    assert code == 2 and "cannot read evidence" in report["reason"]


def test_snp_platform_hash(capsys: pytest.CaptureFixture[str]) -> None:
    m = "7a" * 48
    assert main(["attest", "snp-platform-hash", "--measurement", m, "--policy", "0x30000"]) == 0
    assert (
        capsys.readouterr().out.strip() == "0x" + snp_platform_hash(bytes.fromhex(m), 0x30000).hex()
    )
    assert main(["attest", "snp-platform-hash", "--measurement", "7a", "--policy", "0"]) == 2
    assert "MEASUREMENT must be 48 bytes" in capsys.readouterr().err
