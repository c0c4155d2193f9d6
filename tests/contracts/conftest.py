"""Fixtures: one real anvil per test process (xdist worker), one deployment per process.

The deployment (accounts 2-6 registered and approved as nodes) is built once; every test runs
between an anvil snapshot and a revert, so tests see a fresh chain without redeploying.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from web3 import Web3

from contracts import (
    Anvil,
    AppFactoryClient,
    Deployment,
    GovernanceClient,
    Transactor,
    anvil_account,
    deploy,
)
from tests.contracts.testsol import Compiled, compile_test_contracts

PHASES = (8, 8, 8, 8, 8)  # blocks of Keys, Deal, Complain, Justify, Confirm in epoch tests
NODE_ACCOUNTS = (2, 3, 4, 5, 6)  # registered and approved in the base deployment
RETIREMENT_WINDOW = 5


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    with Anvil() as chain:
        yield chain


@pytest.fixture(scope="session")
def w3(anvil: Anvil) -> Web3:
    return anvil.web3()


@pytest.fixture(scope="session")
def signers(w3: Web3) -> list[Transactor]:
    """Transactors for anvil accounts 0-9; 0 deploys and owns."""
    return [Transactor(w3, anvil_account(i)) for i in range(10)]


@pytest.fixture(scope="session")
def base_deployment(w3: Web3, signers: list[Transactor]) -> Deployment:
    deployment = deploy(signers[0], allow_simulator=False, retirement_window=RETIREMENT_WINDOW)
    owner = GovernanceClient(w3, deployment.governance, signers[0])
    for i in NODE_ACCOUNTS:
        owner.send_allow_node_registration(signers[i].address)
        register_node(GovernanceClient(w3, deployment.governance, signers[i]), i)
        owner.send_approve_node(
            signers[i].address, owner.get_node(signers[i].address).registration_hash
        )
    return deployment


@pytest.fixture
def deployment(w3: Web3, base_deployment: Deployment) -> Iterator[Deployment]:
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    yield base_deployment
    w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]


@pytest.fixture
def governance(w3: Web3, deployment: Deployment, signers: list[Transactor]) -> GovernanceClient:
    return GovernanceClient(w3, deployment.governance, signers[0])


@pytest.fixture
def as_signer(
    governance: GovernanceClient, signers: list[Transactor]
) -> Callable[[int], GovernanceClient]:
    """The governance client signing as anvil account `i`."""
    clients: dict[int, GovernanceClient] = {}

    def client(i: int) -> GovernanceClient:
        if i not in clients:
            clients[i] = governance.with_transactor(signers[i])
        return clients[i]

    return client


@pytest.fixture
def committee(signers: list[Transactor], deployment: Deployment) -> list[str]:
    """Addresses of the approved nodes (accounts 2-6)."""
    return [signers[i].address for i in NODE_ACCOUNTS]


@pytest.fixture
def factory(w3: Web3, deployment: Deployment, signers: list[Transactor]) -> AppFactoryClient:
    """The app factory, used by account 1 (the app owner in these tests)."""
    return AppFactoryClient(w3, deployment.app_factory, signers[1])


def register_node(node: GovernanceClient, i: int, endpoint: str | None = None) -> None:
    assert node.transactor is not None
    node.send_register_node(
        operator=node.transactor.address,
        endpoint=endpoint or f"127.0.0.1:{7000 + i}",
        tls_key_hash=bytes([i]) * 32,
        deal_key=bytes([i]) * 1216,
        evidence_hash=bytes([0x40 + i]) * 32,
    )


def mine(w3: Web3, blocks: int) -> None:
    w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]


def mine_until(w3: Web3, block: int) -> None:
    """Mines until the latest block is `block` (gas estimates run at the latest block)."""
    missing = block - w3.eth.block_number
    if missing > 0:
        mine(w3, missing)


@dataclass(frozen=True)
class Poly:
    """Stand-in group data: the contract stores bytes and never checks curve math."""

    points: tuple[bytes, ...]
    pk2: bytes

    @staticmethod
    def make(seed: int, threshold: int, pk1: bytes | None = None) -> Poly:
        points = [bytes([seed, j]) * 24 for j in range(threshold)]
        if pk1 is not None:
            points[0] = pk1
        return Poly(tuple(points), bytes([seed]) * 96)


@pytest.fixture(scope="session")
def test_contracts() -> dict[str, Compiled]:
    """The test-only contracts of tests/contracts/sol, compiled once per session."""
    return compile_test_contracts()
