"""Reading the chain through k of m RPC endpoints, so one lying or stale endpoint is outvoted
or stops the read, and is named.

    provider = QuorumProvider(["https://a.example", "https://b.example", "https://c.example"], 2)
    governance = GovernanceClient(Web3(provider), address)   # every read now needs 2 of 3

The head is the highest block at least k endpoints have reached (the k-th highest of their
block numbers), and k of them must return the same block there (hash, parent, state root,
timestamp, ...). A read at the tag `latest` (or `pending`) is pinned to that agreed head
first; a read at a number is asked as it is. Every read goes to all endpoints at once and
returns as soon as k answers agree (answers compared on what consensus fixes: a block's header
fields, a log's address, topics, data and position, a revert's data, any other result whole);
the answers that arrive later are still compared, so a slow liar is named too.

Fewer than k agreeing answers is `NoQuorum`, raised, never a result: `disagreement` says whether
the endpoints answered differently or too few answered at all. Every endpoint that answered
otherwise than the agreed answer, or that has no block at the agreed head, is reported to
`on_divergence` (endpoint with its URL redacted, method, block, what differed); a report per
endpoint at most every `report_every` seconds, with the count of the ones held back.

Writes are not voted on: the transaction path (sending, its receipt, nonce, gas and fees) goes
to one endpoint at a time, the first in order that answers, skipping endpoints that diverged
recently. A censoring endpoint can only delay a transaction, which the quorum's view then
lacks; the data a node reads back from a transaction is checked against the hash the contract
stores (`_calldata`). Methods outside both lists are refused rather than guessed.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Final, cast

from web3.providers.base import BaseProvider, JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from contracts._rpc_answers import HEAD_TAGS, answer_key, names_head, pinned, summary
from contracts._rpcurl import redact_in, redact_url
from contracts.errors import InvalidInput, NoQuorum

#: Reads every endpoint must answer alike (k of m).
QUORUM_READS: Final = frozenset(
    {
        "eth_chainId",
        "net_version",
        "eth_blockNumber",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_call",
        "eth_getLogs",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getBalance",
    }
)
#: The transaction path: one endpoint at a time (module docstring).
ONE_ENDPOINT: Final = frozenset(
    {
        "eth_sendRawTransaction",
        "eth_getTransactionReceipt",
        "eth_getTransactionByHash",
        "eth_getTransactionCount",
        "eth_estimateGas",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_blobBaseFee",
        "web3_clientVersion",
    }
)


@dataclass(frozen=True, slots=True)
class Divergence:
    """One endpoint answered otherwise than the quorum (or could not answer at its head)."""

    endpoint: str  # URL redacted, see `contracts._rpcurl`
    method: str
    block: int | None  # the block the read was pinned to, if any
    detail: str
    suppressed: int = 0  # reports of this endpoint held back since its last one


@dataclass(slots=True)
class _Endpoint:
    name: str
    url: str
    provider: BaseProvider
    last_divergence: float | None = None
    last_report: float | None = None
    held_back: int = 0


@dataclass(frozen=True, slots=True)
class _Answer:
    endpoint: _Endpoint
    response: RPCResponse | None  # None: the endpoint did not answer
    key: str  # what is compared; "" when there is no answer
    failure: str = ""


@dataclass(slots=True)
class _Tally:
    groups: dict[str, list[_Answer]] = field(default_factory=dict)
    failed: list[_Answer] = field(default_factory=list)

    def add(self, answer: _Answer) -> list[_Answer]:
        if answer.response is None:
            self.failed.append(answer)
            return []
        group = self.groups.setdefault(answer.key, [])
        group.append(answer)
        return group


def endpoint_names(urls: Sequence[str]) -> list[str]:
    """Redacted names, told apart by their position when two redact alike."""
    names = [redact_url(url) for url in urls]
    return [f"{name}#{i + 1}" if names.count(name) > 1 else name for i, name in enumerate(names)]


def check_quorum(urls: Sequence[str], quorum: int) -> None:
    """Raise InvalidInput unless `quorum` of `urls` is a majority of distinct endpoints."""
    if not urls:
        raise InvalidInput("rpc_urls", "at least one endpoint is needed")
    if len(set(urls)) != len(urls):
        raise InvalidInput("rpc_urls", "an endpoint is listed twice (it would vote twice)")
    if not len(urls) // 2 < quorum <= len(urls):
        raise InvalidInput(
            "rpc_quorum",
            f"must be more than half of the {len(urls)} endpoints and at most all of them, "
            f"got {quorum} (two groups of {quorum} could otherwise both agree)",
        )


class QuorumProvider(JSONBaseProvider):
    """A web3 provider over `urls` that needs `quorum` of them to agree (module docstring)."""

    def __init__(
        self,
        urls: Sequence[str],
        quorum: int,
        *,
        connect: Callable[[str], BaseProvider],
        on_divergence: Callable[[Divergence], None] | None = None,
        head_grace: float = 0.2,
        stale_blocks: int = 2,
        report_every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        check_quorum(urls, quorum)
        self.quorum = quorum
        self._endpoints = [
            _Endpoint(name, url, connect(url))
            for name, url in zip(endpoint_names(urls), urls, strict=True)
        ]
        self._on_divergence = on_divergence
        self._head_grace = head_grace
        self._stale_blocks = stale_blocks
        self._report_every = report_every
        self._clock = clock
        self._lock = threading.Lock()
        self._writer = 0
        self._pool = ThreadPoolExecutor(
            max_workers=max(8, 4 * len(urls)), thread_name_prefix="rpc-quorum"
        )

    @property
    def endpoints(self) -> list[str]:
        """The endpoints' names (URLs redacted), in configured order."""
        return [e.name for e in self._endpoints]

    def diverged_since(self, since: float) -> list[str]:
        """Endpoints that diverged at or after `since` (on this provider's clock)."""
        with self._lock:
            return [
                e.name
                for e in self._endpoints
                if e.last_divergence is not None and e.last_divergence >= since
            ]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            self._head()
        except (NoQuorum, OSError):
            if show_traceback:
                raise
            return False
        return True

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        params = list(params or [])
        if method in ONE_ENDPOINT:
            return self._one(method, params)
        if method not in QUORUM_READS:
            raise NoQuorum(method, f"{method} is neither a read the quorum checks nor a write")
        if method == "eth_blockNumber":
            head = self._head()
            return cast(RPCResponse, {"jsonrpc": "2.0", "id": 0, "result": head["number"]})
        if method == "eth_getBlockByNumber" and params and params[0] in HEAD_TAGS:
            head = self._head(full=bool(params[1]) if len(params) > 1 else False)
            return cast(RPCResponse, {"jsonrpc": "2.0", "id": 0, "result": head})
        block = None
        if names_head(params):
            block = int(self._head()["number"], 16)
            params = pinned(params, hex(block))
        return self._agreed(method, params, block)

    # -- reads -------------------------------------------------------------------------

    def _head(self, *, full: bool = False) -> dict[str, Any]:
        """The agreed head block (module docstring); raises NoQuorum.

        The candidates are the k-th highest reported head and, should k endpoints not agree
        there (one ahead on its own chain, another a block behind), each lower reported head.
        An endpoint whose own head is below a candidate is behind, not lying: only when it is
        more than `stale_blocks` behind the agreed head is it reported (stale).

        A stale endpoint must not hold the quorum's head back either: when an endpoint that
        agreed on the head block (so it is on the same chain) reports a head more than
        `stale_blocks` above it, fewer than k endpoints are current. That is NoQuorum (a
        disagreement), and the endpoints behind are reported as stale and the one ahead as
        unconfirmed: which of them is wrong only a further endpoint could tell.
        """
        numbers = self._block_numbers()
        if len(numbers) < self.quorum:
            raise NoQuorum(
                "eth_blockNumber",
                f"only {len(numbers)} of {len(self._endpoints)} endpoints answered, "
                f"{self.quorum} needed",
                disagreement=False,
            )
        ranked = sorted(numbers.values(), reverse=True)
        candidates = sorted(set(ranked[self.quorum - 1 :]), reverse=True)
        for i, head in enumerate(candidates):
            behind = frozenset(name for name, number in numbers.items() if number < head)
            try:
                response, agreeing = self._agreed_by(
                    "eth_getBlockByNumber",
                    [hex(head), full],
                    head,
                    behind=behind,
                    last_try=i == len(candidates) - 1,
                )
            except NoQuorum:
                if i == len(candidates) - 1:
                    raise
                continue
            block = response.get("result")
            if not isinstance(block, dict):
                raise NoQuorum(
                    "eth_getBlockByNumber", f"the agreed answer for block {head} is empty"
                )
            self._check_current(head, {name: numbers[name] for name in agreeing})
            for endpoint in self._endpoints:
                number = numbers.get(endpoint.name)
                if number is not None and head - number > self._stale_blocks:
                    self._report(
                        endpoint,
                        "eth_blockNumber",
                        head,
                        f"stale: its head is {number}, {head - number} blocks behind the quorum's",
                    )
            return block
        raise AssertionError("unreachable: candidates are never empty")

    def _check_current(self, head: int, same_chain: dict[str, int]) -> None:
        """Raise NoQuorum when an endpoint on the agreed chain is more than `stale_blocks`
        ahead of the agreed head: the quorum's view would be stale (`_head`)."""
        top = max(same_chain.values(), default=head)
        if top - head <= self._stale_blocks:
            return
        leader = next(name for name, number in same_chain.items() if number == top)
        heads = "; ".join(
            f"{e.name}: head {same_chain.get(e.name, '?')}"
            for e in self._endpoints
            if e.name in same_chain
        )
        for endpoint in self._endpoints:
            number = same_chain.get(endpoint.name)
            if number is None:
                continue
            if number == top:
                detail = f"reports head {top}, which fewer than {self.quorum} endpoints reached"
            elif top - number > self._stale_blocks:
                detail = f"stale: its head is {number}, {top - number} blocks behind {leader}'s"
            else:
                continue
            self._report(endpoint, "eth_blockNumber", head, detail)
        raise NoQuorum(
            "eth_blockNumber",
            f"fewer than {self.quorum} of {len(self._endpoints)} endpoints are current: the "
            f"agreed head {head} is {top - head} blocks behind {leader}'s {top} on the same "
            f"chain (stale endpoints, more than {self._stale_blocks} blocks behind): {heads}",
        )

    def _block_numbers(self) -> dict[str, int]:
        """Each answering endpoint's head number: all answers, or k and a short grace."""
        futures = {
            self._pool.submit(self._ask, e, RPCEndpoint("eth_blockNumber"), []): e
            for e in self._endpoints
        }
        numbers: dict[str, int] = {}
        pending = set(futures)
        deadline: float | None = None
        while pending:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            if not done:
                break
            for future in done:
                answer = future.result()
                result = answer.response.get("result") if answer.response else None
                if isinstance(result, str):
                    try:
                        numbers[answer.endpoint.name] = int(result, 16)
                    except ValueError:
                        continue
            if deadline is None and len(numbers) >= self.quorum:
                deadline = time.monotonic() + self._head_grace
        return numbers

    def _agreed(self, method: str, params: list[Any], block: int | None) -> RPCResponse:
        """The answer `quorum` endpoints agree on; the others are reported as they arrive."""
        return self._agreed_by(method, params, block)[0]

    def _agreed_by(
        self,
        method: str,
        params: list[Any],
        block: int | None,
        *,
        behind: frozenset[str] = frozenset(),
        last_try: bool = True,
    ) -> tuple[RPCResponse, list[str]]:
        """`_agreed`, and the endpoints that gave the answer by the time it was agreed.
        `behind`: endpoints whose empty answer is expected (their head is lower). Without
        `last_try`, a failure is not reported (the caller tries another block)."""
        endpoint = RPCEndpoint(method)
        futures = [self._pool.submit(self._ask, e, endpoint, params) for e in self._endpoints]
        tally = _Tally()
        pending: set[Future[_Answer]] = set(futures)
        agreed: _Answer | None = None
        while pending and agreed is None:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                group = tally.add(future.result())
                if agreed is None and len(group) >= self.quorum:
                    agreed = group[0]
        if agreed is None or agreed.response is None:
            raise self._no_quorum(method, block, tally, report=last_try)
        for key, answers in tally.groups.items():
            if key != agreed.key:
                for answer in answers:
                    self._diverged(answer, agreed, method, block, behind)
        compare = functools.partial(
            self._compare_late, agreed=agreed, method=method, block=block, behind=behind
        )
        for late in pending:
            late.add_done_callback(compare)
        return agreed.response, [a.endpoint.name for a in tally.groups[agreed.key]]

    def _compare_late(
        self,
        future: Future[_Answer],
        agreed: _Answer,
        method: str,
        block: int | None,
        behind: frozenset[str],
    ) -> None:
        if future.cancelled():
            return
        answer = future.result()
        if answer.response is not None and answer.key != agreed.key:
            self._diverged(answer, agreed, method, block, behind)

    def _ask(self, endpoint: _Endpoint, method: RPCEndpoint, params: list[Any]) -> _Answer:
        try:
            response = endpoint.provider.make_request(method, params)
            key = answer_key(method, response)
        except Exception as exc:  # transport errors of any provider, junk: this one is silent
            return _Answer(endpoint, None, "", failure=redact_in(str(exc), endpoint.url))
        return _Answer(endpoint, response, key)

    def _no_quorum(
        self, method: str, block: int | None, tally: _Tally, *, report: bool
    ) -> NoQuorum:
        at = "" if block is None else f" at block {block}"
        answers = [
            f"{a.endpoint.name}: {summary(a.response)}"
            for group in tally.groups.values()
            for a in group
        ]
        answers += [f"{a.endpoint.name}: no answer ({a.failure})" for a in tally.failed]
        disagreement = len(tally.groups) > 1
        if disagreement and report:
            for group in tally.groups.values():
                for answer in group:
                    self._report(answer.endpoint, method, block, "no quorum: " + "; ".join(answers))
        reason = "the endpoints disagree" if disagreement else "too few endpoints answered"
        return NoQuorum(
            method,
            f"{reason}{at} ({self.quorum} of {len(self._endpoints)} needed): " + "; ".join(answers),
            disagreement=disagreement,
        )

    def _diverged(
        self,
        answer: _Answer,
        agreed: _Answer,
        method: str,
        block: int | None,
        behind: frozenset[str],
    ) -> None:
        mine, theirs = summary(answer.response), summary(agreed.response)
        if method == "eth_getBlockByNumber" and answer.response is not None:
            if answer.response.get("result") is None:
                if answer.endpoint.name in behind:
                    return  # behind, not lying: `_head` reports it once it is stale
                detail = f"has no block {block} though its head is past it (another chain?)"
            else:
                detail = f"block {block} is {mine}, the quorum's is {theirs}"
        else:
            detail = f"answered {mine}, the quorum {theirs}"
        self._report(answer.endpoint, method, block, detail)

    def _report(self, endpoint: _Endpoint, method: str, block: int | None, detail: str) -> None:
        now = self._clock()
        with self._lock:
            endpoint.last_divergence = now
            if endpoint.last_report is not None and now - endpoint.last_report < self._report_every:
                endpoint.held_back += 1
                return
            endpoint.last_report = now
            suppressed, endpoint.held_back = endpoint.held_back, 0
        if self._on_divergence is not None:
            self._on_divergence(Divergence(endpoint.name, method, block, detail, suppressed))

    # -- writes ------------------------------------------------------------------------

    def _one(self, method: RPCEndpoint, params: list[Any]) -> RPCResponse:
        """The first endpoint, in order from the last one that answered, that answers;
        endpoints that diverged in the last `report_every` seconds are tried last."""
        with self._lock:
            start = self._writer
            recent = self._clock() - self._report_every
            order = sorted(
                range(len(self._endpoints)),
                key=lambda i: (
                    (self._endpoints[i].last_divergence or -1e18) >= recent,
                    (i - start) % len(self._endpoints),
                ),
            )
        failures = []
        for i in order:
            endpoint = self._endpoints[i]
            try:
                response = endpoint.provider.make_request(method, params)
            except Exception as exc:  # transport errors: try the next endpoint
                failures.append(f"{endpoint.name}: {redact_in(str(exc), endpoint.url)}")
                continue
            with self._lock:
                self._writer = i
            return response
        raise NoQuorum(method, "no endpoint answered: " + "; ".join(failures), disagreement=False)
