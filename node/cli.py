"""`tkms node ...`: join, admit, init, allow-registration, register, approve, remove,
measurement, run, status.

tkms node join --chain URL --governance ADDR (--host HOST | --endpoint kms=H:P,peer=H:P)
               [--dir DIR] [--chain-id N] [--tee ...] [--sealing ...] [--no-run]
tkms node admit --rpc URL --governance ADDR --registration FILE KEY [--chain-id N]
                [--reshare [--threshold T] [--phases K,D,C,J,F]] [--wait S]
tkms node init --dir DIR [--tee simulator|tdx] [--sealing file|dstack] [--json]
tkms node allow-registration --rpc URL --governance ADDR --node ADDR KEY [--chain-id N]
tkms node register --dir DIR --rpc URL --governance ADDR --endpoint kms=H:P,peer=H:P
                   [--chain-id N] [--fund-from-anvil-account N] [--json]
tkms node approve --rpc URL --governance ADDR --registration FILE [--node ADDR]
                  [--collateral FILE | --pccs-url URL] KEY [--chain-id N]
tkms node run --config FILE
tkms node status --dir DIR [--json]        (asks the running node over its admin socket)

KEY is the governance owner's: --private-key-file FILE (mode 0600), the TKMS_PRIVATE_KEY
environment variable, --private-key HEX (visible to other local users: warned), or on a
development chain --anvil-account N. --chain-id is required off development chains (31337,
1337): nothing is signed for a chain the RPC serves unless it is the one named.

Onboarding in two commands (node/join.py, node/admit.py): the operator runs `join` on the new
host and sends the registration.json it writes; the governance owner runs `admit` on it (with
`--reshare`, also the reshare that puts the node in the committee). The same, step by step:
the operator runs `init` and sends the node's address; the governance owner runs
`allow-registration`; the operator runs `register` and sends the updated registration.json;
the owner runs `approve --registration` on it, which verifies the evidence, its binding to the
node's keys and the on-chain registration before approving exactly that registration
(node/registration.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from attest import Collateral, event_log_to_json
from contracts.cliargs import add_chain_id_argument, add_rpc_argument, add_signer_arguments
from node.errors import NodeError
from node.identity import IDENTITY_FILE, create_identity, load_identity
from node.registration import (
    REGISTRATION_FILE,
    approval_calls,
    approve_reviewed,
    evidence_hash,
    parse_registration,
    registered_document,
    review_registration,
    write_registration,
)
from node.sealing import make_directory, open_sealer
from node.tee import make_provider, measure_node_boot

__all__ = ["REGISTRATION_FILE", "evidence_hash", "fund_from_anvil", "init_node_dir"]


def _fail(message: str) -> int:
    print(f"tkms node: {message}", file=sys.stderr)
    return 2


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else text)


def init_node_dir(data_dir: Path, *, tee: str, sealing: str) -> dict[str, Any]:
    """Create a node identity in `data_dir` and write its registration data (what
    `tkms node init` does); returns the registration document."""
    make_directory(data_dir, mode=0o777)  # less the umask; secrets in it are sealed
    if (data_dir / IDENTITY_FILE).exists():
        raise NodeError(f"{data_dir} already holds a node identity; use another --dir")
    sealer = open_sealer(sealing, data_dir, create=True)
    identity = create_identity(data_dir, sealer)
    provider = make_provider(tee)
    measure_node_boot(provider, sealing=sealing)
    quote = provider.get_quote(identity.report_data())
    event_log = event_log_to_json(provider.event_log())
    registration = {
        "address": identity.eth_account.address,
        "tee": tee,
        "sealing": sealing,
        "tls_key_hash": identity.tls_key_hash.hex(),
        "tls_public_key": identity.tls_spki_der.hex(),
        "deal_public_key": identity.deal_public_key.hex(),
        "report_data": identity.report_data().hex(),
        "evidence": {"quote": quote.hex(), "event_log": event_log},
        "evidence_hash": evidence_hash(quote, event_log).hex(),
    }
    write_registration(data_dir, registration)
    return registration


def cmd_init(args: argparse.Namespace) -> int:
    data_dir = Path(args.dir)
    try:
        registration = init_node_dir(data_dir, tee=args.tee, sealing=args.sealing)
    except NodeError as exc:
        return _fail(str(exc))
    _print(
        args,
        registration,
        f"node identity created in {data_dir}\n"
        f"  address        {registration['address']}\n"
        f"  tls key hash   {registration['tls_key_hash']}\n"
        f"  evidence hash  {registration['evidence_hash']}\n"
        f"registration data: {data_dir / REGISTRATION_FILE}\n"
        "next: the governance owner allows the address to register "
        "(tkms node allow-registration), then\n"
        "      tkms node register --dir ... --rpc ... --governance ... --endpoint kms=H:P,peer=H:P",
    )
    return 0


def _governance(args: argparse.Namespace, account: Any, *, development_key: bool) -> Any:
    """The governance client signing as `account`, for the chain `--chain-id` pins."""
    from contracts import GovernanceClient, Transactor
    from contracts.cliargs import connect, pinned_chain_id

    w3 = connect(args.rpc)
    chain = pinned_chain_id(w3, args.chain_id, development_key=development_key)
    return GovernanceClient(w3, args.governance, Transactor(w3, account, chain_id=chain))


def cmd_register(args: argparse.Namespace) -> int:
    from node.endpoints import Endpoints

    data_dir = Path(args.dir)
    endpoints = Endpoints.parse(args.endpoint)
    registration = json.loads((data_dir / REGISTRATION_FILE).read_text())
    sealer = open_sealer(registration["sealing"], data_dir)
    identity = load_identity(data_dir, sealer)
    client = _governance(args, identity.eth_account, development_key=False)
    if args.fund_from_anvil_account is not None:
        fund_from_anvil(client.w3, identity.eth_account.address, args.fund_from_anvil_account)
    address = identity.eth_account.address
    if not client.is_node_registration_allowed(address):
        return _fail(
            f"{address} may not register: the governance owner must first run "
            f"`tkms node allow-registration --node {address}`"
        )
    operator = args.operator or address
    # Files from before tls_public_key was recorded: the key is the node's own.
    registration.setdefault("tls_public_key", identity.tls_spki_der.hex())
    recorded = registered_document(registration, operator=operator, endpoint=str(endpoints))
    receipt = client.send_register_node(
        operator=operator,
        endpoint=str(endpoints),
        tls_key_hash=identity.tls_key_hash,
        deal_key=identity.deal_public_key,
        evidence_hash=bytes.fromhex(registration["evidence_hash"]),
    )
    write_registration(data_dir, recorded)
    info = client.get_node(address)
    data = {
        "node": address,
        "registration_hash": info.registration_hash.hex(),
        "block": receipt.block,
    }
    if recorded["registration_hash"] != data["registration_hash"]:
        return _fail(
            f"the chain recorded registration hash {data['registration_hash']}, but "
            f"{REGISTRATION_FILE} gives {recorded['registration_hash']}: did the node "
            "register again from elsewhere?"
        )
    _print(
        args,
        data,
        f"registered {data['node']} in block {data['block']}\n"
        f"registration hash {data['registration_hash']}\n"
        f"next: send {data_dir / REGISTRATION_FILE} to the governance owner, who reviews and "
        "approves it with `tkms node approve --registration FILE`",
    )
    return 0


def _owner(args: argparse.Namespace) -> Any:
    """The governance client signing as the owner the key options name."""
    from contracts.cliargs import signing_account

    account, choice = signing_account(args)
    return _governance(args, account, development_key=choice.development)


def _reader(args: argparse.Namespace) -> Any:
    """A read-only governance client (`--calldata`: the owner signs elsewhere)."""
    from contracts import GovernanceClient
    from contracts.cliargs import connect

    return GovernanceClient(connect(args.rpc), args.governance)


def _print_calls(args: argparse.Namespace, client: Any, calls: list[tuple[str, Any]]) -> int:
    """`--calldata`: each call simulated as the owner, printed for its multisig or timelock."""
    from contracts._ownercall import owner_call, print_call

    owner = client.get_owner()
    made = [owner_call(client.w3, client.contract, name, *a, caller=owner) for name, a in calls]
    if args.json:
        print(json.dumps(made, indent=2))
    else:
        for call in made:
            print_call(args, call)
    return 0


def cmd_allow_registration(args: argparse.Namespace) -> int:
    if args.calldata:
        from contracts._hexargs import parse_address

        node = parse_address("--node", args.node)
        return _print_calls(args, _reader(args), [("allowNodeRegistration", (node,))])
    client = _owner(args)
    receipt = client.send_allow_node_registration(args.node)
    data = {"node": args.node, "registration_allowed": True, "block": receipt.block}
    _print(args, data, f"{args.node} may register (block {receipt.block})")
    return 0


def fund_from_anvil(w3: Any, address: str, index: int, wei: int = 100 * 10**18) -> None:
    """Development chains only: send `wei` from anvil's well-known account `index`."""
    from web3 import Web3

    from contracts import anvil_account

    funder = anvil_account(index, "--fund-from-anvil-account")
    tx = funder.sign_transaction(
        {
            "to": Web3.to_checksum_address(address),
            "value": wei,
            "gas": 21000,
            "gasPrice": w3.eth.gas_price,
            "nonce": w3.eth.get_transaction_count(funder.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(tx.raw_transaction), timeout=60)


def _collateral(args: argparse.Namespace, document: Any, now: int) -> Collateral | None:
    """Collateral for a hardware quote in the registration (None for simulator quotes)."""
    from attest import fetch_collateral, is_simulator_quote, load_collateral, parse_quote

    if args.collateral is not None:
        return load_collateral(args.collateral)
    if args.pccs_url is None:
        return None  # the review says a hardware quote needs collateral
    quote = parse_registration(document).quote
    if is_simulator_quote(parse_quote(quote)):
        return None
    cache = Path.home() / ".cache" / "tkms" / "collateral"
    return fetch_collateral(quote, pccs_url=args.pccs_url, cache_dir=cache, now=now)


def cmd_approve(args: argparse.Namespace) -> int:
    try:
        document = json.loads(Path(args.registration).read_text())
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read {args.registration}: {exc}")
    client = _reader(args) if args.calldata else _owner(args)
    now = int(time.time())
    reviewed = review_registration(
        client, document, now=now, collateral=_collateral(args, document, now), node=args.node
    )
    if args.calldata:
        return _print_calls(args, client, approval_calls(client, reviewed))
    approval = approve_reviewed(client, reviewed)
    data: dict[str, Any] = {
        "node": approval.node,
        "approved": True,
        "registration_hash": approval.registration_hash.hex(),
        "kms_measurement": approval.measurement.hex(),
        "kms_measurement_added": approval.measurement_added,
    }
    text = (
        f"approved {approval.node} (registration hash {data['registration_hash']}, evidence "
        f"{'simulated' if reviewed.evidence.simulated else 'TDX'}, verified and bound to its keys)"
        f"; KMS measurement {data['kms_measurement']} "
        + ("allowed" if approval.measurement_added else "was already allowed")
    )
    _print(args, data, text)
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from node.config import load_config
    from node.daemon import run_node_blocking
    from node.endpoints import Endpoints
    from node.join import (
        JoinSettings,
        governance_for_node,
        owner_instructions,
        prepare,
        wait_for_approval,
    )

    if args.endpoint is not None:
        endpoints = Endpoints.parse(args.endpoint)
    else:
        endpoints = Endpoints(
            kms=f"{args.host}:{args.kms_port}", peer=f"{args.host}:{args.peer_port}"
        )
    settings = JoinSettings(
        data_dir=args.dir,
        rpc_url=args.rpc,
        governance=_checked_address("--governance", args.governance),
        chain_id=args.chain_id,
        endpoints=endpoints,
        listen_host=args.listen_host,
        metrics=args.metrics,
        tee=args.tee,
        sealing=args.sealing,
        operator=None if args.operator is None else _checked_address("--operator", args.operator),
        fund_from_anvil_account=args.fund_from_anvil_account,
        poll_seconds=args.poll,
        timeout_seconds=args.wait,
        log_format=args.log_format,
    )

    def say(message: str) -> None:
        print(message, flush=True)

    prepared = prepare(settings, say)
    client = governance_for_node(settings)
    instructions = owner_instructions(prepared, settings, int(client.w3.eth.chain_id))
    wait_for_approval(client, prepared, settings, say, instructions=instructions)
    say(
        f"approved: {prepared.address} is a node of {settings.governance}; it takes part in the "
        "next epoch whose committee includes it (the owner: tkms node admit --reshare, or tkms "
        f"chain propose-epoch --kind reshare --add {prepared.address})"
    )
    if args.no_run:
        return 0
    say(f"starting the node (tkms node run --config {prepared.config_path})")
    return int(run_node_blocking(load_config(prepared.config_path)))


def _checked_address(argument: str, value: str) -> str:
    from contracts._hexargs import parse_address

    return str(parse_address(argument, value))


def cmd_admit(args: argparse.Namespace) -> int:
    from contracts import describe_epoch, parse_phases
    from node.admit import admit

    try:
        document = json.loads(Path(args.registration).read_text())
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read {args.registration}: {exc}")
    client = _owner(args)
    if not client.w3.eth.get_code(client.address):
        return _fail(f"--governance: no contract at {client.address} on this chain")
    now = int(time.time())
    lines: list[str] = []

    def say(message: str) -> None:
        lines.append(message)
        if not args.json:
            print(message, flush=True)

    admission = admit(
        client,
        document,
        now=now,
        collateral=_collateral(args, document, now),
        wait_seconds=args.wait,
        say=say,
        reshare=args.reshare,
        threshold=args.threshold,
        phases=parse_phases(args.phases),
    )
    approval = admission.approval
    epoch = admission.reshare
    if epoch is not None:
        say(f"proposed {describe_epoch(epoch)}")
    elif not args.reshare:
        say(
            "next: the node takes part in the next epoch that includes it: tkms chain "
            f"propose-epoch --kind reshare --add {approval.node} (or --kind dkg for the first)"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "node": approval.node,
                    "approved": True,
                    "registration_hash": approval.registration_hash.hex(),
                    "kms_measurement": approval.measurement.hex(),
                    "kms_measurement_added": approval.measurement_added,
                    "registration_allowed_now": admission.allowed_now,
                    "reshare_epoch": None if epoch is None else epoch.epoch,
                    "log": lines,
                },
                indent=2,
            )
        )
    return 0


