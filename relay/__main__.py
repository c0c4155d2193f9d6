"""`python -m relay` (in .venv-relay): the gossip process `tkms relay` starts.

Reads envelopes to publish from stdin, one per line: `publish <hex>` (a manifest),
`publish-health <hex>` (a health note) or `publish-revocation <hex>`; the core side's follower
writes them. Writes one JSON object per line to stdout for every event (listening, connected,
accepted, dropped). Exits when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio

from relay.gossip import Relay, run_relay
from relay.http import serve_http
from relay.store import ManifestStore


def emit(event: dict[str, Any]) -> None:
    print(json.dumps(event, sort_keys=True), flush=True)


def _seed(path: str) -> bytes | None:
    """A stable peer id across restarts: a 32-byte seed kept in `path` (made on first use)."""
    if not path:
        return None
    file = Path(path)
    if not file.exists():
        import os

        file.write_bytes(os.urandom(32))
        file.chmod(0o600)
    seed = file.read_bytes()
    if len(seed) != 32:
        raise SystemExit(f"relay key seed {path} must be 32 bytes, found {len(seed)}")
    return seed


async def _feed(relay: Relay) -> None:
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    buffer = b""
    while True:
        chunk = await stdin.receive_some(1 << 16)
        if not chunk:
            return  # the core side is gone: so are we
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            verb, _, payload = line.decode("ascii", "replace").strip().partition(" ")
            if verb not in ("publish", "publish-health", "publish-revocation"):
                emit({"event": "bad_input", "line": line[:80].decode("ascii", "replace")})
                continue
            try:
                data = bytes.fromhex(payload)
            except ValueError:
                emit({"event": "bad_input", "line": "publish <not hex>"})
                continue
            if verb == "publish":
                await relay.publish(data)
            elif verb == "publish-health":
                await relay.publish_health(data)
            else:
                await relay.publish_revocation(data)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m relay")
    parser.add_argument("--fingerprint", required=True, help="the network fingerprint (hex)")
    parser.add_argument("--listen", action="append", default=[], help="libp2p multiaddr")
    parser.add_argument("--peer", action="append", default=[], help="bootstrap peer multiaddr")
    parser.add_argument("--http", default="127.0.0.1:0", help="client endpoint HOST:PORT")
    parser.add_argument("--key-seed", default="", help="file with the 32-byte peer key seed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        fingerprint = bytes.fromhex(args.fingerprint.removeprefix("0x"))
    except ValueError:
        fingerprint = b""
    if len(fingerprint) != 32:
        raise SystemExit("--fingerprint must be 32 bytes of hex")
    http_host, _, http_port = args.http.rpartition(":")
    if not http_host or not http_port.isdigit():
        raise SystemExit(f"--http must be HOST:PORT, got {args.http!r}")
    store = ManifestStore(fingerprint)

    async def serve(relay: Relay) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(serve_http, relay, http_host, int(http_port)))
            await _feed(relay)
            nursery.cancel_scope.cancel()

    trio.run(
        partial(
            run_relay,
            store=store,
            listen=args.listen or ["/ip4/127.0.0.1/tcp/0"],
            peers=args.peer,
            seed=_seed(args.key_seed),
            emit=emit,
            serve=serve,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
