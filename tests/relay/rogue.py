"""A rogue relay for tests (run by .venv-relay's python): it believes and forwards anything,
and publishes the envelopes given on its command line once its mesh has formed.

    python -m tests.relay.rogue FINGERPRINT LISTEN PEER manifest:HEX health:HEX ...
"""

from __future__ import annotations

import json
import sys
from functools import partial
from typing import Any

import trio

from relay.gossip import Relay, run_relay
from relay.store import ManifestStore, Verdict


class Credulous(ManifestStore):
    def offer(self, data: bytes) -> Verdict:
        return Verdict(True, "current")

    def offer_health(self, data: bytes, now_ms: int) -> Verdict:
        return Verdict(True, "health")

    def offer_revocation(self, data: bytes) -> Verdict:
        return Verdict(True, "current")


def emit(event: dict[str, Any]) -> None:
    print(json.dumps(event, sort_keys=True), flush=True)


async def serve(items: list[str], relay: Relay) -> None:
    await trio.sleep(3.0)  # connected, and grafted by a heartbeat or two
    for item in items:
        kind, _, payload = item.partition(":")
        data = bytes.fromhex(payload)
        if kind == "manifest":
            await relay.publish(data)
        elif kind == "health":
            await relay.publish_health(data)
        else:
            await relay.publish_revocation(data)
        emit({"event": "published", "kind": kind})
    await trio.sleep(2.0)


def main() -> None:
    fingerprint, listen, peer, *items = sys.argv[1:]
    trio.run(
        partial(
            run_relay,
            store=Credulous(bytes.fromhex(fingerprint)),
            listen=[listen],
            peers=[peer],
            seed=None,
            emit=emit,
            serve=partial(serve, items),
        )
    )


if __name__ == "__main__":
    main()
