"""A governance owned by OpenZeppelin's TimelockController, on a real anvil.

Ownership moves to the timelock in two steps (`tkms chain transfer-ownership`, then the
timelock accepts); from then on every owner action is a call the CLI prints with `--calldata`
(checked and simulated as the timelock), which the timelock's proposer schedules and, after the
delay, executes. A DKG epoch and an app's approval (its compose hash and OS image) go through
it; the former owner key can do nothing any more.

The timelock is compiled from the npm package `@openzeppelin/contracts` with the project's
compiler (tests/contracts/testsol.py), for tests only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract

import tkms
from contracts import (
    Anvil,
    AppAuthClient,
    AppBootInfo,
    AppFactoryClient,
    Deployment,
    EpochStatus,
    GovernanceClient,
    TransactionFailed,
    Transactor,
)
from tests.contracts.conftest import Poly
from tests.contracts.test_epochs import DIGEST, AsSigner, deal_all, to_confirm
from tests.contracts.testsol import Compiled, compile_npm_contract, deploy_test_contract

DELAY = 3600  # seconds
PROPOSER = 7  # anvil account: the timelock's proposer and executor (a multisig in production)
COMPOSE = b"\x5c" * 32
IMAGE = b"\x1e" * 32
Capture = pytest.CaptureFixture[str]
#: TimelockUnexpectedOperationState(bytes32,bytes32): not ours, so decoded as unknown.
NOT_READY = Web3.keccak(text="TimelockUnexpectedOperationState(bytes32,bytes32)")[:4].hex()


@pytest.fixture(scope="module")
def timelock_code() -> Compiled:
    return compile_npm_contract(
        "@openzeppelin/contracts/governance/TimelockController.sol", "TimelockController"
    )


class Timelock:
    def __init__(self, w3: Web3, contract: Contract, proposer: Transactor) -> None:
        self.w3, self.contract, self.proposer = w3, contract, proposer
        self.salt = 0

    @property
    def address(self) -> str:
        return str(self.contract.address)

    def run(self, call: dict[str, Any]) -> None:
        """Schedule `call` (as printed by `--calldata`), wait out the delay, execute it."""
        self.salt += 1
        target, data = Web3.to_checksum_address(call["to"]), bytes.fromhex(call["data"][2:])
        salt = self.salt.to_bytes(32, "big")
        operation = (target, 0, data, bytes(32), salt)
        self.proposer.send(self.contract.functions.schedule(*operation, DELAY))
        with pytest.raises(TransactionFailed, match=NOT_READY):  # the delay has not passed
            self.proposer.send(self.contract.functions.execute(*operation))
        self.w3.provider.make_request("evm_increaseTime", [DELAY])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        self.proposer.send(self.contract.functions.execute(*operation))


def cli(capsys: Capture, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = tkms.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out if code == 0 else captured.err


def calldata(capsys: Capture, *argv: str) -> dict[str, Any]:
    code, out = cli(capsys, *argv, "--calldata", "--json")
    assert code == 0, out
    return dict(json.loads(out))


def test_an_epoch_and_an_app_approval_through_a_timelock_owner(
    w3: Web3,
    anvil: Anvil,
    deployment: Deployment,
    governance: GovernanceClient,
    as_signer: AsSigner,
    signers: list[Transactor],
    committee: list[str],
    timelock_code: Compiled,
    capsys: Capture,
) -> None:
    proposer = signers[PROPOSER]
    contract = deploy_test_contract(
        signers[0], timelock_code, DELAY, [proposer.address], [proposer.address], "0x" + "00" * 20
    )
    timelock = Timelock(w3, contract, proposer)
    gov = ["--rpc", anvil.rpc_url, "--governance", governance.address]

    # Ownership moves in two steps; the timelock's acceptance goes through its own delay.
    code, out = cli(
        capsys,
        "chain",
        "transfer-ownership",
        *gov,
        "--anvil-account",
        "0",
        "--to",
        timelock.address,
    )
    assert code == 0 and f"{timelock.address} may now accept ownership" in out
    accept = calldata(capsys, "chain", "accept-ownership", *gov)
    assert (accept["from"], accept["function"]) == (timelock.address, "acceptOwnership")
    timelock.run(accept)
    assert governance.get_owner() == timelock.address

    # The former owner's key is refused before anything is sent.
    code, err = cli(
        capsys,
        "chain",
        "propose-epoch",
        *gov,
        "--anvil-account",
        "0",
        "--kind",
        "dkg",
        "--phases",
        "8,8,8,8,8",
    )
    assert code == 1 and f"is not the governance owner ({timelock.address})" in err

    # A DKG proposed through the timelock, then run by the nodes (stand-in data).
    members = ",".join(committee[:3])
    propose = calldata(
        capsys,
        "chain",
        "propose-epoch",
        *gov,
        "--kind",
        "dkg",
        "--members",
        members,
        "--threshold",
        "2",
        "--phases",
        "8,8,8,8,8",
    )
    assert (propose["from"], propose["function"]) == (timelock.address, "proposeEpoch")
    assert governance.get_epoch_count() == 0
    timelock.run(propose)
    info = governance.get_epoch(1)
    assert (info.status, info.members, info.threshold) == (
        EpochStatus.RUNNING,
        tuple(committee[:3]),
        2,
    )
    deal_all(w3, as_signer, info, [2, 3, 4])
    to_confirm(w3, info)
    poly = Poly.make(1, 2)
    for i in (2, 3):
        as_signer(i).send_confirm(1, DIGEST, poly.points, poly.pk2)
    assert governance.get_epoch(1).status is EpochStatus.ACTIVE

    # An app owned by the timelock: deployed through it, approved through it.
    factory = AppFactoryClient(w3, deployment.app_factory)
    salt = b"\x42" * 32
    deploy_app = factory.contract.encode_abi("deployAndRegister", args=[salt, [], [], True, False])
    timelock.run({"to": deployment.app_factory, "data": deploy_app})
    app_id = factory.predict_app_id(timelock.address, salt)
    app = AppAuthClient(w3, app_id)
    assert app.get_owner() == timelock.address
    boot = AppBootInfo(app_id=app_id, compose_hash=COMPOSE, os_image_hash=IMAGE)
    assert not governance.is_app_allowed(boot).allowed
    compose = calldata(
        capsys,
        "app",
        "allow-compose",
        "--rpc",
        anvil.rpc_url,
        "--app-id",
        app_id,
        "--compose-hash",
        "0x" + COMPOSE.hex(),
    )
    assert (compose["to"], compose["from"]) == (app_id, timelock.address)
    timelock.run(compose)
    image = calldata(capsys, "chain", "allow-os-image", *gov, "--os-image-hash", "0x" + IMAGE.hex())
    timelock.run(image)
    decision = governance.is_app_allowed(boot)
    assert (decision.allowed, decision.reason) == (True, "")

    # Every app owner setting goes through the timelock too; the CLI checks each call as the
    # timelock before printing it, and refuses one that would revert, naming why.
    app_args = ["--rpc", anvil.rpc_url, "--app-id", app_id]
    env_signer = "0x" + "5e" * 20
    for argv in (
        ["set-env-signer", "--signer", env_signer],
        ["set-env-version", "--version", "3"],
        ["set-live-revocation", "--blocks", "40"],
        ["set-dstack-kms", "--enable"],
    ):
        call = calldata(capsys, "app", argv[0], *app_args, *argv[1:])
        assert (call["to"], call["from"]) == (app_id, timelock.address)
        timelock.run(call)
    assert (app.get_env_signer(), app.get_env_version()) == (
        Web3.to_checksum_address(env_signer),
        3,
    )
    assert app.get_live_revocation_blocks() == 40
    assert app.get_dstack_kms_release() is True
    code, err = cli(
        capsys, "app", "set-env-version", *app_args, "--version", "3", "--calldata", "--json"
    )
    assert code == 1 and "would revert" in err and "EnvVersionNotIncreasing" in err, err
    code, err = cli(
        capsys, "app", "set-env-version", *app_args, "--version", str(2**64), "--calldata"
    )
    assert code != 0 and "version: must be 1..2**64-1" in err
    assert app.get_env_version() == 3
