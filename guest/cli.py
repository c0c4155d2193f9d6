"""`tkms guest agent` (the dstack-compatible guest agent), `tkms guest fingerprint`, and the
commands guest adds elsewhere: `encrypt-env` (under `guest` and `app`),
`tkms chain link-generation` and `tkms chain publish-kms-root`."""

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

if TYPE_CHECKING:
    from contracts import GovernanceClient


def _fail(command: str, message: str) -> int:
    print(f"tkms guest {command}: {message}", file=sys.stderr)
    return 1


def _say(line: str) -> None:
    print(f"tkms guest agent: {line}", flush=True)


def governance_client(rpc: str, address: str, *, command_line: bool = False) -> GovernanceClient:
    """`command_line`: the URL came from --rpc, so check it answers and warn about plain http."""
    from web3 import HTTPProvider, Web3

    from contracts import GovernanceClient
    from contracts.cliargs import connect

    if command_line:
        return GovernanceClient(connect(rpc), address)
    return GovernanceClient(Web3(HTTPProvider(rpc, request_kwargs={"timeout": 30})), address)


def run_agent(args: argparse.Namespace) -> int:
    from guest.agent import AgentStartError, provider_evidence, start_agent
    from guest.agent_server import TAPPD_ROUTES, AgentServer
    from guest.committee import CommitteeError, UntrustedNetwork, committee_from_chain
    from guest.config import ConfigError, load_config
    from guest.env import EnvError
    from guest.kms_client import DerivationError, KmsClient
    from guest.relay_check import RelayUnavailable, UnsignedCommittee
    from guest.relay_source import RelayCheck, RelayCheckedChain
    from guest.serving import Policy
    from guest.watch import ChainSource, ChainWatch, RpcChain, kms_clients
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
            governance = governance or governance_client(config.rpc, config.governance)
            committee = committee_from_chain(
                governance, config.generation, fingerprint=config.network_fingerprint
            )
            break
        except CommitteeError as exc:
            if time.monotonic() >= deadline:
                return _fail("agent", f"no usable KMS committee on chain: {exc}")
            if not waiting:
                print(f"tkms guest agent: waiting for a KMS committee on chain ({exc})", flush=True)
                waiting = True
            time.sleep(0.25)
        except UntrustedNetwork as exc:
            return _fail("agent", f"refusing the KMS network at {config.rpc}: {exc}")
        except Exception as exc:  # web3 raises many types for an unreachable or wrong chain
            from contracts import redact_in

            problem = f"cannot read the committee from {config.rpc}: {exc}"
            return _fail("agent", redact_in(problem, config.rpc))
    check: RelayCheck | None = None
    if config.relay is not None:
        check = RelayCheck(
            config.relay, config.network_fingerprint, wait=config.relay_wait, log=_say
        )
        try:
            committee, signed, revoked = check.adopt(committee, latest=True)
        except UnsignedCommittee as exc:
            return _fail("agent", f"refusing the committee from {config.rpc}: {exc}")
        except RelayUnavailable as exc:
            return _fail("agent", f"cannot cross-check the committee with the relay: {exc}")
        if revoked:
            _say(f"committee of epoch {signed.epoch}: not using revoked members {revoked}")
    provider = make_provider(config.tee)
    policy = Policy(
        pinned=config.generation, stale_seconds=config.chain_stale_seconds, now=time.monotonic()
    )
    try:
        # The first reading: which generations to fetch now (a rotation's window may be open).
        reading = RpcChain(governance, config.app_id, config.network_fingerprint).read(
            policy.watched
        )
        policy.observe(reading, time.monotonic())
        gen = committee.network.generation
        more = [
            committee_from_chain(governance, g, fingerprint=config.network_fingerprint)
            for g in sorted(policy.wanted() - {gen}, reverse=True)
        ]
        if check is not None:
            more = [check.adopt(c)[0] for c in more]
    except (CommitteeError, UntrustedNetwork) as exc:
        return _fail("agent", f"cannot use the retiring generation's committee: {exc}")
    except UnsignedCommittee as exc:
        return _fail("agent", f"refusing the retiring generation's committee: {exc}")
    except RelayUnavailable as exc:
        return _fail("agent", f"cannot cross-check the committee with the relay: {exc}")
    except Exception as exc:  # web3 raises many types for an unreachable or wrong chain
        from contracts import redact_in

        problem = f"cannot read the key generations from {config.rpc}: {exc}"
        return _fail("agent", redact_in(problem, config.rpc))
    evidence = provider_evidence(provider)
    client = KmsClient(committee, evidence, timeout=config.timeout)
    others = [KmsClient(c, evidence, timeout=config.timeout) for c in more]
    try:
        agent = start_agent(config, provider, client, more=others)
    except DerivationError as exc:
        return _fail("agent", f"the KMS network refused the app's keys: {exc}")
    except (AgentStartError, EnvError) as exc:
        return _fail("agent", str(exc))
    for generation in agent.keyring:
        policy.fetched(generation, reading.head)
    agent.serving = policy.serving(time.monotonic())
    source: ChainSource = RpcChain.connect(
        config.rpc, config.governance, config.app_id, config.network_fingerprint
    )
    if check is not None:
        source = RelayCheckedChain(source, check)
    watch = ChainWatch(
        agent,
        policy,
        source,
        kms_clients(agent, config.timeout),
        poll=config.chain_poll_seconds,
    )
    tappd_path = Path(args.tappd_socket) if args.tappd_socket else config.tappd_socket
    legacy = None if tappd_path is None else AgentServer(tappd_path, agent, TAPPD_ROUTES)
    server = AgentServer(socket_path, agent)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if legacy is not None:
        threading.Thread(target=legacy.serve_forever, daemon=True).start()
    also = "" if tappd_path is None else f" (legacy Tappd API on {tappd_path})"
    print(
        f"tkms guest agent: app 0x{agent.app_id.hex()} instance {agent.instance_id.hex()} "
        f"serving on {socket_path}{also}; {agent.serving.describe()}",
        flush=True,
    )
    watch.start()
    try:
        server.serve_forever()
    finally:
        watch.stop()
        server.server_close()
        socket_path.unlink(missing_ok=True)
        if legacy is not None and tappd_path is not None:
            legacy.shutdown()
            legacy.server_close()
            tappd_path.unlink(missing_ok=True)
    return 0


