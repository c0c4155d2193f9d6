"""App ids are bound to their owner, and registering through the factory checks what it gets.

An app id computed before the app exists (to encrypt secrets to it) must not be claimable by
anyone else; and `tkms app register` must not trust a factory the governance owner swapped.
"""

from __future__ import annotations

import pytest
from web3 import Web3

from contracts import (
    AppAuthClient,
    AppFactoryClient,
    AppStatus,
    Deployment,
    GovernanceClient,
    TransactionFailed,
    Transactor,
    UnexpectedContract,
    predict_app_id,
    predicted_app_id,
    register_app,
)
from contracts._codecheck import created_by
from contracts._deploy import _deploy
from contracts._register import check_new_app
from tests.contracts.testsol import Compiled, deploy_test_contract

SALT = bytes.fromhex("5a" * 32)
COMPOSE = b"\xc0" * 32


def test_another_sender_cannot_deploy_at_a_predicted_app_id(
    w3: Web3, factory: AppFactoryClient, signers: list[Transactor]
) -> None:
    """Alice computes her future app id; Mallory, sending first with the same salt and the same
    settings, gets another id; Alice then gets exactly hers."""
    alice, mallory = signers[1], signers[7]
    predicted = factory.predict_app_id(alice.address, SALT)
    assert predicted == predict_app_id(factory.address, alice.address, SALT)  # computed off chain
    _, mallorys = factory.with_transactor(mallory).send_deploy_app(
        salt=SALT, compose_hashes=[COMPOSE], allow_any_device=True
    )
    assert mallorys != predicted
    assert mallorys == factory.predict_app_id(mallory.address, SALT)
    assert w3.eth.get_code(Web3.to_checksum_address(predicted)) == b""
    _, alices = factory.send_deploy_app(salt=SALT, compose_hashes=[COMPOSE], allow_any_device=True)
    assert alices == predicted
    assert AppAuthClient(w3, alices).get_owner() == alice.address


def test_the_factorys_next_create_address_is_not_an_app_id_anyone_can_take(
    w3: Web3, factory: AppFactoryClient, signers: list[Transactor]
) -> None:
    """With CREATE, the next app id was the factory's next nonce address, so whoever deployed
    next took the id someone had encrypted secrets to."""
    nonce = w3.eth.get_transaction_count(Web3.to_checksum_address(factory.address))
    next_create = created_by(factory.address, nonce)
    _, mallorys = factory.with_transactor(signers[7]).send_deploy_app(allow_any_device=True)
    assert mallorys != next_create


def test_the_app_id_depends_on_owner_and_salt_only(
    factory: AppFactoryClient, signers: list[Transactor]
) -> None:
    predicted = factory.predict_app_id(signers[1].address, SALT)
    _, app_id = factory.send_deploy_app(
        salt=SALT, compose_hashes=[COMPOSE, b"\x01" * 32], device_ids=[b"\x02" * 32]
    )
    assert app_id == predicted  # the initial settings do not move it
    assert factory.predict_app_id(signers[1].address, b"\x00" * 32) != predicted
    with pytest.raises(TransactionFailed) as reused:
        factory.send_deploy_app(salt=SALT)
    assert reused.value.error_name == "AppIdTaken"


def test_register_app_checks_the_new_app_and_returns_its_factory(
    w3: Web3, governance: GovernanceClient, signers: list[Transactor], deployment: Deployment
) -> None:
    owner = governance.with_transactor(signers[1])
    factory, predicted = predicted_app_id(owner, signers[1].address, SALT)
    app = register_app(owner, salt=SALT, compose_hashes=[COMPOSE], allow_any_device=True)
    assert (app.app_id, app.factory, app.owner, app.salt) == (
        predicted,
        deployment.app_factory,
        signers[1].address,
        SALT,
    )
    assert factory == deployment.app_factory
    assert governance.get_app_status(app.app_id) == AppStatus.REGISTERED


def test_register_refuses_a_swapped_factory_before_sending(
    w3: Web3,
    governance: GovernanceClient,
    signers: list[Transactor],
    test_contracts: dict[str, Compiled],
) -> None:
    """The governance owner swaps in a factory whose apps belong to a keeper: registering
    through it is refused and nothing is sent."""
    keeper = signers[9].address
    backdoor = deploy_test_contract(
        signers[0], test_contracts["BackdooredFactory"], governance.address, keeper
    )
    governance.send_set_app_factory(backdoor.address)
    caller = governance.with_transactor(signers[1])
    sent = w3.eth.get_transaction_count(Web3.to_checksum_address(signers[1].address))
    with pytest.raises(UnexpectedContract, match=f"app factory {backdoor.address} is not the"):
        register_app(caller, compose_hashes=[COMPOSE])
    assert w3.eth.get_transaction_count(Web3.to_checksum_address(signers[1].address)) == sent


def test_an_app_owned_by_someone_else_is_refused_after_deployment(
    w3: Web3,
    governance: GovernanceClient,
    signers: list[Transactor],
    test_contracts: dict[str, Compiled],
) -> None:
    """What the checks after deployment catch: the backdoored factory's app is AppAuth code,
    named as the caller's in AppDeployed, registered, but owned by the keeper."""
    keeper = signers[9].address
    backdoor = deploy_test_contract(
        signers[0], test_contracts["BackdooredFactory"], governance.address, keeper
    )
    client = AppFactoryClient(w3, backdoor.address, signers[1])
    receipt, app_id = client.send_deploy_app(compose_hashes=[COMPOSE])
    assert client.event_args(receipt, "AppDeployed")[0]["appOwner"] == signers[1].address
    with pytest.raises(UnexpectedContract, match=f"owned by {keeper}, not by the sender"):
        check_new_app(
            governance, app_id, owner=signers[1].address, expected=app_id, block=receipt.block
        )
    with pytest.raises(UnexpectedContract, match="not the app id"):
        check_new_app(
            governance, app_id, owner=keeper, expected=signers[1].address, block=receipt.block
        )
    check_new_app(governance, app_id, owner=keeper, expected=app_id, block=receipt.block)


def test_a_factory_bound_to_another_governance_is_refused(
    governance: GovernanceClient, signers: list[Transactor], deployment: Deployment
) -> None:
    """Our own factory code, but registering apps with another governance."""
    elsewhere, _ = _deploy(signers[0], "AppAuthFactory", deployment.app_factory)
    governance.send_set_app_factory(elsewhere)
    with pytest.raises(UnexpectedContract, match=f"registers apps with {deployment.app_factory}"):
        register_app(governance.with_transactor(signers[1]))


def test_a_controller_that_is_not_appauth_is_refused(
    governance: GovernanceClient, signers: list[Transactor], test_contracts: dict[str, Compiled]
) -> None:
    loose = deploy_test_contract(signers[1], test_contracts["LooseController"])
    receipt = governance.with_transactor(signers[1]).send_register_app(loose.address)
    with pytest.raises(UnexpectedContract, match="does not run the AppAuth this tkms ships"):
        check_new_app(
            governance,
            loose.address,
            owner=signers[1].address,
            expected=loose.address,
            block=receipt.block,
        )
