"""The audit history rebuilt from events: who allowed or revoked what, in which block, in order."""

from __future__ import annotations

from web3 import Web3

from contracts import (
    AppAuthClient,
    AppFactoryClient,
    AuditReader,
    Deployment,
    GovernanceClient,
    Transactor,
    read_history,
)

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
