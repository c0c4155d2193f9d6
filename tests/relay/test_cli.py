"""`tkms relay` and `python -m relay`: bad arguments are refused with what is wrong, before
anything starts; the gossip process exits when the core side goes away."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import tkms
from relay.cli import DEFAULT_PYTHON

ROOT = Path(__file__).parents[2]
GOOD = "ab" * 32


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fingerprint", "zz"], "--fingerprint must be 32 bytes of hex"),
        (["--fingerprint", "ab" * 31], "--fingerprint must be 32 bytes of hex"),
        (["--fingerprint", GOOD, "--rpc", "http://127.0.0.1:1"], "--rpc and --governance go"),
        (["--fingerprint", GOOD, "--relay-python", "/nonexistent/python"], "run `make install`"),
    ],
)
def test_bad_arguments_are_named(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tkms.main(["relay", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(not DEFAULT_PYTHON.exists(), reason="no .venv-relay (run `make install`)")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fingerprint", "zz"], "--fingerprint must be 32 bytes of hex"),
        (["--fingerprint", GOOD, "--http", "nowhere"], "--http must be HOST:PORT"),
    ],
)
def test_the_gossip_process_names_bad_arguments(argv: list[str], message: str) -> None:
    out = subprocess.run(
        [str(DEFAULT_PYTHON), "-m", "relay", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert out.returncode == 1 and message in out.stderr


@pytest.mark.skipif(not DEFAULT_PYTHON.exists(), reason="no .venv-relay (run `make install`)")
def test_tkms_relay_runs_the_gossip_process_and_stops_with_its_input() -> None:
    """Without --rpc the relay only forwards; closing stdin (the core side gone) ends it."""
    process = subprocess.Popen(
        [str(DEFAULT_PYTHON), "-m", "relay", "--fingerprint", GOOD],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert process.stdout is not None and process.stdin is not None
    first = process.stdout.readline().decode()
    assert '"event": "listening"' in first and "/p2p/" in first
    process.stdin.write(b"hello\n")
    process.stdin.close()
    rest = process.stdout.read().decode()
    assert process.wait(timeout=20) == 0
    assert '"event": "bad_input"' in rest
