"""`tkms relay` (core environment): the follower here, the gossip process in .venv-relay.

    tkms relay --fingerprint HEX [--rpc URL --governance ADDRESS] [--listen MULTIADDR]...
               [--peer MULTIADDR]... [--http HOST:PORT] [--key-seed FILE]

With --rpc and --governance the relay follows the network and publishes each new epoch's
signed manifest (`relay.feed`); without them it only forwards and serves what it hears.
The gossip process is `.venv-relay/bin/python -m relay` (docs/relay.md); its events (one
JSON object per line) go to this command's stdout, the follower's notes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PYTHON = ROOT / ".venv-relay" / "bin" / "python"


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--fingerprint", required=True, help="the KMS network's fingerprint (hex)")
    parser.add_argument("--rpc", help="Ethereum JSON-RPC URL to follow the network through")
    parser.add_argument("--governance", help="the governance contract's address")
    parser.add_argument("--listen", action="append", default=[], metavar="MULTIADDR")
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="a relay to bootstrap from (/ip4/.../tcp/.../p2p/ID); repeatable",
    )
    parser.add_argument(
        "--http",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where local clients ask for the newest manifest",
    )
    parser.add_argument(
        "--key-seed",
        default="",
        metavar="FILE",
        help="keeps the relay's peer id across restarts (made if missing)",
    )
    parser.add_argument(
        "--relay-python",
        default=str(DEFAULT_PYTHON),
        metavar="PATH",
        help="the python of the relay environment (made by `make install`)",
    )
    parser.set_defaults(handler=run)


def gossip_command(args: argparse.Namespace) -> list[str]:
    argv = [
        args.relay_python,
        "-m",
        "relay",
        "--fingerprint",
        args.fingerprint,
        "--http",
        args.http,
    ]
    for flag, values in (("--listen", args.listen), ("--peer", args.peer)):
        for value in values:
            argv += [flag, value]
    if args.key_seed:
        argv += ["--key-seed", args.key_seed]
    return argv


def run(args: argparse.Namespace) -> int:
    if bool(args.rpc) != bool(args.governance):
        print("tkms relay: --rpc and --governance go together", file=sys.stderr)
        return 2
    try:
        fingerprint = bytes.fromhex(args.fingerprint.removeprefix("0x"))
    except ValueError:
        fingerprint = b""
    if len(fingerprint) != 32:
        print("tkms relay: --fingerprint must be 32 bytes of hex", file=sys.stderr)
        return 2
    if not Path(args.relay_python).exists():
        print(
            f"tkms relay: no relay environment at {args.relay_python} (run `make install`)",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(gossip_command(args), stdin=subprocess.PIPE, env=env)
    assert child.stdin is not None
    stdin = child.stdin

    def publish(envelope: bytes) -> None:
        stdin.write(b"publish " + envelope.hex().encode() + b"\n")
        stdin.flush()

    def publish_health(envelope: bytes) -> None:
        stdin.write(b"publish-health " + envelope.hex().encode() + b"\n")
        stdin.flush()

    def publish_revocation(envelope: bytes) -> None:
        stdin.write(b"publish-revocation " + envelope.hex().encode() + b"\n")
        stdin.flush()

    def report(note: str) -> None:
        print(f"tkms relay: {note}", file=sys.stderr, flush=True)

    try:
        if args.rpc:
            publishers = (publish, publish_health, publish_revocation)
            asyncio.run(_follow(args, fingerprint, publishers, report, child))
        return child.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if child.poll() is None:
            stdin.close()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


async def _follow(
    args: argparse.Namespace,
    fingerprint: bytes,
    publish: Any,
    report: Any,
    child: subprocess.Popen[bytes],
) -> None:
    from contracts import GovernanceClient
    from contracts.cliargs import connect
    from relay.feed import follow

    governance = GovernanceClient(connect(args.rpc), args.governance)
    manifests, health, revocations = publish
    task = asyncio.ensure_future(
        follow(
            governance,
            fingerprint,
            manifests,
            report,
            publish_health=health,
            publish_revocation=revocations,
        )
    )
    while child.poll() is None and not task.done():
        await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
