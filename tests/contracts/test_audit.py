"""The audit history rebuilt from events: who allowed or revoked what, in which block, in order."""

from __future__ import annotations

from web3 import Web3

from contracts import (
    AppAuthClient,
    AppBootInfo,
    AppFactoryClient,
    AuditReader,
    Deployment,
    GovernanceClient,
    Transactor,
    read_history,
)
from contracts._audit import CUSTOM_CONTROLLER
from contracts._deploy import _deploy
from tests.contracts.testsol import Compiled, deploy_test_contract

IMAGE = b"\x1a" * 32
COMPOSE = b"\xc0" * 32


def test_history_names_actor_action_and_block_oldest_first(
    w3: Web3,
    governance: GovernanceClient,
    factory: AppFactoryClient,
    signers: list[Transactor],
    deployment: Deployment,
) -> None:
    owner, app_owner = signers[0].address, signers[1].address
    start = w3.eth.block_number + 1
    added = governance.send_add_os_image(IMAGE)
    deployed, app_id = factory.send_deploy_app(compose_hashes=[COMPOSE], allow_any_device=True)
    revoked = AppAuthClient(w3, app_id, signers[1]).send_remove_compose_hash(COMPOSE)
    removed_image = governance.send_remove_os_image(IMAGE)
    removed_app = governance.send_remove_app(app_id)

    history = read_history(w3, deployment.governance, from_block=start)
    summary = [(e.block, e.source, e.event, e.sender) for e in history]
    assert summary == [
        (added.block, "governance", "OsImageAdded", owner),
        (deployed.block, "app", "OwnershipTransferred", app_owner),
        (deployed.block, "app", "ComposeHashAdded", app_owner),
        (deployed.block, "app", "AllowAnyDeviceSet", app_owner),
        (deployed.block, "app", "TcbRequirementSet", app_owner),
        (deployed.block, "app", "EnvSignerSet", app_owner),
        (deployed.block, "factory", "AppDeployed", app_owner),
        (deployed.block, "governance", "AppRegistered", app_owner),
        (revoked.block, "app", "ComposeHashRemoved", app_owner),
        (removed_image.block, "governance", "OsImageRemoved", owner),
        (removed_app.block, "governance", "AppRemoved", owner),
    ]
    assert history[0].args == {"osImageHash": IMAGE}
    assert history[8].contract == app_id and history[8].args == {"composeHash": COMPOSE}
    assert history[8].tx_hash == revoked.tx_hash
    as_json = history[0].to_json()
    assert as_json["args"] == {"osImageHash": "0x" + IMAGE.hex()}
    assert history[0].to_line().startswith(f"block {added.block} ")
    assert f"OsImageAdded osImageHash=0x{IMAGE.hex()} (by {owner})" in history[0].to_line()


def test_full_history_starts_at_deployment_and_reads_in_small_chunks(
    w3: Web3, deployment: Deployment, signers: list[Transactor]
) -> None:
    whole = read_history(w3, deployment.governance)
    chunked = AuditReader(w3, deployment.governance, chunk=2).history()
    assert [(e.block, e.log_index) for e in chunked] == [(e.block, e.log_index) for e in whole]
    assert [e.event for e in whole[:4]] == [
        "OwnershipTransferred",
        "SimulatorAllowedSet",
        "TcbStatusAllowed",
        "RetirementWindowSet",
    ]
    approvals = [e for e in whole if e.event == "NodeApproved"]
    assert len(approvals) == 5 and all(e.sender == signers[0].address for e in approvals)
    registrations = [e for e in whole if e.event == "NodeRegistered"]
    assert [e.sender for e in registrations] == [signers[i].address for i in (2, 3, 4, 5, 6)]
    long_key = registrations[0].to_line()
    assert "dealKey=0x0202020202020202...(1216 bytes)" in long_key


