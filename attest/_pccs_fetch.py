"""Child process that fetches DCAP collateral from a PCCS with dcap-qvl's own client.

dcap-qvl's fetcher runs on a Rust tokio runtime whose worker threads outlive the call; at
interpreter exit they can touch a half-finalized interpreter, and under load about one exit
in twenty died with SIGSEGV after all its work was done. Running the fetch in a short-lived
child that leaves with ``os._exit`` keeps that runtime out of every tkms process, at the cost
of one process start per cache miss (collateral is cached for its whole validity window).

Not imported by the package (`attest._collateral.fetch_in_child` starts it).
Protocol: ``python -m attest._pccs_fetch <pccs_url>`` with the raw quote on stdin;
exit 0 with dcap-qvl's QuoteCollateralV3 JSON on stdout, or exit 1 with the error on stderr.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _child(pccs_url: str) -> int:
    import asyncio

    import dcap_qvl

    raw_quote = sys.stdin.buffer.read()

    async def fetch() -> Any:
        # dcap-qvl's future must be created inside a running event loop
        return await dcap_qvl.get_collateral(pccs_url, raw_quote)

    try:
        collateral = asyncio.run(fetch())
    except (ValueError, RuntimeError, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(collateral.to_json())
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m attest._pccs_fetch <pccs_url> < quote\n")
        os._exit(2)
    code = _child(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip finalization: the tokio workers are still alive (see above)
