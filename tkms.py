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
    ("keeper", "contracts", "make the governance's due permissionless calls (scheduled refresh)"),
    ("node", "node", "run and manage a KMS node"),
    ("guest", "guest", "the guest agent inside an app's CVM"),
    ("gateway", "gateway", "the attested TLS gateway"),
    ("verify", "verify", "check an app, its domain, gateway and KMS network from outside"),
    ("testnet", "testnet", "a complete local network in one command"),
    ("relay", "relay", "gossip the network's signed epoch manifests (libp2p)"),
)

# Commands another package adds under a command it does not own: (command, package, function).
EXTENSIONS: tuple[tuple[str, str, str], ...] = (
    ("app", "guest", "add_encrypt_env"),
    ("chain", "guest", "add_link_generation"),
    ("chain", "guest", "add_publish_kms_root"),
)

Handler = Callable[[argparse.Namespace], int]


def _available_commands() -> list[tuple[str, str, str]]:
    available = []
    for name, package, help_text in COMMANDS:
        if importlib.util.find_spec(package) is not None:
            available.append((name, package, help_text))
    return available


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (`only`) one with just that command's subtree registered.

    Importing a package's CLI can pull in web3 or grpc; registering only the chosen command
    keeps `tkms attest ...` from paying for the others.
    """
    parser = argparse.ArgumentParser(
        prog="tkms", description="Threshold KMS for confidential containers."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, package, help_text in _available_commands():
        if only is not None and name != only:
            subparsers.add_parser(name, help=help_text)
            continue
        try:
            module = importlib.import_module(f"{package}.cli")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.cli":
                raise  # the CLI exists but something it needs is missing: say so
            continue
        module.register(subparsers, name, help_text)
        _extend(subparsers.choices[name], name)
    return parser


def _extend(parser: argparse.ArgumentParser, name: str) -> None:
    commands = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    for command, package, function in EXTENSIONS:
        if command == name and commands is not None and importlib.util.find_spec(package):
            getattr(importlib.import_module(f"{package}.cli"), function)(commands)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    known = {name for name, _, _ in COMMANDS}
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in known else None)
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
