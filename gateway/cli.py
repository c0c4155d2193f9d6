"""`tkms gateway run|register`: run the gateway; register a CVM with one."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn


def _run(args: argparse.Namespace) -> int:
    from gateway.config import GatewayConfigError, load_gateway_config
    from gateway.daemon import run_gateway

    try:
        config = load_gateway_config(Path(args.config))
    except GatewayConfigError as exc:
        print(f"tkms gateway run: {exc}", file=sys.stderr)
        return 2
    return run_gateway(config)


def _gateway_app_id(args: argparse.Namespace) -> bytes | None:
    """The gateway app id to require, None with --any-gateway; SystemExit(2) if neither."""
    if args.gateway_app_id and args.any_gateway:
        _usage("give --gateway-app-id or --any-gateway, not both")
    if args.any_gateway:
        return None
    if not args.gateway_app_id:
        _usage(
            "--gateway-app-id is required: any app can serve an attested certificate and "
            "the gateway service, so only the gateway's app id tells the real one "
            "(--any-gateway accepts any, for development)"
        )
    try:
        app_id = bytes.fromhex(args.gateway_app_id.removeprefix("0x"))
    except ValueError:
        app_id = b""
    if len(app_id) != 20:
        _usage(f"--gateway-app-id {args.gateway_app_id[:60]!r} is not a 20-byte hex app id")
    return app_id


def _usage(message: str) -> NoReturn:
    print(f"tkms gateway register: {message}", file=sys.stderr)
    raise SystemExit(2)


def _tls_key(path: Path) -> bytes:
    """The SPKI hash of the first certificate in `path`; SystemExit(2) if there is none."""
    from gateway.backend_tls import spki_sha256

    try:
        return spki_sha256(path.read_bytes())
    except OSError as exc:
        _usage(f"--tls-cert {path}: cannot read: {exc.strerror}")
    except ValueError as exc:
        _usage(f"--tls-cert {path}: {exc}")


def _register(args: argparse.Namespace) -> int:
    import grpc

    from gateway.agent import GuestAgent
    from gateway.client import GatewayClient, GatewayUnavailable, default_gateway_check

    expected = _gateway_app_id(args)
    tls_key = _tls_key(args.tls_cert)
    client = GatewayClient(
        args.endpoint,
        GuestAgent(str(args.socket)),
        default_gateway_check(simulator_allowed=args.allow_simulator, app_id=expected),
    )
    if args.keep:
        stop = threading.Event()
        try:
            client.keep_registered(args.host, tls_key, stop)
        except KeyboardInterrupt:
            stop.set()
        return 0
    try:
        reply = client.register(args.host, tls_key)
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
    reg.add_argument(
        "--tls-cert",
        required=True,
        type=absolute_path,
        help="the PEM certificate (chain) this CVM's TLS ports serve; the gateway re-encrypts "
        "terminated connections to its key only",
    )
    reg.add_argument(
        "--gateway-app-id",
        default="",
        help="the app id the gateway must run (required unless --any-gateway)",
    )
    reg.add_argument(
        "--any-gateway",
        action="store_true",
        help="accept any attested app as the gateway (development only: an impostor would get "
        "the registration)",
    )
    reg.add_argument(
        "--allow-simulator",
        action="store_true",
        help="accept a gateway whose evidence comes from the TEE simulator (development)",
    )
    reg.add_argument("--keep", action="store_true", help="stay and renew the registration")
    reg.set_defaults(handler=_register)