def cmd_measurement(args: argparse.Namespace) -> int:
    from node.measurement import describe_release, release_measurement

    try:
        document = json.loads(Path(args.registration).read_text())
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read {args.registration}: {exc}")
    measurement = release_measurement(document)
    data = {
        "kms_measurement": measurement.hex(),
        "release": json.loads(describe_release()),
        "platform_of": document.get("address"),
    }
    _print(
        args,
        data,
        f"KMS measurement 0x{measurement.hex()}\n  of release {describe_release()} on the "
        f"platform of {document.get('address')} (its registered evidence)\nbefore upgrading "
        "to this release, the owner allows it: tkms chain allow-kms-measurement --measurement "
        f"0x{measurement.hex()}",
    )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """removeNode and disallowNodeRegistration, after checking what it would cost."""
    from contracts import NodeStatus, Refused, read_state
    from contracts._hexargs import parse_address

    node = parse_address("--node", args.node)
    client = _reader(args) if args.calldata else _owner(args)
    state = read_state(client)
    if not args.calldata and client.sender.lower() != state.owner.lower():
        raise Refused(f"{client.sender} is not the governance owner ({state.owner})")
    status = {n.address.lower(): n.status for n in state.nodes}.get(node.lower(), NodeStatus.NONE)
    allowed = client.is_node_registration_allowed(node)
    if status is NodeStatus.NONE and not allowed:
        raise Refused(f"{node} is neither registered nor allowed to register: nothing to remove")
    committee = state.committee
    members = [m.lower() for m in committee.members] if committee is not None else []
    if committee is not None and node.lower() in members and not args.even_if_member:
        raise Refused(
            f"{node} is a member of the committee (epoch {committee.epoch}): reshare without "
            f"it first (tkms chain propose-epoch --kind reshare --remove {node}); "
            "--even-if-member removes it at once (a compromised node), leaving the committee "
            "one member short until the next reshare"
        )
    calls: list[tuple[str, Any]] = []
    if status not in (NodeStatus.NONE, NodeStatus.REMOVED):
        calls.append(("removeNode", (node,)))
    if allowed:
        calls.append(("disallowNodeRegistration", (node,)))
    if not calls:
        raise Refused(f"{node} is removed and may not register again already")
    if args.calldata:
        return _print_calls(args, client, calls)
    for name, call_args in calls:
        client.transactor.send(client.contract.functions[name](*call_args))
    after = client.get_node(node)
    data = {
        "node": node,
        "status": after.status.name,
        "registration_allowed": client.is_node_registration_allowed(node),
    }
    _print(args, data, f"{node}: {after.status.name}, may not register again")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from node.config import load_config
    from node.daemon import run_node_blocking

    config = load_config(Path(args.config))
    return int(run_node_blocking(config))


