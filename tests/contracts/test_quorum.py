"""QuorumProvider with in-process endpoints (unit tests): k of m must agree on the head and on
every read, a liar is outvoted or stops the read and is named, writes go to one endpoint.
The same against real anvils (a fork that lies) is in test_quorum_anvil.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from web3 import Web3
from web3.providers.base import BaseProvider
from web3.types import RPCEndpoint, RPCResponse

from contracts import Divergence, InvalidInput, NoQuorum, QuorumProvider
from contracts._quorum import check_quorum, endpoint_names


class Endpoint(BaseProvider):
    """A scripted JSON-RPC endpoint: a chain of block hashes and answers per method."""

    def __init__(self, head: int = 10, *, fork_at: int | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self.head = head
        self.fork_at = fork_at  # blocks after this one have other hashes (another chain)
        self.delay = delay
        self.answers: dict[str, Any] = {}
        self.down = False
        self.calls: list[tuple[str, list[Any]]] = []
        self._lock = threading.Lock()

    def block(self, number: int) -> dict[str, Any] | None:
        if number > self.head:
            return None
        tag = "f" if self.fork_at is not None and number > self.fork_at else "a"
        return {
            "number": hex(number),
            "hash": "0x" + (tag * 2 + f"{number:062x}"),
            "parentHash": "0x" + f"{number - 1:064x}",
            "timestamp": hex(1000 + number),
            "extraField": f"client-specific {id(self)}",  # not compared
        }

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self._lock:
            self.calls.append((method, list(params)))
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            raise requests.ConnectionError("connection refused")
        result: Any
        if method == "eth_blockNumber":
            result = hex(self.head)
        elif method == "eth_getBlockByNumber":
            result = self.block(int(params[0], 16))
        elif method in self.answers:
            answer = self.answers[method]
            if isinstance(answer, dict) and "error" in answer:
                return {"jsonrpc": "2.0", "id": 1, "error": answer["error"]}
            result = answer(params) if callable(answer) else answer
        else:
            result = f"{method} answered by the honest chain"
        return {"jsonrpc": "2.0", "id": 1, "result": result}


def provider(
    endpoints: list[Endpoint], quorum: int, reports: list[Divergence] | None = None, **kwargs: Any
) -> QuorumProvider:
    urls = [f"http://127.0.0.1:{8545 + i}" for i in range(len(endpoints))]
    by_url = dict(zip(urls, endpoints, strict=True))
    sink: Callable[[Divergence], None] | None = reports.append if reports is not None else None
    return QuorumProvider(urls, quorum, connect=by_url.__getitem__, on_divergence=sink, **kwargs)


def settle() -> None:
    time.sleep(0.3)  # late answers are compared in the pool's threads


def test_two_of_three_outvote_a_liar_and_name_it() -> None:
    honest, also, liar = Endpoint(), Endpoint(), Endpoint()
    liar.answers["eth_call"] = "0x01"  # "allowed"
    honest.answers["eth_call"] = also.answers["eth_call"] = "0x00"
    reports: list[Divergence] = []
    w3 = Web3(provider([honest, also, liar], 2, reports))
    assert w3.provider.make_request(RPCEndpoint("eth_call"), [{}, "0xa"])["result"] == "0x00"
    settle()
    assert [(r.endpoint, r.method, r.block) for r in reports] == [
        ("http://127.0.0.1:8547", "eth_call", None)
    ]
    assert "answered 0x01, the quorum 0x00" in reports[0].detail


def test_a_slow_liar_is_named_after_the_quorum_answered() -> None:
    liar = Endpoint(delay=0.2)
    liar.answers["eth_getCode"] = "0xbad"
    reports: list[Divergence] = []
    quorum = provider([Endpoint(), Endpoint(), liar], 2, reports)
    began = time.monotonic()
    answer = quorum.make_request(RPCEndpoint("eth_getCode"), ["0x" + "11" * 20, "0x5"])
    assert time.monotonic() - began < 0.15  # did not wait for the liar
    assert answer["result"] == "eth_getCode answered by the honest chain"
    settle()
    assert len(reports) == 1 and reports[0].endpoint == "http://127.0.0.1:8547"


def test_two_of_two_that_disagree_fail_closed_and_name_both() -> None:
    honest, liar = Endpoint(), Endpoint()
    liar.answers["eth_call"] = "0x01"
    reports: list[Divergence] = []
    quorum = provider([honest, liar], 2, reports)
    with pytest.raises(NoQuorum, match="the endpoints disagree") as caught:
        quorum.make_request(RPCEndpoint("eth_call"), [{}, "0x9"])
    assert caught.value.disagreement is True
    message = str(caught.value)
    assert "http://127.0.0.1:8545: eth_call answered" in message
    assert "http://127.0.0.1:8546: 0x01" in message
    assert sorted(r.endpoint for r in reports) == ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]


def test_too_few_answers_is_no_quorum_but_not_a_disagreement() -> None:
    up, down = Endpoint(), Endpoint()
    down.down = True
    with pytest.raises(NoQuorum, match="too few endpoints answered") as caught:
        provider([up, down], 2).make_request(RPCEndpoint("eth_chainId"), [])
    assert caught.value.disagreement is False
    assert "no answer (connection refused)" in str(caught.value)
    # One of three down: two still agree.
    answer = provider([up, down, Endpoint()], 2).make_request(RPCEndpoint("eth_chainId"), [])
    assert answer["result"] == "eth_chainId answered by the honest chain"


def test_the_head_is_the_highest_block_k_endpoints_reached_and_agree_on() -> None:
    ahead = Endpoint(head=50, fork_at=10)  # a liar far ahead on its own chain
    reports: list[Divergence] = []
    w3 = Web3(provider([Endpoint(head=12), Endpoint(head=11), ahead], 2, reports))
    assert w3.eth.block_number == 12 - 1  # the 2nd highest: 11; both honest have block 11
    block = w3.eth.get_block("latest")
    assert block["number"] == 11 and bytes(block["hash"]).hex().startswith("aa")
    settle()
    assert {r.endpoint for r in reports} == {"http://127.0.0.1:8547"}
    assert "block 11 is hash 0xff" in reports[0].detail


def test_a_stale_endpoint_is_outvoted_and_named() -> None:
    reports: list[Divergence] = []
    w3 = Web3(provider([Endpoint(head=20), Endpoint(head=20), Endpoint(head=3)], 2, reports))
    assert w3.eth.block_number == 20
    settle()
    assert [(r.endpoint, r.detail) for r in reports] == [
        ("http://127.0.0.1:8547", "stale: its head is 3, 17 blocks behind the quorum's")
    ]


def test_a_stale_endpoint_the_quorum_needs_fails_closed_not_trusted() -> None:
    # 2 of 2, one far behind: its old head is a block both have, but serving it would be
    # serving old state (an app revoked since still allowed).
    reports: list[Divergence] = []
    w3 = Web3(provider([Endpoint(head=20), Endpoint(head=3)], 2, reports))
    with pytest.raises(NoQuorum, match="fewer than 2 of 2 endpoints are current") as caught:
        w3.eth.get_block("latest")
    assert caught.value.disagreement is True
    assert "the agreed head 3 is 17 blocks behind http://127.0.0.1:8545's 20" in str(caught.value)
    details = {r.endpoint: r.detail for r in reports}
    assert details["http://127.0.0.1:8546"] == (
        "stale: its head is 3, 17 blocks behind http://127.0.0.1:8545's"
    )
    assert (
        "reports head 20, which fewer than 2 endpoints reached" in details["http://127.0.0.1:8545"]
    )
    # A block or two behind is normal propagation, not staleness.
    assert Web3(provider([Endpoint(head=20), Endpoint(head=18)], 2)).eth.block_number == 18


def test_a_head_on_another_chain_is_no_quorum() -> None:
    other = Endpoint(head=10, fork_at=5)
    with pytest.raises(NoQuorum, match="disagree at block 10"):
        Web3(provider([Endpoint(head=10), other], 2)).eth.get_block("latest")


def test_reads_at_latest_are_pinned_to_the_agreed_head() -> None:
    endpoints = [Endpoint(head=7), Endpoint(head=9), Endpoint(head=9)]
    quorum = provider(endpoints, 2)
    quorum.make_request(RPCEndpoint("eth_call"), [{"to": "0x0"}, "latest"])
    quorum.make_request(RPCEndpoint("eth_getLogs"), [{"fromBlock": "0x1", "toBlock": "latest"}])
    for endpoint in endpoints:
        calls = dict(endpoint.calls)
        assert calls["eth_call"] == [{"to": "0x0"}, "0x9"]
        assert calls["eth_getLogs"] == [{"fromBlock": "0x1", "toBlock": "0x9"}]


def test_reverts_agree_on_their_data_whatever_the_message() -> None:
    a, b, c = Endpoint(), Endpoint(), Endpoint()
    a.answers["eth_call"] = {"error": {"code": 3, "message": "execution reverted", "data": "0x12"}}
    b.answers["eth_call"] = {"error": {"code": 3, "message": "revert: NotOwner", "data": "0x12"}}
    c.answers["eth_call"] = {"error": {"code": 3, "message": "execution reverted", "data": "0x34"}}
    reports: list[Divergence] = []
    answer = provider([a, b, c], 2, reports).make_request(RPCEndpoint("eth_call"), [{}, "0x1"])
    assert answer["error"]["data"] == "0x12"
    settle()
    assert [r.endpoint for r in reports] == ["http://127.0.0.1:8547"]


def test_writes_go_to_one_endpoint_the_next_if_it_is_down_and_diverged_ones_last() -> None:
    first, second, third = Endpoint(), Endpoint(), Endpoint()
    quorum = provider([first, second, third], 2)
    send = RPCEndpoint("eth_sendRawTransaction")
    quorum.make_request(send, ["0xf8"])
    assert [len([c for c in e.calls if c[0] == send]) for e in (first, second, third)] == [1, 0, 0]
    first.down = True
    quorum.make_request(send, ["0xf8"])
    assert [c[0] for c in second.calls].count(send) == 1
    first.down = False
    second.answers["eth_call"] = "0xbad"  # second diverges: writes move away from it
    quorum.make_request(RPCEndpoint("eth_call"), [{}, "0x2"])
    settle()
    quorum.make_request(send, ["0xf8"])
    assert [c[0] for c in second.calls].count(send) == 1
    assert [c[0] for c in first.calls].count(send) == 2
    for endpoint in (first, second, third):
        endpoint.down = True
    with pytest.raises(NoQuorum, match="no endpoint answered"):
        quorum.make_request(send, ["0xf8"])


def test_methods_outside_both_lists_are_refused() -> None:
    with pytest.raises(NoQuorum, match="evm_mine is neither a read the quorum checks"):
        provider([Endpoint(), Endpoint()], 2).make_request(RPCEndpoint("evm_mine"), [])


def test_reports_of_one_endpoint_are_throttled_and_count_what_they_held_back() -> None:
    now = [0.0]
    liar = Endpoint()
    liar.answers["eth_call"] = "0x01"
    reports: list[Divergence] = []
    quorum = provider(
        [Endpoint(), Endpoint(), liar], 2, reports, report_every=30.0, clock=lambda: now[0]
    )
    for _ in range(5):
        quorum.make_request(RPCEndpoint("eth_call"), [{}, "0x1"])
        settle()
    assert len(reports) == 1
    assert quorum.diverged_since(0.0) == ["http://127.0.0.1:8547"]
    now[0] = 31.0
    quorum.make_request(RPCEndpoint("eth_call"), [{}, "0x1"])
    settle()
    assert [r.suppressed for r in reports] == [0, 4]
    assert quorum.diverged_since(40.0) == []


def test_the_quorum_must_be_a_majority_of_distinct_endpoints() -> None:
    check_quorum(["http://a", "http://b", "http://c"], 2)
    for urls, k in ((["http://a", "http://b"], 1), (["http://a", "http://b", "http://c"], 4)):
        with pytest.raises(InvalidInput, match="rpc_quorum: must be more than half"):
            check_quorum(urls, k)
    with pytest.raises(InvalidInput, match="listed twice"):
        check_quorum(["http://a", "http://a", "http://b"], 2)


def test_endpoint_names_hide_credentials_and_stay_distinct() -> None:
    urls = ["https://eth.example/v3/SECRETKEY", "https://eth.example/v3/OTHERKEY", "http://b:1"]
    names = endpoint_names(urls)
    assert names == ["https://eth.example/***#1", "https://eth.example/***#2", "http://b:1"]
    down = Endpoint()
    down.down = True

    def failing(url: str) -> BaseProvider:
        return down if "SECRET" in url else Endpoint()

    quorum = QuorumProvider(urls[:1] + urls[2:], 2, connect=failing)
    with pytest.raises(NoQuorum) as caught:
        quorum.make_request(RPCEndpoint("eth_chainId"), [])
    assert "SECRETKEY" not in str(caught.value)
