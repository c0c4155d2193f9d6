"""The `tkms` command: dispatches to the subcommands each package owns.

Every top-level package that has commands exposes `<package>.cli.register(subparsers)`;
this module only builds the parser and calls the chosen handler. Packages are imported
lazily so `tkms attest ...` never pays for importing web3 or grpc.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence

# (command, package whose `cli` module registers it, one-line help)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("attest", "attest", "verify TEE evidence"),
    ("chain", "contracts", "local chain, deployment and audit"),
    ("app", "contracts", "register and govern apps"),
    ("node", "node", "run and manage a KMS node"),
    ("guest", "guest", "the guest agent inside an app's CVM"),
    ("gateway", "gateway", "the attested TLS gateway"),
    ("testnet", "testnet", "a complete local network in one command"),
)

Handler = Callable[[argparse.Namespace], int]


def _available_commands() -> list[tuple[str, str, str]]:
    available = []
    for name, package, help_text in COMMANDS:
        if importlib.util.find_spec(package) is not None:
            available.append((name, package, help_text))
    return available


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tkms", description="Threshold KMS for confidential containers."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, package, help_text in _available_commands():
        try:
            module = importlib.import_module(f"{package}.cli")
        except ModuleNotFoundError:
            continue
        module.register(subparsers, name, help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
