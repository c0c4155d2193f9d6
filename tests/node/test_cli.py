"""`tkms node init / register / approve` end to end against a real anvil."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attest import compute_app_identity, parse_event_log, parse_quote
from contracts import Transactor, anvil_account
from contracts._anvil import Anvil
from contracts._deploy import Deployment, deploy


def evidence_measurement(registration: dict[str, Any]) -> bytes:
    """mr_aggregated of a simulator node's evidence, derived here independently of the CLI."""
    quote = parse_quote(bytes.fromhex(registration["evidence"]["quote"]))
    entries = parse_event_log(registration["evidence"]["event_log"])
    return compute_app_identity(entries, quote.td_report, ppid=None).mr_aggregated


def tkms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tkms", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[Anvil, Deployment]]:
    with Anvil() as anvil:
        yield anvil, deploy(Transactor(anvil.web3(), anvil_account(0)), allow_simulator=True)


def test_init_register_approve(tmp_path: Path, chain: tuple[Anvil, Deployment]) -> None:
    anvil, deployment = chain
    data = tmp_path / "node"
    out = tkms("node", "init", "--dir", str(data), "--json")
    assert out.returncode == 0, out.stderr
    registration = json.loads(out.stdout)
    assert json.loads((data / "registration.json").read_text()) == registration
    assert len(bytes.fromhex(registration["deal_public_key"])) == 1216
    assert (data / "identity.sealed").exists() and (data / "sealing.key").exists()

    again = tkms("node", "init", "--dir", str(data))
    assert again.returncode == 2 and "already holds a node identity" in again.stderr

    endpoint = "kms=127.0.0.1:7001,peer=127.0.0.1:7002"
    rpc, gov = anvil.rpc_url, deployment.governance
    register = (
        *("node", "register", "--dir", str(data), "--rpc", rpc, "--governance", gov),
        *("--endpoint", endpoint, "--fund-from-anvil-account", "1"),
    )
    refused = tkms(*register)
    assert refused.returncode == 2 and "tkms node allow-registration" in refused.stderr
    out = tkms(
        *("node", "allow-registration", "--rpc", rpc, "--governance", gov),
        *("--node", registration["address"], "--anvil-account", "0"),
    )
    assert out.returncode == 0, out.stderr
    out = tkms(
        "node",
        "register",
        "--dir",
        str(data),
        "--rpc",
        rpc,
        "--governance",
        gov,
        "--endpoint",
        endpoint,
        "--fund-from-anvil-account",
        "1",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    registered = json.loads(out.stdout)
    assert registered["node"] == registration["address"]
    reviewed = json.loads((data / "registration.json").read_text())
    assert (reviewed["endpoint"], reviewed["registration_hash"]) == (
        endpoint,
        registered["registration_hash"],
    )

    out = tkms(
        "node",
        "approve",
        "--rpc",
        rpc,
        "--governance",
        gov,
        "--node",
        registration["address"],
        "--registration",
        str(data / "registration.json"),
        "--anvil-account",
        "0",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    approved = json.loads(out.stdout)
    assert approved["approved"] is True
    assert approved["kms_measurement"] == evidence_measurement(registration).hex()
    assert approved["registration_hash"] == registered["registration_hash"]

    from contracts import GovernanceClient

    governance = GovernanceClient(anvil.web3(), gov)
    assert governance.is_node_approved(registration["address"])
    assert governance.get_node(registration["address"]).endpoint == endpoint
    assert governance.is_kms_measurement_allowed(bytes.fromhex(approved["kms_measurement"]))


def test_register_refuses_a_bad_endpoint(tmp_path: Path, chain: tuple[Anvil, Deployment]) -> None:
    anvil, deployment = chain
    data = tmp_path / "node"
    assert tkms("node", "init", "--dir", str(data)).returncode == 0
    out = tkms(
        "node",
        "register",
        "--dir",
        str(data),
        "--rpc",
        anvil.rpc_url,
        "--governance",
        deployment.governance,
        "--endpoint",
        "kms=127.0.0.1:7001",
    )
    assert out.returncode == 2
    assert "missing peer" in out.stderr


def test_status_without_a_running_node(tmp_path: Path) -> None:
    out = tkms("node", "status", "--dir", str(tmp_path))
    assert out.returncode == 2 and "is the node running?" in out.stderr


def test_owner_keys_come_from_a_private_file_or_the_environment(
    tmp_path: Path,
    chain: tuple[Anvil, Deployment],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The governance owner's key never needs to be on the command line (where `ps` shows it);
    a key file others can read is refused, and nothing is sent."""
    import tkms as entry
    from contracts import GovernanceClient

    anvil, deployment = chain
    monkeypatch.delenv("TKMS_PRIVATE_KEY", raising=False)
    owner_key = "0x" + bytes(anvil_account(0).key).hex()
    key_file = tmp_path / "owner.key"
    key_file.write_text(owner_key + "\n")
    key_file.chmod(0o640)
    node = anvil_account(8).address
    allow = ["node", "allow-registration", "--rpc", anvil.rpc_url, "--governance"]
    allow += [deployment.governance, "--node", node]
    governance = GovernanceClient(anvil.web3(), deployment.governance)

    assert entry.main([*allow, "--private-key-file", str(key_file)]) == 2
    assert f"--private-key-file: {key_file} has mode 0640" in capsys.readouterr().err
    key_file.chmod(0o600)
    assert entry.main([*allow, "--private-key-file", str(key_file), "--chain-id", "1"]) == 2
    assert capsys.readouterr().err == (
        "tkms node: --chain-id: the RPC serves chain 31337, not 1: nothing was signed\n"
    )
    assert not governance.is_node_registration_allowed(node)
    assert entry.main([*allow, "--private-key-file", str(key_file), "--chain-id", "31337"]) == 0
    assert governance.is_node_registration_allowed(node)
    capsys.readouterr()

    monkeypatch.setenv("TKMS_PRIVATE_KEY", owner_key)
    other = anvil_account(9).address
    assert entry.main([*allow[:-1], other]) == 0
    assert capsys.readouterr().err == ""
    assert governance.is_node_registration_allowed(other)
    assert entry.main([*allow[:-1], other, "--private-key", owner_key]) == 0
    assert "warning: --private-key puts the key on the command line" in capsys.readouterr().err


def test_register_off_a_development_chain_needs_the_chain_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tkms as entry
    from node.cli import init_node_dir

    data = tmp_path / "node"
    init_node_dir(data, tee="simulator", sealing="file")
    with Anvil(chain_id=5) as foreign:
        deployment = deploy(Transactor(foreign.web3(), anvil_account(0)))
        register = ["node", "register", "--dir", str(data), "--rpc", foreign.rpc_url]
        register += ["--governance", deployment.governance, "--endpoint", "kms=a:1,peer=a:2"]
        assert entry.main(register) == 2
        assert capsys.readouterr().err.startswith(
            "tkms node: --chain-id: required: the RPC serves chain 5, which is not a development"
        )
        assert entry.main([*register, "--chain-id", "1"]) == 2
        assert "serves chain 5, not 1: nothing was signed" in capsys.readouterr().err


def test_rpc_credentials_are_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    import tkms as entry
    from contracts import free_port

    port = free_port()
    url = f"https://apiuser:SECRET-TOKEN@127.0.0.1:{port}/v3/KEY123"
    argv = ["node", "allow-registration", "--rpc", url, "--governance", "0x" + "11" * 20]
    assert entry.main([*argv, "--node", "0x" + "22" * 20, "--anvil-account", "0"]) == 2
    assert capsys.readouterr().err == (
        f"tkms node: --rpc: no Ethereum JSON-RPC answer at https://***@127.0.0.1:{port}/***\n"
    )
