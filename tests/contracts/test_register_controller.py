"""`tkms app register --controller`: an existing dstack-style IAppAuth contract becomes an app.

In process (`tkms.main`) against a real anvil, with `DstackStyleApp` (tests/contracts/sol: our
own controller with DstackApp's public surface): the controller is checked with ERC-165,
registered, and governance then asks it whether an app identity may get keys. Refusals say
why and send nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3

import tkms
from contracts import Anvil, AppBootInfo, AppStatus, GovernanceClient, Transactor
from contracts._register import IAPP_AUTH_ID
from tests.contracts.testsol import Compiled, deploy_test_contract

COMPOSE = bytes.fromhex("c0" * 32)
IMAGE = bytes.fromhex("11" * 32)


def register(rpc: str, governance: str, controller: str, *extra: str) -> list[str]:
    return [
        "app",
        "register",
        "--rpc",
        rpc,
        "--governance",
        governance,
        "--anvil-account",
        "3",
        "--controller",
        controller,
        *extra,
    ]


def boot_info(app_id: str, compose: bytes = COMPOSE) -> AppBootInfo:
    return AppBootInfo(
        app_id=app_id,
        compose_hash=compose,
        device_id=bytes(32),
        os_image_hash=IMAGE,
        tcb_status="UpToDate",
    )


def dstack_style_app(owner: Transactor, test_contracts: dict[str, Compiled]) -> Any:
    """Our DstackApp-shaped controller, owned by `owner`: any device, TCB up to date, COMPOSE."""
    return deploy_test_contract(owner, test_contracts["DstackStyleApp"], True, True, COMPOSE)


def test_iapp_auth_interface_id_is_the_selector_of_is_app_allowed() -> None:
    signature = (
        "isAppAllowed((address,bytes32,address,bytes32,bytes32,bytes32,bytes32,string,string[]))"
    )
    assert function_signature_to_4byte_selector(signature) == IAPP_AUTH_ID


def test_a_dstack_style_controller_is_registered_and_decides(
    anvil: Anvil,
    w3: Web3,
    governance: GovernanceClient,
    signers: list[Transactor],
    test_contracts: dict[str, Compiled],
    capsys: pytest.CaptureFixture[str],
) -> None:
    app_owner = signers[8]
    controller = dstack_style_app(app_owner, test_contracts)
    governance.send_add_os_image(IMAGE)
    argv = register(anvil.rpc_url, governance.address, controller.address)
    assert tkms.main([*argv, "--json"]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert document["app_id"] == document["controller"] == controller.address
    assert document["code_hash"].startswith("0x") and document["tx_hash"].startswith("0x")
    assert governance.get_app_status(controller.address) == AppStatus.REGISTERED
    # Governance consults the controller: its owner's decisions take effect at once.
    assert governance.is_app_allowed(boot_info(controller.address)).allowed
    denied = governance.is_app_allowed(boot_info(controller.address, bytes(32)))
    assert (denied.allowed, denied.reason) == (False, "Compose hash not allowed")
    app_owner.send(controller.functions.removeComposeHash(COMPOSE))
    denied = governance.is_app_allowed(boot_info(controller.address))
    assert (denied.allowed, denied.reason) == (False, "Compose hash not allowed")
    # Registered already: refused, nothing sent.
    assert tkms.main(argv) == 2
    assert (
        capsys.readouterr().err
        == f"error: --controller: {controller.address} is already registered\n"
    )


def test_text_output_names_the_controller_and_the_audit_caveat(
    anvil: Anvil,
    w3: Web3,
    governance: GovernanceClient,
    signers: list[Transactor],
    test_contracts: dict[str, Compiled],
    capsys: pytest.CaptureFixture[str],
) -> None:
    controller = dstack_style_app(signers[8], test_contracts)
    rpc = anvil.rpc_url
    assert tkms.main(register(rpc, governance.address, controller.address)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"app_id {controller.address} (existing controller, code hash 0x")
    assert out[1] == (
        "note: custom controller: decisions not audited (flagged by tkms chain audit): the "
        "controller can change who gets the app's keys without an event"
    )


def test_contracts_that_are_not_iapp_auth_controllers_are_refused_before_sending(
    anvil: Anvil,
    w3: Web3,
    governance: GovernanceClient,
    signers: list[Transactor],
    test_contracts: dict[str, Compiled],
    capsys: pytest.CaptureFixture[str],
) -> None:
    rpc = anvil.rpc_url
    only165 = deploy_test_contract(signers[8], test_contracts["OnlyErc165"]).address
    everything = deploy_test_contract(signers[8], test_contracts["ClaimsEverything"]).address
    eoa = signers[9].address
    nonce = w3.eth.get_transaction_count(Web3.to_checksum_address(signers[3].address))
    cases = {
        eoa: f"no contract at {eoa} on this chain",
        only165: f"the contract at {only165} does not implement dstack's IAppAuth "
        "(supportsInterface(0x1e079198) is not true)",
        everything: f"the contract at {everything} does not implement ERC-165 detection",
    }
    for address, reason in cases.items():
        assert tkms.main(register(rpc, governance.address, address)) == 2
        assert capsys.readouterr().err == f"error: --controller: {reason}\n"
        assert governance.get_app_status(address) == AppStatus.NONE
    controller = dstack_style_app(signers[8], test_contracts)
    mixed = register(rpc, governance.address, controller.address, "--salt", "0x" + "00" * 32)
    assert tkms.main([*mixed, "--any-device"]) == 2
    assert capsys.readouterr().err == (
        "error: --controller: registers an existing contract: --salt, --any-device set up a new "
        "AppAuth and cannot go with it (the controller's owner sets its policy)\n"
    )
    assert (
        w3.eth.get_transaction_count(Web3.to_checksum_address(signers[3].address)) == nonce
    )  # nothing was sent


def test_an_app_the_owner_removed_comes_back_only_through_the_owner(
    anvil: Anvil,
    w3: Web3,
    governance: GovernanceClient,
    signers: list[Transactor],
    test_contracts: dict[str, Compiled],
    capsys: pytest.CaptureFixture[str],
) -> None:
    rpc = anvil.rpc_url
    controller = dstack_style_app(signers[8], test_contracts)
    assert tkms.main(register(rpc, governance.address, controller.address)) == 0
    governance.send_remove_app(controller.address)
    capsys.readouterr()
    assert tkms.main(register(rpc, governance.address, controller.address)) == 2
    assert "only the owner can register it again" in capsys.readouterr().err
    owner = [a if a != "3" else "0" for a in register(rpc, governance.address, controller.address)]
    assert tkms.main(owner) == 0
    assert governance.get_app_status(controller.address) == AppStatus.REGISTERED
