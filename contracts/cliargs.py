"""Chain options shared by every tkms command line: RPC URL, signing key, chain id.

    add_rpc_argument(parser)                 # --rpc URL
    add_signer_arguments(parser, "...")      # --private-key-file | --private-key | --anvil-account,
                                             # and --chain-id
    w3 = connect(args.rpc)                   # warns on plain http to another host
    tx = signing_transactor(w3, args)        # key from file, TKMS_PRIVATE_KEY or argv (warned);
                                             # chain id pinned before anything is signed
    print(redact_in(str(exc), args.rpc))     # credentials in the URL never printed

Used by `tkms chain/app`, `tkms node`, `tkms guest encrypt-env`. Building a parser imports
nothing heavy (`tkms attest ...` builds every package's parser); web3 loads when a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from contracts._devchain import pin_chain_id
from contracts._keysource import COMMAND_LINE_WARNING, ENV_VAR, KeyChoice, choose_key
from contracts._rpcurl import insecure_rpc_warning, redact_in, redact_url
from contracts.errors import InvalidInput

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from contracts._tx import Transactor

__all__ = [
    "ENV_VAR",
    "add_chain_id_argument",
    "add_rpc_argument",
    "add_signer_arguments",
    "connect",
    "pinned_chain_id",
    "redact_in",
    "redact_url",
    "signing_account",
    "signing_transactor",
    "warn",
]

RPC_HELP = (
    "Ethereum JSON-RPC URL; use https:// (or a loopback http://). Credentials in it are never "
    "printed"
)


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_rpc_argument(parser: argparse.ArgumentParser, *, help_text: str = RPC_HELP) -> None:
    parser.add_argument("--rpc", required=True, metavar="URL", help=help_text)


def add_chain_id_argument(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--chain-id",
        type=int,
        metavar="N",
        help="sign only for this chain, and refuse an RPC that serves another (required unless "
        "the chain is a development chain, 31337 or 1337, or --anvil-account signs)",
    )


def add_signer_arguments(parser: argparse.ArgumentParser, who: str = "the signer") -> None:
    """The signing key options (at most one; none: `TKMS_PRIVATE_KEY`) and `--chain-id`."""
    group = parser.add_argument_group(
        f"signing as {who}",
        f"the key: one of --private-key-file, --private-key, --anvil-account, or else the "
        f"{ENV_VAR} environment variable",
    )
    choice = group.add_mutually_exclusive_group()
    choice.add_argument(
        "--private-key-file",
        metavar="FILE",
        help="file holding the key in hex; must not be readable by group or others (chmod 600)",
    )
    choice.add_argument(
        "--private-key",
        metavar="HEX",
        help=f"the key itself: other local users can read it (ps); prefer a file or {ENV_VAR}",
    )
    choice.add_argument(
        "--anvil-account",
        type=int,
        metavar="N",
        help="anvil's well-known account N (0-9): development chains only",
    )
    add_chain_id_argument(group)


def connect(url: str, argument: str = "--rpc", *, timeout: float = 30) -> Web3:
    """A Web3 on `url` that answered; warns about plain http to another host."""
    from web3 import HTTPProvider, Web3

    insecure = insecure_rpc_warning(url, argument)
    if insecure:
        warn(insecure)
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}))
    if not w3.is_connected():
        raise InvalidInput(argument, f"no Ethereum JSON-RPC answer at {redact_url(url)}")
    return w3


def key_choice(args: argparse.Namespace) -> KeyChoice:
    """The signer the arguments (or `TKMS_PRIVATE_KEY`) name; warns about `--private-key`."""
    file = getattr(args, "private_key_file", None)
    choice = choose_key(
        private_key=getattr(args, "private_key", None),
        private_key_file=None if file is None else _path(file),
        anvil_account=getattr(args, "anvil_account", None),
        environ=os.environ,
    )
    if choice.source == "--private-key":
        warn(COMMAND_LINE_WARNING)
    return choice


def signing_account(args: argparse.Namespace) -> tuple[LocalAccount, KeyChoice]:
    from contracts._accounts import account_from_key, anvil_account

    choice = key_choice(args)
    if choice.anvil_account is not None:
        return anvil_account(choice.anvil_account, "--anvil-account"), choice
    assert choice.key is not None
    return account_from_key(choice.key, choice.source), choice


def pinned_chain_id(w3: Web3, chain_id: int | None, *, development_key: bool) -> int:
    """The chain to sign for: `--chain-id` checked against the RPC (see `pin_chain_id`)."""
    return pin_chain_id(int(w3.eth.chain_id), chain_id, development_key=development_key)


def signing_transactor(w3: Web3, args: argparse.Namespace) -> Transactor:
    """A Transactor for the arguments' signer, bound to the pinned chain id."""
    from contracts._tx import Transactor

    account, choice = signing_account(args)
    chain = pinned_chain_id(w3, args.chain_id, development_key=choice.development)
    return Transactor(w3, account, chain_id=chain)


def _path(value: object) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(value))))
