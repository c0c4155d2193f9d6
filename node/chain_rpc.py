"""The node's JSON-RPC connection to the chain: short timeouts, at most one retry.

web3's HTTPProvider retries a failed read 5 times by default, timeouts included, so with a
10 s timeout one read of a hung RPC node took about 50 s, and the node noticed nothing for that
long. A node polls every half second and fails closed on a stale view anyway, so a read that
does not answer within `RPC_TIMEOUT` is given up (the next poll asks again); only a
connection that could not be opened is tried once more after a short pause (an RPC node
restarting, a dropped keep-alive connection). Sending a transaction is never retried here
(its caller decides: a retried send could be a second transaction).
"""

from __future__ import annotations

from typing import Final

import requests
from web3 import HTTPProvider, Web3
from web3.providers.rpc.utils import ExceptionRetryConfiguration

__all__ = ["RPC_ATTEMPTS", "RPC_CONNECT_TIMEOUT", "RPC_TIMEOUT", "chain_web3"]

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
    retry = ExceptionRetryConfiguration(
        # ConnectTimeout is a ConnectionError too; ReadTimeout (a hung RPC) is not retried.
        errors=(requests.ConnectionError,),
        retries=attempts,
        backoff_factor=0.1,
    )
    provider = HTTPProvider(
        url,
        request_kwargs={"timeout": (connect_timeout, timeout)},
        exception_retry_configuration=retry,
    )
    return Web3(provider)
