"""Deploying a KmsGovernance and its AppAuthFactory."""

from __future__ import annotations

from dataclasses import dataclass

from web3 import Web3

from contracts._artifacts import load_artifact
from contracts._devchain import require_dev_chain
from contracts._governance import GovernanceClient
from contracts._tx import Transactor
from contracts.errors import ChainError

DEFAULT_RETIREMENT_WINDOW = 7200  # blocks; about a day at 12 s blocks


@dataclass(frozen=True)
class Deployment:
    governance: str
    app_factory: str
    block: int
    owner: str


def _deploy(transactor: Transactor, name: str, *args: object) -> tuple[str, int]:
    artifact = load_artifact(name)
    factory = transactor.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = transactor.send(factory.constructor(*args))
    if receipt.contract_address is None:
        raise ChainError(f"deploying {name}: receipt {receipt.tx_hash} has no contract address")
    return Web3.to_checksum_address(receipt.contract_address), receipt.block


def deploy(
    transactor: Transactor,
    *,
    owner: str | None = None,
    allow_simulator: bool = False,
    retirement_window: int = DEFAULT_RETIREMENT_WINDOW,
) -> Deployment:
    """Deploys the governance (owned by `owner`, default the sender) and its app factory.

    The factory is recorded in the governance when the sender is the owner; another owner
    calls `setAppFactory` itself. `allow_simulator` is refused (`InvalidInput`, nothing sent)
    unless the chain is a development chain (`DEV_CHAIN_IDS`).
    """
    if allow_simulator:
        require_dev_chain(int(transactor.w3.eth.chain_id), "allow_simulator")
    owner_address = owner or transactor.address
    governance, block = _deploy(
        transactor, "KmsGovernance", owner_address, allow_simulator, retirement_window
    )
    app_factory, _ = _deploy(transactor, "AppAuthFactory", governance)
    if owner_address == transactor.address:
        GovernanceClient(transactor.w3, governance, transactor).send_set_app_factory(app_factory)
    return Deployment(
        governance=governance, app_factory=app_factory, block=block, owner=owner_address
    )
