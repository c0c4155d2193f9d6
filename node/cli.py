"""`tkms node ...`: init, register, approve, run, status.

tkms node init --dir DIR [--tee simulator|tdx] [--sealing file|dstack] [--json]
tkms node register --dir DIR --rpc URL --governance ADDR --endpoint kms=H:P,peer=H:P
                   [--fund-from-anvil-account N] [--json]
tkms node approve --rpc URL --governance ADDR --node ADDR (--private-key HEX | --anvil-account N)
tkms node run --config FILE
tkms node status --dir DIR [--json]        (asks the running node over its admin socket)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from attest import event_log_to_json
from node.errors import NodeError
from node.identity import IDENTITY_FILE, create_identity, load_identity
from node.sealing import make_directory, open_sealer, write_atomic
from node.tee import make_provider, measure_node_boot

REGISTRATION_FILE = "registration.json"


def _fail(message: str) -> int:
    print(f"tkms node: {message}", file=sys.stderr)
    return 2


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else text)


def evidence_hash(quote: bytes, event_log: str) -> bytes:
    """What the registry stores about a node's evidence: SHA-256(quote ‖ event log JSON)."""
    return hashlib.sha256(quote + event_log.encode()).digest()


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
        "deal_public_key": identity.deal_public_key.hex(),
        "report_data": identity.report_data().hex(),
        "evidence": {"quote": quote.hex(), "event_log": event_log},
        "evidence_hash": evidence_hash(quote, event_log).hex(),
    }
    write_atomic(
        data_dir / REGISTRATION_FILE, json.dumps(registration, indent=2).encode(), mode=0o644
    )
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
        "next: tkms node register --dir ... --rpc ... --governance ... --endpoint kms=H:P,peer=H:P",
    )
    return 0


def _governance(rpc: str, governance: str, account: Any) -> Any:
    from web3 import HTTPProvider, Web3

    from contracts import GovernanceClient, Transactor

    w3 = Web3(HTTPProvider(rpc, request_kwargs={"timeout": 30}))
    return GovernanceClient(w3, governance, Transactor(w3, account))


def cmd_register(args: argparse.Namespace) -> int:
    from node.endpoints import Endpoints

    data_dir = Path(args.dir)
    endpoints = Endpoints.parse(args.endpoint)
    registration = json.loads((data_dir / REGISTRATION_FILE).read_text())
    sealer = open_sealer(registration["sealing"], data_dir)
    identity = load_identity(data_dir, sealer)
    if args.fund_from_anvil_account is not None:
        from web3 import HTTPProvider, Web3

        fund_from_anvil(
            Web3(HTTPProvider(args.rpc)), identity.eth_account.address, args.fund_from_anvil_account
        )
    client = _governance(args.rpc, args.governance, identity.eth_account)
    receipt = client.send_register_node(
        operator=args.operator or identity.eth_account.address,
        endpoint=str(endpoints),
        tls_key_hash=identity.tls_key_hash,
        deal_key=identity.deal_public_key,
        evidence_hash=bytes.fromhex(registration["evidence_hash"]),
    )
    info = client.get_node(identity.eth_account.address)
    data = {
        "node": identity.eth_account.address,
        "registration_hash": info.registration_hash.hex(),
        "block": receipt.block,
    }
    _print(
        args,
        data,
        f"registered {data['node']} in block {data['block']}\n"
        f"registration hash {data['registration_hash']}\n"
        "next: the governance owner approves it with `tkms node approve`",
    )
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


def registration_measurement(registration: dict[str, Any]) -> bytes:
    """The KMS measurement (mr_aggregated) a node's registration evidence shows.

    This is what governance allows with `addKmsMeasurement`; peers check each other against it.
    Read it only from evidence you have verified (the owner's review of the registration).
    """
    from attest import compute_app_identity, parse_event_log, parse_quote, read_pck_info

    quote = parse_quote(bytes.fromhex(registration["evidence"]["quote"]))
    entries = parse_event_log(registration["evidence"]["event_log"])
    ppid = read_pck_info(quote).ppid if quote.signature.pck_chain_pem else None
    return compute_app_identity(entries, quote.td_report, ppid=ppid).mr_aggregated


def cmd_approve(args: argparse.Namespace) -> int:
    from contracts import account_from_key, anvil_account

    if args.private_key:
        owner = account_from_key(args.private_key, "--private-key")
    else:
        owner = anvil_account(args.anvil_account, "--anvil-account")
    client = _governance(args.rpc, args.governance, owner)
    info = client.get_node(args.node)
    client.send_approve_node(args.node, info.registration_hash)
    data: dict[str, Any] = {"node": args.node, "approved": True}
    if args.registration:
        measurement = registration_measurement(json.loads(Path(args.registration).read_text()))
        if not client.is_kms_measurement_allowed(measurement):
            client.send_add_kms_measurement(measurement)
        data["kms_measurement"] = measurement.hex()
    text = f"approved {args.node}"
    if "kms_measurement" in data:
        text += f"; KMS measurement {data['kms_measurement']} allowed"
    _print(args, data, text)
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
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except NodeError as exc:
            return _fail(str(exc))
        except Exception as exc:
            from contracts import ContractsError

            if isinstance(exc, ContractsError | FileNotFoundError | ValueError):
                return _fail(str(exc))
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

    p = sub.add_parser("init", help="create a node identity and its evidence")
    p.add_argument("--dir", required=True, type=absolute_path, help="data directory (created)")
    p.add_argument("--tee", choices=("simulator", "tdx"), default="simulator")
    p.add_argument("--sealing", choices=("file", "dstack"), default="file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_guard(cmd_init))

    p = sub.add_parser("register", help="register the node on chain (from its own address)")
    p.add_argument("--dir", required=True, type=absolute_path)
    p.add_argument("--rpc", required=True)
    p.add_argument("--governance", required=True)
    p.add_argument("--endpoint", required=True, help="kms=HOST:PORT,peer=HOST:PORT")
    p.add_argument("--operator", help="operator address (default: the node's own)")
    p.add_argument("--fund-from-anvil-account", type=int, help="dev chains: fund the node first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_guard(cmd_register))

    p = sub.add_parser("approve", help="approve a registered node (governance owner)")
    p.add_argument("--rpc", required=True)
    p.add_argument("--governance", required=True)
    p.add_argument("--node", required=True, help="the node's address")
    p.add_argument(
        "--registration",
        type=absolute_path,
        help="the node's registration.json: also allow its KMS measurement",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--private-key")
    who.add_argument("--anvil-account", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_guard(cmd_approve))

    p = sub.add_parser("run", help="run the node daemon")
    p.add_argument("--config", required=True, type=absolute_path, help="TOML config file")
    p.set_defaults(handler=_guard(cmd_run))

    p = sub.add_parser("status", help="status of the running node (admin socket)")
    p.add_argument("--dir", required=True, type=absolute_path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_guard(cmd_status))
