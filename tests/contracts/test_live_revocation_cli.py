"""`tkms app set-live-revocation` and what `tkms app revoke-compose --help` promises (issue 23)."""

from __future__ import annotations

import json

import pytest

import tkms
from contracts import Anvil, AppAuthClient, Transactor, anvil_account, deploy

COMPOSE = "0x" + "c0" * 32


def test_revoke_compose_says_what_a_running_agent_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        tkms.main(["app", "revoke-compose", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "refuse new derivations for it from the block the revocation is in" in text
    assert "an instance already running keeps serving the keys it fetched at boot" in text
    assert "as with dstack, unless the app opted in to live revocation" in text
    assert "`tkms app set-live-revocation`" in text
    assert "Keys an app already handed out" in text and "out of anyone's reach" in text


def test_the_owner_turns_live_revocation_on_and_off(
    anvil: Anvil, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = deploy(Transactor(anvil.web3(), anvil_account(0)))
    rpc = ["--rpc", anvil.rpc_url]
    register = ["app", "register", *rpc, "--governance", deployment.governance]
    assert tkms.main([*register, "--anvil-account", "1", "--compose-hash", COMPOSE, "--json"]) == 0
    app_id = json.loads(capsys.readouterr().out)["app_id"]
    live = ["app", "set-live-revocation", *rpc, "--app-id", app_id]
    assert tkms.main([*live, "--anvil-account", "1", "--blocks", "6"]) == 0
    assert capsys.readouterr().out == (
        f"live revocation of {app_id} is on: running agents stop serving keys within 6 blocks "
        "of a revocation\n"
    )
    assert AppAuthClient(anvil.web3(), app_id).get_live_revocation_blocks() == 6
    assert tkms.main([*live, "--anvil-account", "2", "--blocks", "0"]) == 1  # not the owner
    assert "NotOwner" in capsys.readouterr().err
    assert tkms.main([*live, "--anvil-account", "1", "--blocks", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["live_revocation_blocks"] == 0
    assert AppAuthClient(anvil.web3(), app_id).get_live_revocation_blocks() == 0
    with pytest.raises(SystemExit):
        tkms.main([*live, "--anvil-account", "1", "--blocks", "-1"])
    assert "must be 0 (off) to 2**64-1 blocks, got -1" in capsys.readouterr().err