def test_a_registrar_is_not_the_factory_and_its_events_are_not_merged(
    w3: Web3,
    governance: GovernanceClient,
    factory: AppFactoryClient,
    signers: list[Transactor],
    deployment: Deployment,
    test_contracts: dict[str, Compiled],
) -> None:
    """Anyone can call `registerApp`; a registrar's self-chosen events (here an AppDeployed
    naming someone else's app, and a SimulatorAllowedSet) must not appear as the factory's."""
    start = w3.eth.block_number + 1
    _, real_app = factory.send_deploy_app(compose_hashes=[COMPOSE], allow_any_device=True)
    attacker = signers[7]
    loose = deploy_test_contract(attacker, test_contracts["LooseController"])
    registrar = deploy_test_contract(attacker, test_contracts["SpoofingRegistrar"])
    attacker.send(registrar.functions.register(governance.address, loose.address, real_app))

    reader = AuditReader(w3, deployment.governance)
    history = reader.history(from_block=start)
    assert [e for e in history if e.contract == registrar.address] == []
    assert [(e.source, e.event) for e in history if e.event == "AppDeployed"] == [
        ("factory", "AppDeployed")
    ]
    registered = [e for e in history if e.event == "AppRegistered"]
    assert [e.notes for e in registered] == [
        (),
        (f"registrar {registrar.address} is not the app factory", CUSTOM_CONTROLLER),
    ]
    assert reader.foreign_registrars == {registrar.address}


def test_a_custom_controller_is_flagged_as_not_audited(
    w3: Web3,
    governance: GovernanceClient,
    factory: AppFactoryClient,
    signers: list[Transactor],
    deployment: Deployment,
    test_contracts: dict[str, Compiled],
) -> None:
    """A registered custom controller changes its decision without a single log; the audit
    cannot show that, so it says so for that app and only for that app."""
    start = w3.eth.block_number + 1
    _, ours = factory.send_deploy_app(compose_hashes=[COMPOSE], allow_any_device=True)
    loose = deploy_test_contract(signers[7], test_contracts["LooseController"])
    as_attacker = governance.with_transactor(signers[7])
    as_attacker.send_register_app(loose.address)
    info = AppBootInfo(app_id=loose.address, compose_hash=b"\x77" * 32)
    decision = AppAuthClient(w3, loose.address).is_app_allowed(info)
    flipped = signers[7].send(loose.functions.flip())
    assert decision.allowed and flipped.logs == ()
    assert not AppAuthClient(w3, loose.address).is_app_allowed(info).allowed

    reader = AuditReader(w3, deployment.governance)
    history = reader.history(from_block=start)
    assert set(reader.custom_controllers) == {loose.address}
    assert reader.custom_controllers[loose.address] == "0x" + Web3.keccak(
        w3.eth.get_code(loose.address)
    ).hex().removeprefix("0x")
    ours_sources = {e.source for e in history if e.contract == ours}
    assert ours_sources == {"app"}
    (registered,) = [
        e for e in history if e.event == "AppRegistered" and e.args["appId"] == loose.address
    ]
    assert CUSTOM_CONTROLLER in registered.notes
    assert CUSTOM_CONTROLLER in registered.to_line() and registered.to_json()["notes"]


def test_a_replaced_factory_is_a_factory_only_while_it_was_one(
    w3: Web3,
    governance: GovernanceClient,
    factory: AppFactoryClient,
    signers: list[Transactor],
    deployment: Deployment,
) -> None:
    start = w3.eth.block_number + 1
    _, before = factory.send_deploy_app(allow_any_device=True)
    successor, _ = _deploy(signers[0], "AppAuthFactory", deployment.governance)
    governance.send_set_app_factory(successor)
    _, after = factory.send_deploy_app(allow_any_device=True)  # the old factory, still callable

    history = read_history(w3, deployment.governance, from_block=start)
    deployed = [(e.source, e.args["appId"]) for e in history if e.event == "AppDeployed"]
    assert deployed == [("factory", before)]
    late = [e for e in history if e.event == "AppRegistered" and e.args["appId"] == after]
    assert late[0].notes == (f"registrar {deployment.app_factory} is not the app factory",)
