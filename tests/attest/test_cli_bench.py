"""`python -m attest.bench` runs on the real data and prints `name: value unit` lines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_bench_prints_the_six_measurements(attestation_data: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "attest.bench"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    names = [line.split(":")[0] for line in lines]
    assert names[0] == "parse"
    assert names[1] == "full verification with collateral"
    assert names[2].startswith("event-log replay")
    assert names[3].startswith("RA-TLS certificate verification")
    assert names[4].startswith("SEV-SNP report verification")
    assert names[5].startswith("H100 GPU report verification")
    for line in [*lines[:3], *lines[4:6]]:
        assert re.fullmatch(r"[^:]+: \d+\.\d+ (µs|ms)", line), line
