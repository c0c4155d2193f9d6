"""Run the official dstack Python SDK's own test suite against a live guest agent.

`make sdk-suite` (which `make test` runs) puts the suite (tests/ of the `dstack-sdk` 0.5.4
source distribution, unchanged) and a venv with the SDK and its test tools into
`build/sdk-suite/` (tests/sdk/). The suite runs
in its real-deployment mode, as an app in a CVM sees the agent: no `DSTACK_SIMULATOR_ENDPOINT`,
the SDK finds `/var/run/dstack.sock` and `/var/run/tappd.sock` itself. So that nothing on the
machine changes, it runs in a private mount namespace (`unshare`, root only) where the agent's
socket directory is bind-mounted over `/run`. (The suite's simulator mode expects dstack's
simulator, which cannot extend RTMR3 and so refuses EmitEvent with 400; a tkms agent extends
it, simulated TD or not.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT

SUITE = REPO_ROOT / "build" / "sdk-suite"
SUITE_TESTS = SUITE / "dstack_sdk-0.5.4"
SUITE_PYTHON = SUITE / "venv" / "bin" / "python"


@dataclass(frozen=True)
class SuiteResult:
    passed: int
    failed: int
    errors: int
    skipped: int
    failures: list[str]
    output: str

    def summary(self) -> str:
        return (
            f"dstack-sdk 0.5.4 suite: {self.passed} passed, {self.failed} failed, "
            f"{self.errors} errors, {self.skipped} skipped"
        )


def missing() -> str | None:
    """Why the suite cannot run here, or None."""
    if not (SUITE / ".installed").exists():
        return f"the SDK suite is not installed in {SUITE}: run `make sdk-suite` (`make test` does)"
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "the SDK suite needs root and unshare(1) for its private mount namespace"
    return None


def run_suite(socket_dir: Path, junit: Path, timeout: float = 600) -> SuiteResult:
    """The suite against the agent whose dstack.sock and tappd.sock are in `socket_dir`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DSTACK_SIMULATOR_ENDPOINT", "TAPPD_SIMULATOR_ENDPOINT")
        and not k.startswith("PYTEST")
    }
    pytest_args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    # In the namespace: the agent's directory over /run (so /var/run/dstack.sock is the
    # agent's), then the suite; $0 is the directory, "$@" the command.
    in_namespace = 'mount --bind "$0" /run && exec "$@"'
    unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", in_namespace]
    done = subprocess.run(
        [*unshare, str(socket_dir), str(SUITE_PYTHON), *pytest_args, "tests"],
        cwd=SUITE_TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    if not junit.exists():
        raise RuntimeError(f"the SDK suite did not run (exit {done.returncode}):\n{output}")
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite") if root.tag == "testsuites" else root
    assert suite is not None, f"no testsuite in {junit}"
    total, failed, errors, skipped = (
        int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")
    )
    failures = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return SuiteResult(total - failed - errors - skipped, failed, errors, skipped, failures, output)
