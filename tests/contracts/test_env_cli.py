"""`tkms app set-env-signer` and `set-env-version`: the app owner's env controls from the CLI."""

from __future__ import annotations

import json

import pytest
from web3 import Web3

import tkms
from contracts import Anvil, AppAuthClient, AppFactoryClient, Transactor


def test_the_app_owner_names_the_env_signer_and_raises_the_env_version(
    anvil: Anvil,
    w3: Web3,
    factory: AppFactoryClient,
    signers: list[Transactor],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, app_id = factory.send_deploy_app(compose_hashes=[b"\xc0" * 32])  # owned by account 1
    common = ["--rpc", anvil.rpc_url, "--app-id", app_id]
    version = ["app", "set-env-version", *common, "--version", "4"]
    assert tkms.main([*version, "--anvil-account", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["env_version"] == 4
    assert tkms.main([*version, "--anvil-account", "1"]) == 1  # never the same or lower again
    assert "EnvVersionNotIncreasing(current=4, proposed=4)" in capsys.readouterr().err
    signer = ["app", "set-env-signer", *common, "--signer", signers[3].address]
    assert tkms.main([*signer, "--anvil-account", "2"]) == 1
    assert "NotOwner" in capsys.readouterr().err
    assert tkms.main([*signer, "--anvil-account", "1"]) == 0
    assert f"env signer of {app_id} is now {signers[3].address}" in capsys.readouterr().out
    app = AppAuthClient(w3, app_id)
    assert (app.get_env_signer(), app.get_env_version()) == (signers[3].address, 4)
