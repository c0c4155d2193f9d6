"""`tkms gateway run|register`: run the gateway; register a CVM with one."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import Any


def _run(args: argparse.Namespace) -> int:
    from gateway.config import GatewayConfigError, load_gateway_config
    from gateway.daemon import run_gateway

    try:
        config = load_gateway_config(Path(args.config))
    except GatewayConfigError as exc:
        print(f"tkms gateway run: {exc}", file=sys.stderr)
        return 2
    return run_gateway(config)


def _register(args: argparse.Namespace) -> int:
    import grpc

    from gateway.agent import GuestAgent
    from gateway.client import GatewayClient, GatewayUnavailable, default_gateway_check

    expected = (
        bytes.fromhex(args.gateway_app_id.removeprefix("0x")) if args.gateway_app_id else None
    )
    client = GatewayClient(
        args.endpoint,
        GuestAgent(str(args.socket)),
        default_gateway_check(simulator_allowed=args.allow_simulator, app_id=expected),
    )
    if args.keep:
        stop = threading.Event()
        try:
            client.keep_registered(args.host, stop)
        except KeyboardInterrupt:
            stop.set()
        return 0
    try:
        reply = client.register(args.host)
    except GatewayUnavailable as exc:
        print(f"tkms gateway register: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        print(f"tkms gateway register: refused: {exc.details()}", file=sys.stderr)
        return 1
    for name in reply.names:
        print(name)
    return 0


def absolute_path(text: str) -> Path:
    """A path given on the command line, made absolute once, here, against the working directory."""
    return Path(os.path.abspath(os.path.expanduser(text)))


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    commands = parser.add_subparsers(dest="gateway_command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the gateway (see docs/gateway.md)")
    run.add_argument(
        "--config", required=True, type=absolute_path, help="the gateway's TOML configuration"
    )
    run.set_defaults(handler=_run)

    reg = commands.add_parser(
        "register", help="register this CVM with a gateway, through its guest agent"
    )
    reg.add_argument("--endpoint", required=True, help="the gateway's registration host:port")
    reg.add_argument(
        "--host", required=True, help="the IP address where the gateway reaches this CVM"
    )
    reg.add_argument(
        "--socket",
        type=absolute_path,
        default="/var/run/dstack.sock",
        help="this CVM's guest agent socket",
    )
    reg.add_argument("--gateway-app-id", default="", help="require the gateway to run this app")
    reg.add_argument(
        "--allow-simulator",
        action="store_true",
        help="accept a gateway whose evidence comes from the TEE simulator (development)",
    )
    reg.add_argument("--keep", action="store_true", help="stay and renew the registration")
    reg.set_defaults(handler=_register)
