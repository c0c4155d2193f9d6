"""`tkms app encrypt-env` (also `tkms guest encrypt-env`): a signed, encrypted env for an app.

Before anything is encrypted the command shows what the secrets are about to be bound to and
refuses what an agent would refuse anyway, or what would give them to someone else:

* the network: the RPC's committee must chain to `--network-fingerprint` (without it, the
  fingerprint this RPC shows is printed for the owner to compare, and nothing is written);
* the app: it must be registered in governance (an unregistered id goes to whoever deploys it
  first, unless `--allow-unregistered`); its owner, env signer, env version and allowed
  compose hashes are printed; the compose hash must be allowed;
* the signer: the key given must be the app's `envSigner`; the version defaults to the
  current `envVersion` + 1 and may not be lower than the current one. `--publish` raises the
  app's `envVersion` to it after the file is written (the key must be the app owner's).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contracts import AppAuthClient


class EncryptEnvError(Exception):
    """Why nothing was written; the message names the option."""


def _print(text: str) -> None:
    print(text, flush=True)


def _describe_app(app: AppAuthClient, block: int) -> tuple[str, int]:
    """Print what the owner should check about the app; returns (env signer, env version)."""
    signer, version = app.get_env_signer(block=block), app.get_env_version(block=block)
    _print(f"app         {app.address}")
    _print(f"owner       {app.get_owner(block=block)}")
    _print(f"env signer  {signer}")
    _print(f"env version {version}")
    hashes = app.get_allowed_compose_hashes(block=block)
    _print("allowed compose hashes: " + (", ".join(h.hex() for h in hashes) or "none"))
    return signer, version


def encrypt_env_command(args: argparse.Namespace) -> int:
    from web3.exceptions import Web3Exception

    from contracts import ContractsError, redact_in

    try:
        return _encrypt(args)
    except (EncryptEnvError, ContractsError) as exc:
        problem = str(exc)
    except (Web3Exception, OSError) as exc:  # the RPC went away or misbehaved
        problem = f"JSON-RPC failure: {exc}"
    # Errors may quote the RPC URL, where providers put API keys.
    print(f"tkms encrypt-env: {redact_in(problem, args.rpc)}", file=sys.stderr)
    return 1


def _encrypt(args: argparse.Namespace) -> int:
    from contracts import AppAuthClient, AppStatus, ContractsError
    from contracts.cliargs import signing_transactor
    from guest.cli import governance_client
    from guest.committee import (
        CommitteeError,
        UntrustedNetwork,
        chain_fingerprint,
        committee_from_chain,
    )
    from guest.config import ConfigError, parse_hex, rpc_url_problem
    from guest.env import EnvError, parse_assignments, seal_env

    problem = rpc_url_problem(args.rpc)
    if problem is not None:
        raise EncryptEnvError(f"--rpc {problem}")
    try:
        app_id = parse_hex("--app-id", args.app_id, 20)
        compose_hash = parse_hex("--compose-hash", args.compose_hash, 32)
        lines: list[str] = []
        if args.input:
            lines += Path(args.input).read_text().splitlines()
        env = parse_assignments(lines)
        env.update(parse_assignments(args.env))
    except (ConfigError, EnvError) as exc:
        raise EncryptEnvError(str(exc)) from None
    except OSError as exc:
        raise EncryptEnvError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if not env:
        raise EncryptEnvError("nothing to encrypt: pass --env NAME=VALUE or --in FILE")
    governance = governance_client(args.rpc, args.governance, command_line=True)
    try:
        if args.network_fingerprint is None:
            shown = chain_fingerprint(governance)
            raise EncryptEnvError(
                f"this RPC shows network {shown.hex()} (chain {governance.w3.eth.chain_id}, "
                f"governance {governance.address}); compare it with your network operator's and "
                "pass it as --network-fingerprint. Nothing was written"
            )
        fingerprint = parse_hex("--network-fingerprint", args.network_fingerprint, 32)
        committee = committee_from_chain(governance, args.generation, fingerprint=fingerprint)
    except (ConfigError, CommitteeError, UntrustedNetwork) as exc:
        raise EncryptEnvError(str(exc)) from None
    net = committee.network
    _print(f"network     {fingerprint.hex()} (chain {net.chain_id}, generation {net.generation})")
    try:
        # The same signer options as every `tkms app` command that sends a transaction.
        transactor = signing_transactor(governance.w3, args)
    except ContractsError as exc:
        raise EncryptEnvError(str(exc)) from None
    account = transactor.account
    block = governance.w3.eth.block_number
    address = "0x" + app_id.hex()
    registered = governance.get_app_status(address, block=block) is AppStatus.REGISTERED
    publish: AppAuthClient | None = None
    if registered:
        app = AppAuthClient(governance.w3, address)
        try:
            env_signer, current = _describe_app(app, block)
        except ContractsError as exc:
            raise EncryptEnvError(
                f"app {address} is not an AppAuth with an env signer: {exc}"
            ) from None
        if not app.is_compose_hash_allowed(compose_hash, block=block):
            raise EncryptEnvError(
                f"--compose-hash {compose_hash.hex()} is not allowed by app {address}: its agent "
                "would get no keys"
            )
        if env_signer.lower() != account.address.lower():
            raise EncryptEnvError(
                f"app {address} names env signer {env_signer}, not {account.address}: its agent "
                "would refuse this env (tkms app set-env-signer changes it)"
            )
        version = current + 1 if args.version is None else args.version
        if version < current:
            raise EncryptEnvError(
                f"--version {version} is below the app's env version {current}: never accepted"
            )
        if args.publish and version > current:
            if app.get_owner(block=block).lower() != account.address.lower():
                raise EncryptEnvError("--publish needs the app owner's key")
            publish = app.with_transactor(transactor)
    elif not args.allow_unregistered:
        raise EncryptEnvError(
            f"app {address} is not registered in governance {governance.address}: whoever "
            "deploys that address first would get this env (--allow-unregistered if you "
            "deploy it yourself, in a way nobody can front-run)"
        )
    elif args.version is None or args.publish:
        raise EncryptEnvError("an unregistered app needs --version and cannot --publish")
    else:
        version = args.version
    try:
        envelope = seal_env(
            committee.group_key,
            account,
            chain_id=net.chain_id,
            governance=net.contract,
            app_id=app_id,
            compose_hash=compose_hash,
            version=version,
            env=env,
        )
    except EnvError as exc:
        raise EncryptEnvError(str(exc)) from None
    try:
        Path(args.out).write_bytes(envelope.to_json())
    except OSError as exc:
        raise EncryptEnvError(f"cannot write {args.out}: {exc.strerror}") from None
    _print(
        f"encrypted {len(env)} variables to app {address} (compose {compose_hash.hex()}, "
        f"version {version}), signed by {account.address} -> {args.out}"
    )
    if publish is not None:
        receipt = publish.send_set_env_version(version)
        _print(f"published: env version of {address} is now {version} (tx {receipt.tx_hash})")
    elif registered and version > current:
        _print(
            f"agents accept it once the app's env version is {version}: "
            f"tkms app set-env-version --app-id {address} --version {version}"
        )
    return 0


def add_arguments(enc: argparse.ArgumentParser, absolute_path: Callable[[str], Path]) -> None:
    """The options of `encrypt-env` (see the module doc)."""
    from contracts.cliargs import add_rpc_argument, add_signer_arguments

    enc.add_argument("--app-id", required=True, help="the app's 20-byte id (hex)")
    add_rpc_argument(enc, help_text="chain RPC URL (https, or http to loopback)")
    enc.add_argument("--governance", required=True, help="KmsGovernance address")
    enc.add_argument(
        "--network-fingerprint",
        metavar="HEX",
        help="the network to encrypt to (without it: print the RPC's and stop)",
    )
    enc.add_argument(
        "--compose-hash", required=True, metavar="HEX", help="the compose the env is for"
    )
    add_signer_arguments(enc, "the app's env signer (by default its owner)")
    enc.add_argument("--version", type=int, help="env version (default: the app's + 1)")
    enc.add_argument(
        "--publish", action="store_true", help="then raise the app's env version to it (owner)"
    )
    enc.add_argument(
        "--allow-unregistered",
        action="store_true",
        help="encrypt to an app id governance does not know (anyone may deploy it first)",
    )
    enc.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    enc.add_argument("--in", dest="input", type=absolute_path, metavar="FILE", help="dotenv file")
    enc.add_argument(
        "--out", required=True, type=absolute_path, metavar="FILE", help="envelope to write"
    )
    enc.add_argument("--generation", type=int, default=0, help="key generation (0 = latest)")
    enc.set_defaults(handler=encrypt_env_command)