def cmd_status(args: argparse.Namespace) -> int:
    from node.admin_service import query_status

    status = query_status(Path(args.dir))
    _print(args, status, "\n".join(f"{k:>24}  {v}" for k, v in status.items()))
    return 0


def _guard(fn: Any) -> Any:
    """Our errors as one line (credentials in the RPC URL redacted), exit status 2."""

    def run(args: argparse.Namespace) -> int:
        from contracts import redact_in

        rpc = getattr(args, "rpc", None)
        try:
            return int(fn(args))
        except NodeError as exc:
            return _fail(redact_in(str(exc), rpc))
        except Exception as exc:
            from web3.exceptions import Web3Exception

            from attest import AttestError
            from contracts import ContractsError

            if isinstance(exc, ContractsError | AttestError | FileNotFoundError | ValueError):
                return _fail(redact_in(str(exc), rpc))
            if isinstance(exc, Web3Exception | OSError):  # the RPC went away or misbehaved
                return _fail(f"JSON-RPC failure: {redact_in(str(exc), rpc)}")
            raise

    return run


def absolute_path(text: str) -> Path:
    """A path given on the command line, made absolute once, here, against the working directory."""
    return Path(os.path.abspath(os.path.expanduser(text)))


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="node_command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "join",
        help="on a new host: identity, registration, wait for the owner's approval, then run",
        description="Creates the node's identity and sealed storage in --dir (or reuses them), "
        "writes registration.json for the governance owner (who runs `tkms node admit`) and "
        "node.toml, waits for gas, for the owner's permission, registers, waits for the "
        "approval, then runs the node, which takes part in the next epoch that includes it. "
        "Run again on the same --dir, it skips what the chain already holds.",
    )
    p.add_argument(
        "--chain",
        "--rpc",
        dest="rpc",
        required=True,
        metavar="URL",
        help="the chain's JSON-RPC URL",
    )
    p.add_argument("--governance", required=True, metavar="ADDR")
    add_chain_id_argument(p)
    p.add_argument(
        "--dir", type=absolute_path, default=Path("/var/lib/tkms"), help="data directory"
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--host", help="the address others reach this node at (IP or DNS name)")
    where.add_argument("--endpoint", help="kms=HOST:PORT,peer=HOST:PORT, for other ports")
    p.add_argument("--kms-port", type=int, default=7001, help="with --host (default 7001)")
    p.add_argument("--peer-port", type=int, default=7002, help="with --host (default 7002)")
    p.add_argument("--listen-host", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    p.add_argument(
        "--metrics", default="127.0.0.1:9101", help="/metrics and /health (default 127.0.0.1:9101)"
    )
    p.add_argument("--tee", choices=("simulator", "tdx"), default="simulator")
    p.add_argument("--sealing", choices=("file", "dstack"), default="file")
    p.add_argument("--operator", metavar="ADDR", help="operator address (default: the node's own)")
    p.add_argument("--fund-from-anvil-account", type=int, help="dev chains: fund the node first")
    p.add_argument(
        "--wait", type=float, metavar="S", help="give up after S seconds (default: never)"
    )
    p.add_argument("--poll", type=float, default=2.0, metavar="S", help=argparse.SUPPRESS)
    p.add_argument("--log-format", choices=("json", "console"), default="json")
    p.add_argument("--no-run", action="store_true", help="stop once approved (run it yourself)")
    p.set_defaults(handler=_guard(cmd_join))

    p = sub.add_parser(
        "admit",
        help="review a joining node's registration.json, allow, wait, approve (governance owner)",
        description="Reviews the registration.json a joining node wrote (evidence verified with "
        "the chain's policy, bound to the node's keys), allows the node to register, waits "
        "until the chain holds exactly that registration, approves it and allows its KMS "
        "measurement; with --reshare, once the node serves, proposes the reshare that adds it. "
        "Nothing is approved if a check fails.",
    )
    add_rpc_argument(p)
    p.add_argument("--governance", required=True)
    p.add_argument("--registration", required=True, type=absolute_path, metavar="FILE")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--collateral", type=absolute_path, metavar="FILE", help="DCAP collateral (TDX quotes)"
    )
    source.add_argument("--pccs-url", metavar="URL", help="fetch DCAP collateral from this PCCS")
    p.add_argument(
        "--wait", type=float, default=600.0, metavar="S", help="for the node (default 600 s)"
    )
    p.add_argument(
        "--reshare", action="store_true", help="then propose the reshare that adds the node"
    )
    p.add_argument("--threshold", type=int, help="of the reshare (default: the current one)")
    p.add_argument("--phases", metavar="K,D,C,J,F", help="of the reshare (blocks, each >= 3)")
    _owner_arguments(p)
    p.set_defaults(handler=_guard(cmd_admit))

    p = sub.add_parser("init", help="create a node identity and its evidence")
    p.add_argument("--dir", required=True, type=absolute_path, help="data directory (created)")
    p.add_argument("--tee", choices=("simulator", "tdx"), default="simulator")
    p.add_argument("--sealing", choices=("file", "dstack"), default="file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_guard(cmd_init))

    p = sub.add_parser("allow-registration", help="let a node address register (governance owner)")
    add_rpc_argument(p)
    p.add_argument("--governance", required=True)
    p.add_argument("--node", required=True, help="the node's address (from its registration.json)")
    _owner_arguments(p, calldata=True)
    p.set_defaults(handler=_guard(cmd_allow_registration))

    p = sub.add_parser("register", help="register the node on chain (from its own address)")
    p.add_argument("--dir", required=True, type=absolute_path)
    add_rpc_argument(p)
    p.add_argument("--governance", required=True)
    p.add_argument("--endpoint", required=True, help="kms=HOST:PORT,peer=HOST:PORT")
    add_chain_id_argument(p)
    p.add_argument("--operator", help="operator address (default: the node's own)")
    p.add_argument("--fund-from-anvil-account", type=int, help="dev chains: fund the node first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_guard(cmd_register))

    p = sub.add_parser(
        "approve",
        help="review a node's registration and approve exactly it (governance owner)",
        description="Verifies the registration's evidence (quote with the chain's policy, event "
        "log, identity), its tkms-node:v1 binding to the node's TLS key, deal key and address, "
        "and that the chain holds exactly this registration; then approves its hash and allows "
        "the KMS measurement of the verified evidence. Nothing is sent if a check fails.",
    )
    add_rpc_argument(p)
    p.add_argument("--governance", required=True)
    p.add_argument(
        "--registration",
        required=True,
        type=absolute_path,
        help="the node's registration.json after `tkms node register` (reviewed)",
    )
    p.add_argument("--node", help="the node's address; if given, must be the file's")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--collateral", type=absolute_path, metavar="FILE", help="DCAP collateral (TDX quotes)"
    )
    source.add_argument("--pccs-url", metavar="URL", help="fetch DCAP collateral from this PCCS")
    _owner_arguments(p, calldata=True)
    p.set_defaults(handler=_guard(cmd_approve))

    p = sub.add_parser(
        "remove",
        help="remove a node and stop it registering again (governance owner)",
    )
    add_rpc_argument(p)
    p.add_argument("--governance", required=True)
    p.add_argument("--node", required=True, metavar="ADDR")
    p.add_argument(
        "--even-if-member",
        action="store_true",
        help="remove a committee member at once (else: reshare without it first)",
    )
    _owner_arguments(p, calldata=True)
    p.set_defaults(handler=_guard(cmd_remove))

    p = sub.add_parser(
        "measurement",
        help="the KMS measurement this release has on a registered node's platform (upgrades)",
    )
    p.add_argument("--registration", required=True, type=absolute_path, metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_guard(cmd_measurement))

    p = sub.add_parser("run", help="run the node daemon")
    p.add_argument("--config", required=True, type=absolute_path, help="TOML config file")
    p.set_defaults(handler=_guard(cmd_run))

    p = sub.add_parser("status", help="status of the running node (admin socket)")
    p.add_argument("--dir", required=True, type=absolute_path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_guard(cmd_status))


def _owner_arguments(p: argparse.ArgumentParser, *, calldata: bool = False) -> None:
    add_signer_arguments(p, "the governance owner")
    p.add_argument("--json", action="store_true")
    if calldata:
        p.add_argument(
            "--calldata",
            action="store_true",
            help="send nothing: check, simulate as the owner and print the calls for an owner "
            "that is a multisig or a timelock",
        )
