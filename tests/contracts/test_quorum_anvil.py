"""QuorumProvider against real anvils: the honest chain, and a second anvil forked from it
(`--fork-url`) that lies: an app's compose hash approved only there, or a revoked compose hash
still allowed there because it stopped following the chain (stale). With 2 of 2 the read
fails closed and names the endpoints; with 2 of 3 the honest answer wins and the liar is named.

The third endpoint of the 2-of-3 cases is the honest anvil under a second address
(`localhost` instead of `127.0.0.1`): a real, separate connection to the honest chain.
"""

from __future__ import annotations

import time

import pytest
from web3 import HTTPProvider, Web3

from contracts import (
    AppAuthClient,
    Divergence,
    GovernanceClient,
    NoQuorum,
    QuorumProvider,
    Transactor,
    anvil_account,
)
from tests.contracts.lying_chain import COMPOSE, EVIL, Honest


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


def settle() -> None:
    time.sleep(0.5)  # late answers are compared in the provider's threads


def test_a_fork_that_approves_an_app_only_for_itself_is_refused_and_named(
    honest: Honest,
) -> None:
    with honest.approving_fork() as fork:
        liar = GovernanceClient(fork.web3(), honest.governance)
        assert liar.is_app_allowed(honest.info(EVIL)).allowed  # the lie is real
        direct = GovernanceClient(honest.w3, honest.governance)
        assert not direct.is_app_allowed(honest.info(EVIL)).allowed
        head = honest.w3.eth.block_number

        # 2 of 2: no answer at all, and both are named (which one lies cannot be known).
        reader, _, reports = quorum_reader(honest, [honest.anvil.rpc_url, fork.rpc_url], 2)
        with pytest.raises(NoQuorum, match=f"the endpoints disagree at block {head}") as caught:
            reader.is_app_allowed(honest.info(EVIL))
        assert caught.value.disagreement is True
        assert fork.rpc_url in str(caught.value) and honest.anvil.rpc_url in str(caught.value)
        assert {r.endpoint for r in reports} == {fork.rpc_url, honest.anvil.rpc_url}

        # 2 of 3: the honest answer, and the fork is the one named.
        urls = [honest.anvil.rpc_url, honest.second_url, fork.rpc_url]
        reader, _, reports = quorum_reader(honest, urls, 2)
        assert not reader.is_app_allowed(honest.info(EVIL)).allowed
        assert reader.is_app_allowed(honest.info(COMPOSE)).allowed
        settle()
        assert {r.endpoint for r in reports} == {fork.rpc_url}
        assert reports[0].method == "eth_getBlockByNumber" and reports[0].block == head
        assert f"block {head} is hash 0x" in reports[0].detail


def test_a_stale_fork_that_still_allows_a_revoked_compose_hash_is_not_trusted(
    honest: Honest,
) -> None:
    with honest.stale_fork(behind=6) as fork:
        stale = GovernanceClient(fork.web3(), honest.governance)
        assert stale.is_app_allowed(honest.info(COMPOSE)).allowed  # the stale answer
        head = honest.w3.eth.block_number
        assert head - fork.web3().eth.block_number == 6

        reader, _, reports = quorum_reader(honest, [honest.anvil.rpc_url, fork.rpc_url], 2)
        with pytest.raises(NoQuorum, match="fewer than 2 of 2 endpoints are current") as caught:
            reader.is_app_allowed(honest.info(COMPOSE))
        assert caught.value.disagreement is True
        stale_reports = [r for r in reports if r.endpoint == fork.rpc_url]
        assert stale_reports and stale_reports[0].detail.startswith(
            f"stale: its head is {head - 6}, 6 blocks behind"
        )

        urls = [honest.anvil.rpc_url, honest.second_url, fork.rpc_url]
        reader, provider, reports = quorum_reader(honest, urls, 2)
        assert not reader.is_app_allowed(honest.info(COMPOSE)).allowed
        settle()
        assert [(r.endpoint, r.method) for r in reports] == [(fork.rpc_url, "eth_blockNumber")]
        assert provider.diverged_since(0.0) == [fork.rpc_url]


def test_endpoints_that_agree_answer_like_one(honest: Honest) -> None:
    reader, _, reports = quorum_reader(honest, [honest.anvil.rpc_url, honest.second_url], 2)
    assert reader.is_app_allowed(honest.info(COMPOSE)).allowed
    assert not reader.is_app_allowed(honest.info(EVIL)).allowed
    # A write goes through one endpoint and the quorum reads its effect back.
    owner = AppAuthClient(reader.w3, honest.app_id, Transactor(reader.w3, anvil_account(1)))
    owner.send_add_compose_hash(EVIL)
    assert reader.is_app_allowed(honest.info(EVIL)).allowed
    settle()
    assert reports == []
