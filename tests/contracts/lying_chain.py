"""An honest anvil with governance and one app, and a second anvil forked from it that lies:
it approves a compose hash only for itself, or it stops following the chain (stale) while the
honest chain revokes one. Used by the RPC quorum tests (contracts and node)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from web3 import Web3

from contracts import (
    Anvil,
    AppAuthClient,
    AppBootInfo,
    AppFactoryClient,
    GovernanceClient,
    Transactor,
    anvil_account,
    deploy,
)

COMPOSE = bytes.fromhex("c0" * 32)  # approved on the honest chain
EVIL = bytes.fromhex("e0" * 32)  # approved by the lying fork only
OS_IMAGE = bytes.fromhex("05" * 32)


@dataclass
class Honest:
    anvil: Anvil
    w3: Web3
    governance: str
    app_id: str

    @property
    def second_url(self) -> str:
        """The same anvil under another address: a separate honest endpoint."""
        return f"http://localhost:{self.anvil.port}"

    def info(self, compose_hash: bytes) -> AppBootInfo:
        return AppBootInfo(app_id=self.app_id, compose_hash=compose_hash, os_image_hash=OS_IMAGE)

    def app_owner(self, w3: Web3) -> AppAuthClient:
        return AppAuthClient(w3, self.app_id, Transactor(w3, anvil_account(1)))

    def mine(self, blocks: int) -> None:
        self.w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]

    @contextmanager
    def snapshot(self) -> Iterator[Honest]:
        snapshot = self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        try:
            yield self
        finally:
            self.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]

    @contextmanager
    def approving_fork(self) -> Iterator[Anvil]:
        """A fork on which EVIL is approved, one block ahead of the fork point as the honest
        chain is (with another block): the two heads differ in hash."""
        with Anvil(fork_url=self.anvil.rpc_url) as fork:
            self.app_owner(fork.web3()).send_add_compose_hash(EVIL)
            self.mine(1)
            yield fork

    @contextmanager
    def stale_fork(self, behind: int = 6) -> Iterator[Anvil]:
        """A fork that stopped `behind` blocks ago; the honest chain revoked COMPOSE since."""
        with Anvil(fork_url=self.anvil.rpc_url) as fork:
            self.app_owner(self.w3).send_remove_compose_hash(COMPOSE)
            self.mine(behind - 1)
            yield fork


@contextmanager
def honest_chain() -> Iterator[Honest]:
    with Anvil() as anvil:
        w3 = anvil.web3()
        deployment = deploy(Transactor(w3, anvil_account(0)), allow_simulator=True)
        owner = GovernanceClient(w3, deployment.governance, Transactor(w3, anvil_account(0)))
        owner.send_add_os_image(OS_IMAGE)
        factory = AppFactoryClient(w3, deployment.app_factory, Transactor(w3, anvil_account(1)))
        _, app_id = factory.send_deploy_app(compose_hashes=[COMPOSE], allow_any_device=True)
        yield Honest(anvil, w3, deployment.governance, app_id)
