"""The CLI's handling of keys, chain ids and RPC URLs, and its checks around app registration.

In process (`tkms.main`) against a real anvil: each case asserts what is printed, the exit
status, and that nothing was sent when a command refuses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

import tkms
from contracts import (
    Anvil,
    AppFactoryClient,
    ChainError,
    Deployment,
    GovernanceClient,
    Transactor,
    anvil_account,
    deploy,
    free_port,
)
from contracts._keysource import ENV_VAR
from tests.contracts.testsol import Compiled, deploy_test_contract

COMPOSE = "0x" + "ab" * 32
SALT = "0x" + "5a" * 32
OWNER_KEY = "0x" + bytes(anvil_account(0).key).hex()
OWNER = anvil_account(0).address
IMAGE = "0x" + "11" * 32


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def deployed(anvil: Anvil) -> dict[str, str]:
    deployment = deploy(Transactor(anvil.web3(), anvil_account(0)))
    return {"governance": deployment.governance, "app_factory": deployment.app_factory}


@pytest.fixture(scope="module")
def foreign_chain() -> Iterator[Anvil]:
    """A chain whose id (5) is not a development chain's."""
    with Anvil(chain_id=5) as chain:
        yield chain


def key_file(directory: Path, mode: int, key: str = OWNER_KEY) -> Path:
    path = directory / "owner.key"
    path.write_text(key + "\n")
    path.chmod(mode)
    return path


def sent_by(w3: Web3, address: str) -> int:
    return w3.eth.get_transaction_count(Web3.to_checksum_address(address))


def allow_image(rpc: str, governance: str, *signer: str) -> list[str]:
    return ["chain", "allow-os-image", "--rpc", rpc, "--governance", governance, *signer,
            "--os-image-hash", IMAGE]  # fmt: skip


# -- app ids and registration -------------------------------------------------------------