def fingerprint_command(args: argparse.Namespace) -> int:
    from contracts import redact_in
    from guest.committee import CommitteeError, chain_fingerprint

    try:
        governance = governance_client(args.rpc, args.governance, command_line=True)
        shown = chain_fingerprint(governance)
    except CommitteeError as exc:
        return _fail("fingerprint", redact_in(str(exc), args.rpc))
    except Exception as exc:  # web3 raises many types for an unreachable or wrong chain
        problem = f"cannot read the network from {args.rpc}: {exc}"
        return _fail("fingerprint", redact_in(problem, args.rpc))
    print(shown.hex())
    print(
        f"# chain {governance.w3.eth.chain_id}, governance {governance.address}: what this RPC "
        "shows. Publish it from a chain you trust; agents and encrypt-env compare against it.",
        file=sys.stderr,
    )
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
    agent.add_argument(
        "--tappd-socket",
        type=absolute_path,
        help="also serve dstack's legacy Tappd API on this unix socket (overrides the config)",
    )
    agent.set_defaults(handler=run_agent)

    fingerprint = commands.add_parser(
        "fingerprint", help="print the network fingerprint an RPC shows (for agent configs)"
    )
    fingerprint.add_argument("--rpc", required=True, help="chain RPC URL")
    fingerprint.add_argument("--governance", required=True, help="KmsGovernance address")
    fingerprint.set_defaults(handler=fingerprint_command)

    add_encrypt_env(commands)


def add_encrypt_env(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `encrypt-env` command, under `tkms guest` and under `tkms app`."""
    from guest.env_cli import add_arguments

    enc = commands.add_parser(
        "encrypt-env", help="encrypt and sign env vars for an app (IBE to the network's PK2)"
    )
    add_arguments(enc, absolute_path)


def add_link_generation(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`tkms chain link-generation`: publish a rotated generation's link (governance owner)."""
    from guest.links import add_arguments

    add_arguments(
        commands.add_parser(
            "link-generation",
            help="have generation g-1 sign generation g's key and publish it (owner)",
        )
    )


def add_publish_kms_root(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`tkms chain publish-kms-root`: store a generation's certified KMS root (governance owner)."""
    from guest.kms_root import add_arguments

    add_arguments(
        commands.add_parser(
            "publish-kms-root",
            help="have the network certify a generation's secp256k1 KMS root and publish it, "
            "the anchor of dstack-style key chains (owner)",
        )
    )
