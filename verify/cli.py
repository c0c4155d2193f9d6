"""`tkms verify domain NAME | app APP_ID | gateway URL | node ADDRESS` (docs/verify.md).

    tkms verify domain <app>-<port>.<base>[:PORT] --rpc URL --governance ADDR
        [--ca-file PEM] [--dns-server HOST:PORT] [--collateral FILE | --pccs-url URL]
        [--max-head-age S] [--no-key-proof] [--json] [--html FILE] [--explorer-tx URL]
    tkms verify app APP_ID (--gateway <app>-<port>.<base>[:PORT] | --endpoint HOST:PORT) ...
    tkms verify gateway [https://]gateway.<base>[:PORT] ...
    tkms verify node 0xADDRESS ...

One row per check on stdout (or `--json`), and with `--html FILE` a self-contained page.
Exit status: 0 when every check passed (warnings pass), 1 when one failed, 2 for unusable
input (a malformed argument, no chain at --rpc, an unreadable collateral file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Unusable(Exception):
    """An argument that makes the verification impossible (exit 2)."""


def _options(args: argparse.Namespace) -> Any:
    from web3.exceptions import Web3Exception

    from attest import load_collateral
    from contracts._hexargs import parse_address
    from contracts.cliargs import connect
    from contracts.errors import ContractsError
    from verify.chain import ChainView
    from verify.dns import system_resolver
    from verify.quotes import TrustPolicy
    from verify.targets import Options

    try:
        gateway_app = None
        if args.gateway_app_id:
            gateway_app = bytes.fromhex(parse_address("--gateway-app-id", args.gateway_app_id)[2:])
        w3 = connect(args.rpc)
        view = ChainView.connect(w3, args.governance)
        view.governance.get_owner(block=view.head)  # a governance contract answers there
    except (ContractsError, ValueError, Web3Exception, OSError) as exc:
        raise _Unusable(f"cannot read governance {args.governance} at --rpc: {exc}") from None
    allowed, note = view.simulator_policy()
    trust = TrustPolicy(
        now=int(time.time()),
        simulator_allowed=allowed,
        simulator_note=note,
        collateral=load_collateral(Path(args.collateral)) if args.collateral else None,
        pccs_url=args.pccs_url,
    )
    if args.collateral_cache:
        trust.collateral_cache = Path(args.collateral_cache)
    return Options(
        view=view,
        trust=trust,
        ca_file=args.ca_file,
        dns_server=args.dns_server or system_resolver(),
        max_head_age=args.max_head_age,
        key_proof=not args.no_key_proof,
        gateway_app=gateway_app,
    )


def _usage(message: str) -> int:
    print(f"tkms verify: {message}", file=sys.stderr)
    return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    import logging

    from web3.exceptions import Web3Exception

    from contracts.errors import ContractsError
    from verify.fetch import Target
    from verify.html import render
    from verify.targets import verify_app, verify_domain, verify_gateway, verify_node

    try:
        if args.verify_command == "app":
            app_id = bytes.fromhex(args.target.removeprefix("0x"))
            if len(app_id) != 20:
                raise ValueError(f"APP_ID must be 20 bytes of hex, got {len(app_id)}")
            via = Target.parse(args.gateway) if args.gateway else None
            endpoint = Target.parse(args.endpoint) if args.endpoint else None
        elif args.verify_command == "node":
            from contracts._hexargs import parse_address

            address = parse_address("ADDRESS", args.target)
        else:
            target = Target.parse(args.target)
    except ValueError as exc:
        return _usage(str(exc))
    # attest warns on every simulator quote it accepts; here each such row says so itself.
    logging.getLogger("attest.simulator").setLevel(logging.ERROR)
    try:
        options = _options(args)
    except _Unusable as exc:
        return _usage(str(exc))
    try:
        if args.verify_command == "domain":
            report = verify_domain(target, options)
        elif args.verify_command == "gateway":
            report = verify_gateway(target, options)
        elif args.verify_command == "app":
            report = verify_app(app_id, options, via=via, endpoint=endpoint)
        else:
            report = verify_node(address, options)
    except (ContractsError, Web3Exception, OSError) as exc:
        # The chain stopped answering mid-way: nothing is verified (fail closed).
        print(f"tkms verify: reading the chain failed, nothing verified: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.html:
        Path(args.html).write_text(render(report, args.explorer_tx), encoding="utf-8")
    print(json.dumps(report.to_json(), indent=2) if args.json else report.to_text())
    return EXIT_OK if report.passed else EXIT_FAILED


def _common(parser: argparse.ArgumentParser) -> None:
    from contracts.cliargs import add_rpc_argument

    add_rpc_argument(parser)
    parser.add_argument("--governance", required=True, metavar="ADDR", help="KmsGovernance")
    parser.add_argument(
        "--ca-file",
        metavar="PEM",
        help="roots the name's certificate must chain to (default: the system's)",
    )
    parser.add_argument(
        "--dns-server",
        metavar="HOST:PORT",
        help="the DNS server CAA is read from (default: the first nameserver of /etc/resolv.conf)",
    )
    parser.add_argument("--collateral", metavar="FILE", help="DCAP collateral for hardware quotes")
    parser.add_argument("--pccs-url", metavar="URL", help="fetch DCAP collateral from this PCCS")
    parser.add_argument(
        "--collateral-cache", metavar="DIR", help="where fetched collateral is kept"
    )
    parser.add_argument(
        "--max-head-age",
        type=float,
        default=300.0,
        metavar="S",
        help="fail when the chain's latest block is older than this (default 300 s)",
    )
    parser.add_argument(
        "--no-key-proof", action="store_true", help="do not ask the app for a key proof"
    )
    parser.add_argument(
        "--gateway-app-id",
        metavar="ADDR",
        help="the gateway app the domain's owner names (default: any app governance approves "
        "whose ACME account the domain's CAA records pin)",
    )
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.add_argument("--html", metavar="FILE", help="also write the report as one HTML page")
    parser.add_argument(
        "--explorer-tx",
        metavar="URL",
        help="link transactions in the HTML page through this template, e.g. "
        "https://etherscan.io/tx/{tx} (default: plain hashes)",
    )
    parser.set_defaults(handler=_run)


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="verify_command", required=True, metavar="WHAT")
    domain = commands.add_parser("domain", help="a name served through a gateway, end to end")
    domain.add_argument("target", metavar="NAME[:PORT]")
    app = commands.add_parser("app", help="an app: evidence, approvals, KMS network, keys")
    app.add_argument("target", metavar="APP_ID")
    reach = app.add_mutually_exclusive_group(required=True)
    reach.add_argument("--gateway", metavar="NAME[:PORT]", help="the app's name at a gateway")
    reach.add_argument("--endpoint", metavar="HOST:PORT", help="the app's own TLS port")
    gateway = commands.add_parser("gateway", help="a gateway: evidence, approval, CAA, network")
    gateway.add_argument("target", metavar="URL")
    node = commands.add_parser("node", help="a KMS node: registration, key, evidence, approval")
    node.add_argument("target", metavar="ADDRESS")
    for command in (domain, app, gateway, node):
        _common(command)
