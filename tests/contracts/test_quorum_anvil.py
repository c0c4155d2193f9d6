"""QuorumProvider against real anvils: the honest chain, and a second anvil forked from it
(`--fork-url`) that lies: an app's compose hash approved only there, or a revoked compose hash
still allowed there because it stopped following the chain (stale). With 2 of 2 the read
fails closed and names the endpoint; with 2 of 3 the honest answer wins and the liar is named.

The third endpoint of the 2-of-3 cases is the honest anvil under a second address
(`localhost` instead of `127.0.0.1`): a real, separate connection to the honest chain.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from web3 import HTTPProvider, Web3

from contracts import (
    Anvil,
    AppAuthClient,
    AppBootInfo,
    AppFactoryClient,
    Divergence,
    GovernanceClient,
    NoQuorum,
    QuorumProvider,
    Transactor,
    anvil_account,
    deploy,
)

COMPOSE = bytes.fromhex("c0" * 32)
EVIL = bytes.fromhex("e0" * 32)
OS_IMAGE = bytes.fromhex("05" * 32)


@dataclass
class Honest:
    anvil: Anvil
    w3: Web3
    governance: str
    app_id: str

    def info(self, compose_hash: bytes) -> AppBootInfo:
        return AppBootInfo(app_id=self.app_id, compose_hash=compose_hash, os_image_hash=OS_IMAGE)

    def app_owner(self, w3: Web3) -> AppAuthClient:
        return AppAuthClient(w3, self.app_id, Transactor(w3, anvil_account(1)))

    def mine(self, blocks: int) -> None:
        self.w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def base() -> Iterator[Honest]:
    with Anvil() as anvil:
        w3 = anvil.web3()
        deployment = deploy(Transactor(w3, anvil_account(0)), allow_simulator=True)
        owner = GovernanceClient(w3, deployment.governance, Transactor(w3, anvil_account(0)))
        owner.send_add_os_image(OS_IMAGE)
        factory = AppFactoryClient(w3, deployment.app_factory, Transactor(w3, anvil_account(1)))
        _, app_id = factory.send_deploy_app(compose_hashes=[COMPOSE], allow_any_device=True)
        yield Honest(anvil, w3, deployment.governance, app_id)


@pytest.fixture
def honest(base: Honest) -> Iterator[Honest]:
    snapshot = base.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    yield base
    base.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]


@pytest.fixture
def fork(honest: Honest) -> Iterator[Anvil]:
    """A second anvil holding the honest chain up to now; from here on it goes its own way."""
    with Anvil(fork_url=honest.anvil.rpc_url) as forked:
        yield forked


def quorum_reader(
    honest: Honest, urls: list[str], k: int
) -> tuple[GovernanceClient, QuorumProvider, list[Divergence]]:
    reports: list[Divergence] = []
    provider = QuorumProvider(
        urls,
        k,
        connect=lambda url: HTTPProvider(url, request_kwargs={"timeout": 10}),
        on_divergence=reports.append,
    )
    return GovernanceClient(Web3(provider), honest.governance), provider, reports


def second_address(honest: Honest) -> str:
    return f"http://localhost:{honest.anvil.port}"


def settle() -> None:
    time.sleep(0.5)  # late answers are compared in the provider's threads


def test_a_fork_that_approves_an_app_only_for_itself_is_refused_and_named(
    honest: Honest, fork: Anvil
) -> None:
    liar_w3 = fork.web3()
    honest.app_owner(liar_w3).send_add_compose_hash(EVIL)  # mined on the fork only
    honest.mine(1)  # the honest chain's block at the same height
    assert GovernanceClient(liar_w3, honest.governance).is_app_allowed(honest.info(EVIL)).allowed
    direct = GovernanceClient(honest.w3, honest.governance)
    assert not direct.is_app_allowed(honest.info(EVIL)).allowed
    head = honest.w3.eth.block_number

    # 2 of 2: no answer at all, and both endpoints are named (which one lies is not known).
    reader, _, reports = quorum_reader(honest, [honest.anvil.rpc_url, fork.rpc_url], 2)
    with pytest.raises(NoQuorum, match=f"the endpoints disagree at block {head}") as caught:
        reader.is_app_allowed(honest.info(EVIL))
    assert caught.value.disagreement is True
    assert fork.rpc_url in str(caught.value) and honest.anvil.rpc_url in str(caught.value)
    assert {r.endpoint for r in reports} == {fork.rpc_url, honest.anvil.rpc_url}

    # 2 of 3: the honest answer, and the fork is the one named.
    urls = [honest.anvil.rpc_url, second_address(honest), fork.rpc_url]
    reader, _, reports = quorum_reader(honest, urls, 2)
    decision = reader.is_app_allowed(honest.info(EVIL))
    assert not decision.allowed
    assert reader.is_app_allowed(honest.info(COMPOSE)).allowed
    settle()
    assert {r.endpoint for r in reports} == {fork.rpc_url}
    assert reports[0].method == "eth_getBlockByNumber" and reports[0].block == head
    assert f"block {head} is hash 0x" in reports[0].detail


def test_a_stale_fork_that_still_allows_a_revoked_compose_hash_is_not_trusted(
    honest: Honest, fork: Anvil
) -> None:
    honest.app_owner(honest.w3).send_remove_compose_hash(COMPOSE)  # revoked after the fork
    honest.mine(5)
    stale = GovernanceClient(fork.web3(), honest.governance)
    assert stale.is_app_allowed(honest.info(COMPOSE)).allowed  # the stale endpoint's answer
    head = honest.w3.eth.block_number
    behind = head - fork.web3().eth.block_number
    assert behind == 6

    reader, _, reports = quorum_reader(honest, [honest.anvil.rpc_url, fork.rpc_url], 2)
    with pytest.raises(NoQuorum, match="fewer than 2 of 2 endpoints are current") as caught:
        reader.is_app_allowed(honest.info(COMPOSE))
    assert caught.value.disagreement is True
    stale_reports = [r for r in reports if r.endpoint == fork.rpc_url]
    assert stale_reports and stale_reports[0].detail.startswith(
        f"stale: its head is {head - behind}, {behind} blocks behind"
    )

    urls = [honest.anvil.rpc_url, second_address(honest), fork.rpc_url]
    reader, provider, reports = quorum_reader(honest, urls, 2)
    assert not reader.is_app_allowed(honest.info(COMPOSE)).allowed
    settle()
    assert [(r.endpoint, r.method) for r in reports] == [(fork.rpc_url, "eth_blockNumber")]
    assert provider.diverged_since(0.0) == [fork.rpc_url]


def test_endpoints_that_agree_answer_like_one(honest: Honest) -> None:
    urls = [honest.anvil.rpc_url, second_address(honest)]
    reader, _, reports = quorum_reader(honest, urls, 2)
    assert reader.is_app_allowed(honest.info(COMPOSE)).allowed
    assert not reader.is_app_allowed(honest.info(EVIL)).allowed
    # A write goes through one endpoint and the quorum reads its effect back.
    owner = AppAuthClient(reader.w3, honest.app_id, Transactor(reader.w3, anvil_account(1)))
    owner.send_add_compose_hash(EVIL)
    assert reader.is_app_allowed(honest.info(EVIL)).allowed
    settle()
    assert reports == []
