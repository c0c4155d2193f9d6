"""The node's JSON-RPC connection to the chain: short timeouts, at most one retry.

web3's HTTPProvider retries a failed read 5 times by default, timeouts included, so with a
10 s timeout one read of a hung RPC node took about 50 s, and the node noticed nothing for that
long. A node polls every half second and fails closed on a stale view anyway, so a read that
does not answer within `RPC_TIMEOUT` is given up (the next poll asks again); only a
connection that could not be opened is tried once more after a short pause (an RPC node
restarting, a dropped keep-alive connection). Sending a transaction is never retried here
(its caller decides: a retried send could be a second transaction).

With several endpoints (`[chain] rpc_urls`, `rpc_quorum`), each gets these settings and
`contracts.QuorumProvider` needs k of them to agree on the head and on every read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import requests
from web3 import HTTPProvider, Web3
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from contracts import Divergence, QuorumProvider

__all__ = [
    "RPC_ATTEMPTS",
    "RPC_CONNECT_TIMEOUT",
    "RPC_TIMEOUT",
    "chain_provider",
    "chain_web3",
    "quorum_web3",
]

#: Seconds an answer to one request may take.
RPC_TIMEOUT: Final = 2.0
#: Seconds opening the TCP connection may take.
RPC_CONNECT_TIMEOUT: Final = 1.0
#: Attempts per read whose connection could not be opened (1 + one retry).
RPC_ATTEMPTS: Final = 2


def chain_web3(
    url: str,
    *,
    timeout: float = RPC_TIMEOUT,
    connect_timeout: float = RPC_CONNECT_TIMEOUT,
    attempts: int = RPC_ATTEMPTS,
) -> Web3:
    """A Web3 client of `url` with the node's timeouts and retries (module docstring)."""
    return Web3(
        chain_provider(url, timeout=timeout, connect_timeout=connect_timeout, attempts=attempts)
    )


def chain_provider(
    url: str,
    *,
    timeout: float = RPC_TIMEOUT,
    connect_timeout: float = RPC_CONNECT_TIMEOUT,
    attempts: int = RPC_ATTEMPTS,
) -> HTTPProvider:
    """The HTTP provider of `chain_web3`."""
    retry = ExceptionRetryConfiguration(
        # ConnectTimeout is a ConnectionError too; ReadTimeout (a hung RPC) is not retried.
        errors=(requests.ConnectionError,),
        retries=attempts,
        backoff_factor=0.1,
    )
    return HTTPProvider(
        url,
        request_kwargs={"timeout": (connect_timeout, timeout)},
        exception_retry_configuration=retry,
    )


def quorum_web3(
    urls: Sequence[str],
    quorum: int,
    on_divergence: Callable[[Divergence], None],
    *,
    max_lag_blocks: int = 2,
) -> tuple[Web3, QuorumProvider]:
    """A Web3 client that needs `quorum` of `urls` to agree, each with `chain_provider`'s
    timeouts; the provider too, for the health of its endpoints. An endpoint more than
    `max_lag_blocks` behind is stale (`contracts._quorum`)."""
    provider = QuorumProvider(
        urls,
        quorum,
        connect=lambda url: chain_provider(url),
        on_divergence=on_divergence,
        stale_blocks=max_lag_blocks,
    )
    return Web3(provider), provider
