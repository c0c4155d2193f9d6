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
