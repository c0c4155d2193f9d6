"""`tkms chain ...` and `tkms app ...` end to end: real processes against a real anvil."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

import tkms
from contracts import (
    Anvil,
    GovernanceClient,
    InvalidInput,
    Transactor,
    anvil_account,
    deploy,
    free_port,
)
from contracts._anvil import is_ready

REPO = Path(__file__).resolve().parents[2]
COMPOSE = "0x" + "ab" * 32
IMAGE = "0x" + "00" * 32


def tkms_command() -> list[str]:
    script = Path(sys.executable).parent / "tkms"
    return [str(script)] if script.exists() else [sys.executable, str(REPO / "tkms.py")]


def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*tkms_command(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == expect, result.stderr
    return result


def run_json(*args: str, expect: int = 0) -> Any:
    return json.loads(run(*args, "--json", expect=expect).stdout)


def test_deploy_register_check_revoke_audit_walkthrough(
    anvil: Anvil, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real processes for the main steps (each pays ~1.5 s of web3 import: keep them few)."""
    rpc = ("--rpc", anvil.rpc_url)
    deployed = run_json("chain", "deploy", *rpc, "--anvil-account", "0", "--allow-simulator")
    assert set(deployed) == {"governance", "app_factory"}
    governance = ("--governance", deployed["governance"])
    register = ("app", "register", *rpc, *governance, "--anvil-account", "1")
    registered = run_json(*register, "--compose-hash", COMPOSE, "--any-device")
    app = ("--app-id", registered["app_id"])
    allow_image = ("--anvil-account", "0", "--os-image-hash", IMAGE)
    run("chain", "allow-os-image", *rpc, *governance, *allow_image)
    check = ["app", "check", *rpc, *governance, *app, "--compose-hash", COMPOSE]
    assert run_json(*check) == {"allowed": True, "reason": ""}
    # Further steps in process: the same code without another interpreter start.
    revoke = ["app", "revoke-compose", *rpc, *app, "--anvil-account", "1"]
    assert tkms.main([*revoke, "--compose-hash", COMPOSE]) == 0
    capsys.readouterr()
    assert tkms.main([*check, "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "allowed": False,
        "reason": "Compose hash not allowed",
    }
    history = run_json("chain", "audit", *rpc, *governance)
    events = [(e["source"], e["event"]) for e in history]
    assert events[:5] == [
        ("governance", "OwnershipTransferred"),
        ("governance", "SimulatorAllowedSet"),
        ("governance", "TcbStatusAllowed"),
        ("governance", "RetirementWindowSet"),
        ("governance", "AppFactorySet"),
    ]
    assert events[-3:] == [
        ("governance", "AppRegistered"),
        ("governance", "OsImageAdded"),
        ("app", "ComposeHashRemoved"),
    ]
    blocks = [e["block"] for e in history]
    assert blocks == sorted(blocks)
    assert history[-1]["args"] == {"composeHash": COMPOSE}
    assert history[-1]["sender"] == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_text_output_and_refusals_in_process(
    anvil: Anvil, deployed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    rpc, governance = ["--rpc", anvil.rpc_url], ["--governance", deployed["governance"]]
    assert (
        tkms.main(
            [
                "app",
                "register",
                *rpc,
                *governance,
                "--anvil-account",
                "1",
                "--compose-hash",
                COMPOSE,
                "--device-id",
                "0x" + "de" * 32,
            ]
        )
        == 0
    )
    app_id = capsys.readouterr().out.split()[1]
    check = ["app", "check", *rpc, *governance, "--app-id", app_id, "--compose-hash", COMPOSE]
    assert tkms.main([*check, "--tcb-status", "OutOfDate"]) == 1
    assert capsys.readouterr().out.startswith("denied: OS image is not allowed (block ")
    assert (
        tkms.main(
            [
                "app",
                "revoke-compose",
                *rpc,
                "--app-id",
                app_id,
                "--anvil-account",
                "0",
                "--compose-hash",
                COMPOSE,
            ]
        )
        == 1
    )
    refused = capsys.readouterr()
    assert refused.err.startswith(
        "error: removeComposeHash: reverted before sending: "
        "NotOwner(caller=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266)"
    )
    assert (
        tkms.main(
            [
                "chain",
                "allow-os-image",
                *rpc,
                *governance,
                "--anvil-account",
                "0",
                "--os-image-hash",
                IMAGE,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith(f"allowed OS image {IMAGE} (tx 0x")
    assert tkms.main([*check, "--device-id", "0x" + "de" * 32]) == 0
    assert capsys.readouterr().out.startswith("allowed (block ")
    assert tkms.main([*check]) == 1
    assert capsys.readouterr().out.startswith("denied: Device not allowed")
    assert tkms.main(["chain", "audit", *rpc, *governance]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert f"governance {deployed['governance']} OsImageAdded osImageHash={IMAGE}" in last
    assert last.endswith("(by 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266)")


def _sigint_default() -> None:
    # A shell starts background jobs with SIGINT ignored, and Python then never turns it
    # into KeyboardInterrupt; what a terminal's Ctrl-C sends must not depend on who ran us.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_chain_anvil_runs_in_the_foreground_until_stopped(stop: signal.Signals) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*tkms_command(), "chain", "anvil", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_sigint_default,
    )
    try:
        deadline = time.monotonic() + 20
        while not is_ready(f"http://127.0.0.1:{port}") and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.05)
        assert is_ready(f"http://127.0.0.1:{port}")
    finally:
        process.send_signal(stop)
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0
    assert f"anvil on http://127.0.0.1:{port}" in output
    assert not is_ready(f"http://127.0.0.1:{port}")  # anvil went with it


@pytest.fixture(scope="module")
def deployed(anvil: Anvil) -> dict[str, str]:
    deployment = deploy(Transactor(anvil.web3(), anvil_account(0)))
    return {"governance": deployment.governance, "app_factory": deployment.app_factory}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["chain", "deploy", "--private-key", "0x1234"], "--private-key: expected 32 bytes, got 2"),
        (["chain", "deploy", "--anvil-account", "12"], "--anvil-account: must be 0..9, got 12"),
        (
            ["app", "register", "--governance", "0x1234", "--anvil-account", "1"],
            "--governance: expected 20 bytes, got 2",
        ),
        (
            [
                "app",
                "register",
                "--governance",
                "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                "--anvil-account",
                "1",
            ],
            "--governance: no contract at 0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        ),
        (
            [
                "app",
                "register",
                "--governance",
                "GOV",
                "--anvil-account",
                "1",
                "--compose-hash",
                "0xabcdef",
            ],
            "--compose-hash: expected 32 bytes, got 3",
        ),
        (
            [
                "app",
                "allow-compose",
                "--app-id",
                "0x" + "12" * 20,
                "--compose-hash",
                COMPOSE,
                "--anvil-account",
                "1",
            ],
            "--app-id: no contract at 0x1212121212121212121212121212121212121212",
        ),
        (
            [
                "app",
                "check",
                "--governance",
                "GOV",
                "--app-id",
                "0x" + "12" * 20,
                "--compose-hash",
                COMPOSE,
                "--device-id",
                "xyz",
            ],
            "--device-id: odd number of hex digits",
        ),
        (
            [
                "app",
                "check",
                "--governance",
                "GOV",
                "--app-id",
                "0x" + "12" * 20,
                "--compose-hash",
                "0x12",
            ],
            "--compose-hash: expected 32 bytes, got 1",
        ),
    ],
)
def test_malformed_input_names_the_argument_and_exits_2(
    anvil: Anvil,
    deployed: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    argv = [a.replace("GOV", deployed["governance"]) for a in argv]
    assert tkms.main([*argv[:2], "--rpc", anvil.rpc_url, *argv[2:]]) == 2
    captured = capsys.readouterr()
    error = captured.err.splitlines()[-1]  # after the warning about --private-key on argv
    assert error.startswith("error: ") and message in error
    assert captured.out == ""


def test_unreachable_rpc_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert tkms.main(["chain", "deploy", "--rpc", url, "--anvil-account", "0"]) == 2
    assert f"error: --rpc: no Ethereum JSON-RPC answer at {url}" in capsys.readouterr().err


def test_one_signing_option_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        tkms.main(
            [
                "chain",
                "deploy",
                "--rpc",
                "http://x",
                "--anvil-account",
                "0",
                "--private-key",
                "0x" + "11" * 32,
            ]
        )
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_simulators_are_refused_on_a_chain_that_is_not_a_dev_chain(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A chain with a public network's id (here Ethereum mainnet's 1, on a local anvil): the
    CLI, `deploy` and the governance client all refuse to switch simulators on, and nothing is
    sent; the same deployment without simulators goes through."""
    with Anvil(chain_id=1) as mainnet_like:
        rpc = ("--rpc", mainnet_like.rpc_url)
        w3 = mainnet_like.web3()
        owner = Transactor(w3, anvil_account(0))

        def sent() -> int:
            return w3.eth.get_transaction_count(Web3.to_checksum_address(owner.address))

        code = tkms.main(["chain", "deploy", *rpc, "--anvil-account", "0", "--allow-simulator"])
        assert code == 2
        error = capsys.readouterr().err
        assert error.startswith("error: --allow-simulator: refusing to allow simulated TEEs on")
        assert "chain 1" in error and "(1337, 31337)" in error
        assert sent() == 0
        with pytest.raises(InvalidInput, match="allow_simulator: refusing .* chain 1"):
            deploy(owner, allow_simulator=True)
        deployment = deploy(owner)
        governance = GovernanceClient(w3, deployment.governance, owner)
        before = sent()
        with pytest.raises(InvalidInput, match="allowed: refusing .* chain 1"):
            governance.send_set_simulator_allowed(True)
        assert sent() == before
        assert governance.get_simulator_allowed() is False
        governance.send_set_simulator_allowed(False)  # switching off is always allowed