def test_predict_id_then_register_with_that_salt_gives_that_id(
    anvil: Anvil, deployed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    rpc, governance = ["--rpc", anvil.rpc_url], ["--governance", deployed["governance"]]
    owner = anvil_account(3).address
    predict = ["app", "predict-id", *rpc, *governance, "--owner", owner, "--salt", SALT]
    assert tkms.main([*predict, "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert predicted["deployed"] is False and predicted["app_factory"] == deployed["app_factory"]
    register = ["app", "register", *rpc, *governance, "--anvil-account", "3", "--salt", SALT]
    assert tkms.main([*register, "--compose-hash", COMPOSE]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"app_id {predicted['app_id']} (owner {owner}, ")
    assert f"factory {deployed['app_factory']}, salt {SALT}, tx 0x" in printed
    assert tkms.main(predict) == 0
    assert capsys.readouterr().out.endswith(", deployed)\n")


def test_register_refuses_a_factory_the_governance_owner_swapped(
    anvil: Anvil, test_contracts: dict[str, Compiled], capsys: pytest.CaptureFixture[str]
) -> None:
    w3 = anvil.web3()
    owner = Transactor(w3, anvil_account(0))
    deployment = deploy(owner)
    backdoor = deploy_test_contract(
        owner, test_contracts["BackdooredFactory"], deployment.governance, anvil_account(9).address
    )
    GovernanceClient(w3, deployment.governance, owner).send_set_app_factory(backdoor.address)
    caller = anvil_account(4).address
    before = sent_by(w3, caller)
    register = ["app", "register", "--rpc", anvil.rpc_url, "--governance", deployment.governance]
    assert tkms.main([*register, "--anvil-account", "4", "--compose-hash", COMPOSE]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: the governance's app factory {backdoor.address} is not the")
    assert "nothing was sent" in error
    assert sent_by(w3, caller) == before


def test_audit_says_which_apps_it_cannot_audit(
    anvil: Anvil,
    deployed: dict[str, str],
    test_contracts: dict[str, Compiled],
    capsys: pytest.CaptureFixture[str],
) -> None:
    w3 = anvil.web3()
    attacker = Transactor(w3, anvil_account(7))
    loose = deploy_test_contract(attacker, test_contracts["LooseController"])
    GovernanceClient(w3, deployed["governance"], attacker).send_register_app(loose.address)
    audit = ["chain", "audit", "--rpc", anvil.rpc_url, "--governance", deployed["governance"]]
    assert tkms.main(audit) == 0
    captured = capsys.readouterr()
    line = next(x for x in captured.out.splitlines() if f"appId={loose.address}" in x)
    assert line.endswith(
        f"[registrar {attacker.address} is not the app factory; "
        "custom controller: decisions not audited]"
    )
    assert f"note: app {loose.address} has a custom controller (code hash 0x" in captured.err
    assert f"note: {attacker.address} registered apps but is not" in captured.err
    assert "its own events are not part of this history" in captured.err


# -- signing keys ----------------------------------------------------------------------------


def test_a_key_file_others_can_read_is_refused_and_nothing_is_sent(
    anvil: Anvil, deployed: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w3 = anvil.web3()
    before = sent_by(w3, OWNER)
    loose = key_file(tmp_path, 0o644)
    argv = allow_image(anvil.rpc_url, deployed["governance"], "--private-key-file", str(loose))
    assert tkms.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"error: --private-key-file: {loose} has mode 0644: group or others may read or change "
        f"the key; run `chmod 600 {loose}`\n"
    )
    assert sent_by(w3, OWNER) == before
    loose.chmod(0o600)
    assert tkms.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"allowed OS image {IMAGE}") and captured.err == ""
    assert OWNER_KEY[2:] not in captured.out + captured.err
    assert sent_by(w3, OWNER) == before + 1


def test_the_key_can_come_from_the_environment(
    anvil: Anvil,
    deployed: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ENV_VAR, OWNER_KEY)
    assert tkms.main(allow_image(anvil.rpc_url, deployed["governance"])) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("allowed OS image") and captured.err == ""


def test_a_key_on_the_command_line_is_warned_about(
    anvil: Anvil, deployed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = allow_image(anvil.rpc_url, deployed["governance"], "--private-key", OWNER_KEY)
    assert tkms.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: --private-key puts the key on the command line")
    assert "--private-key-file" in captured.err and ENV_VAR in captured.err
    assert OWNER_KEY[2:] not in captured.err


def test_without_any_key_the_options_are_named(
    anvil: Anvil, deployed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert tkms.main(allow_image(anvil.rpc_url, deployed["governance"])) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --private-key-file: no signing key: pass --private-key-file")
    assert ENV_VAR in error and "--anvil-account" in error


def test_help_lists_every_key_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        tkms.main(["chain", "deploy", "--help"])
    text = capsys.readouterr().out
    for option in ("--private-key-file", "--private-key", "--anvil-account", "--chain-id", ENV_VAR):
        assert option in text


# -- chain id ----------------------------------------------------------------------------------


def test_off_a_development_chain_the_chain_id_is_required_and_checked(
    foreign_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signing for whatever chain the RPC reports lets a lying RPC obtain the owner's
    transaction for another chain: off development chains --chain-id names it."""
    w3 = foreign_chain.web3()
    key = ["--private-key-file", str(key_file(tmp_path, 0o600))]
    deploy_argv = ["chain", "deploy", "--rpc", foreign_chain.rpc_url, *key]
    before = sent_by(w3, OWNER)
    assert tkms.main(deploy_argv) == 2
    assert capsys.readouterr().err.startswith(
        "error: --chain-id: required: the RPC serves chain 5, which is not a development chain"
    )
    assert tkms.main([*deploy_argv, "--chain-id", "1"]) == 2
    assert capsys.readouterr().err == (
        "error: --chain-id: the RPC serves chain 5, not 1: nothing was signed\n"
    )
    assert sent_by(w3, OWNER) == before
    assert tkms.main([*deploy_argv, "--chain-id", "5", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"governance", "app_factory"}
    assert sent_by(w3, OWNER) > before


def test_anvils_public_accounts_need_no_chain_id(
    foreign_chain: Anvil, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["chain", "deploy", "--rpc", foreign_chain.rpc_url, "--anvil-account", "2", "--json"]
    assert tkms.main(argv) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"governance", "app_factory"}


def test_a_pinned_transactor_signs_nothing_for_another_chain(
    w3: Web3, deployment: Deployment, signers: list[Transactor]
) -> None:
    account = signers[1].account
    pinned = Transactor(w3, account, chain_id=1)
    before = sent_by(w3, account.address)
    factory = AppFactoryClient(w3, deployment.app_factory, pinned)
    with pytest.raises(ChainError, match="the RPC serves chain 31337, not 1: nothing was signed"):
        factory.send_deploy_app()
    assert sent_by(w3, account.address) == before


# -- RPC URLs ----------------------------------------------------------------------------------


def test_credentials_in_the_rpc_url_are_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    url = f"http://apiuser:SECRET-TOKEN@127.0.0.1:{port}/v3/KEY123?apikey=QUERYSECRET"
    assert tkms.main(["chain", "audit", "--rpc", url, "--governance", "0x" + "11" * 20]) == 2
    error = capsys.readouterr().err
    assert error == (
        f"error: --rpc: no Ethereum JSON-RPC answer at http://***@127.0.0.1:{port}/***?***\n"
    )


def test_plain_http_to_another_host_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    # 0.0.0.0 is not a loopback address (on Linux a connection to it is refused at once here)
    url = f"http://0.0.0.0:{free_port()}/"
    assert tkms.main(["chain", "audit", "--rpc", url, "--governance", "0x" + "11" * 20]) == 2
    warning, error = capsys.readouterr().err.splitlines()
    assert warning.startswith(f"warning: --rpc http://0.0.0.0:{url.split(':')[2][:-1]} is plain")
    assert "use https://" in warning and error.startswith("error: --rpc: no Ethereum JSON-RPC")
    loopback = f"http://127.0.0.1:{free_port()}"
    assert tkms.main(["chain", "audit", "--rpc", loopback, "--governance", "0x" + "11" * 20]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_key_files_are_read_without_following_the_mode_of_a_link(tmp_path: Path) -> None:
    """A symlink's own mode is 0777: what counts is the file it names."""
    from contracts._keysource import read_key_file

    target = key_file(tmp_path, 0o600)
    link = tmp_path / "link.key"
    os.symlink(target, link)
    assert read_key_file(link) == OWNER_KEY
    target.chmod(0o640)
    with pytest.raises(ValueError, match="mode 0640"):
        read_key_file(link)


def test_a_key_can_come_through_a_pipe(tmp_path: Path) -> None:
    """`--private-key-file <(pass show owner-key)`: the shell passes a pipe (mode 0600)."""
    from contracts._keysource import read_key_file

    read_end, write_end = os.pipe()
    os.write(write_end, (OWNER_KEY + "\n").encode())
    os.close(write_end)
    try:
        assert read_key_file(Path(f"/dev/fd/{read_end}")) == OWNER_KEY
    finally:
        os.close(read_end)
    with pytest.raises(ValueError, match="is not a file"):
        read_key_file(tmp_path)
