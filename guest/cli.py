"""`tkms guest agent` (the dstack-compatible guest agent) and `tkms guest encrypt-env`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from contracts.cliargs import add_rpc_argument

if TYPE_CHECKING:
    from contracts import GovernanceClient


def _fail(command: str, message: str) -> int:
    print(f"tkms guest {command}: {message}", file=sys.stderr)
    return 1


def _governance(rpc: str, address: str, *, command_line: bool = False) -> GovernanceClient:
    """`command_line`: the URL came from --rpc, so check it answers and warn about plain http."""
    from web3 import HTTPProvider, Web3

    from contracts import GovernanceClient
    from contracts.cliargs import connect

    if command_line:
        return GovernanceClient(connect(rpc), address)
    return GovernanceClient(Web3(HTTPProvider(rpc, request_kwargs={"timeout": 30})), address)


def run_agent(args: argparse.Namespace) -> int:
    from guest.agent import AgentStartError, provider_evidence, start_agent
    from guest.agent_server import AgentServer
    from guest.committee import CommitteeError, committee_from_chain
    from guest.config import ConfigError, load_config
    from guest.env import EnvError
    from guest.kms_client import DerivationError, KmsClient
    from node.tee import make_provider

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        return _fail("agent", str(exc))
    socket_path = Path(args.socket) if args.socket else config.socket
    if socket_path is None:
        return _fail("agent", "no socket path: pass --socket or set 'socket' in the config")
    deadline = time.monotonic() + config.wait_for_network
    waiting = False
    governance = None
    while True:
        try:
            governance = governance or _governance(config.rpc, config.governance)
            committee = committee_from_chain(governance, config.generation)
            break
        except CommitteeError as exc:
            if time.monotonic() >= deadline:
                return _fail("agent", f"no usable KMS committee on chain: {exc}")
            if not waiting:
                print(f"tkms guest agent: waiting for a KMS committee on chain ({exc})", flush=True)
                waiting = True
            time.sleep(0.25)
        except Exception as exc:  # web3 raises many types for an unreachable or wrong chain
            from contracts import redact_in

            problem = f"cannot read the committee from {config.rpc}: {exc}"
            return _fail("agent", redact_in(problem, config.rpc))
    provider = make_provider(config.tee)
    client = KmsClient(committee, provider_evidence(provider), timeout=config.timeout)
    try:
        agent = start_agent(config, provider, client)
    except DerivationError as exc:
        return _fail("agent", f"the KMS network refused the app's keys: {exc}")
    except (AgentStartError, EnvError) as exc:
        return _fail("agent", str(exc))
    server = AgentServer(socket_path, agent)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"tkms guest agent: app 0x{agent.app_id.hex()} instance {agent.instance_id.hex()} "
        f"serving on {socket_path}",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
        socket_path.unlink(missing_ok=True)
    return 0


def encrypt_env_command(args: argparse.Namespace) -> int:
    from web3.exceptions import Web3Exception

    from contracts import ContractsError, redact_in
    from guest.committee import CommitteeError, committee_from_chain
    from guest.config import ConfigError, parse_hex
    from guest.env import EnvError, encrypt_env, parse_assignments

    try:
        app_id = parse_hex("--app-id", args.app_id, 20)
        lines: list[str] = []
        if args.input:
            lines += Path(args.input).read_text().splitlines()
    except ConfigError as exc:
        return _fail("encrypt-env", str(exc))
    except OSError as exc:
        return _fail("encrypt-env", f"cannot read {exc.filename}: {exc.strerror}")
    try:
        env = parse_assignments(lines)
        env.update(parse_assignments(args.env))
        if not env:
            return _fail("encrypt-env", "nothing to encrypt: pass --env NAME=VALUE or --in FILE")
        governance = _governance(args.rpc, args.governance, command_line=True)
        group_key = committee_from_chain(governance, args.generation).group_key
        blob = encrypt_env(group_key, app_id, env)
    except (EnvError, CommitteeError, ContractsError) as exc:
        return _fail("encrypt-env", redact_in(str(exc), args.rpc))
    except (Web3Exception, OSError) as exc:  # the RPC went away or misbehaved
        return _fail("encrypt-env", f"JSON-RPC failure: {redact_in(str(exc), args.rpc)}")
    try:
        Path(args.out).write_bytes(blob)
    except OSError as exc:
        return _fail("encrypt-env", f"cannot write {args.out}: {exc.strerror}")
    print(f"encrypted {len(env)} variables to app 0x{app_id.hex()} -> {args.out}")
    return 0


def absolute_path(text: str) -> Path:
    """A path given on the command line, made absolute once, here, against the working directory."""
    return Path(os.path.abspath(os.path.expanduser(text)))


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> None:
    parser = subparsers.add_parser(name, help=help_text)
    commands = parser.add_subparsers(dest="guest_command", metavar="COMMAND", required=True)

    agent = commands.add_parser("agent", help="serve the dstack guest API on a unix socket")
    agent.add_argument(
        "--config", required=True, type=absolute_path, help="agent configuration (TOML)"
    )
    agent.add_argument(
        "--socket", type=absolute_path, help="unix socket path (overrides the config)"
    )
    agent.set_defaults(handler=run_agent)

    add_encrypt_env(commands)


def add_encrypt_env(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `encrypt-env` command, under `tkms guest` and under `tkms app`."""
    enc = commands.add_parser(
        "encrypt-env", help="encrypt env vars to an app (IBE, PK2 from chain)"
    )
    enc.add_argument("--app-id", required=True, help="the app's 20-byte id (hex)")
    add_rpc_argument(enc)
    enc.add_argument("--governance", required=True, help="KmsGovernance address")
    enc.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    enc.add_argument(
        "--in",
        dest="input",
        type=absolute_path,
        metavar="FILE",
        help="dotenv file of NAME=VALUE lines",
    )
    enc.add_argument(
        "--out",
        required=True,
        type=absolute_path,
        metavar="FILE",
        help="where to write the ciphertext",
    )
    enc.add_argument("--generation", type=int, default=0, help="key generation (0 = latest)")
    enc.set_defaults(handler=encrypt_env_command)
