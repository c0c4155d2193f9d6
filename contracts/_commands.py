"""Handlers of the `tkms chain ...` and `tkms app ...` commands (parsers are in cli.py).

Exit status: 0 success (for `app check`: allowed), 1 the chain refused or `app check` denied,
2 malformed input (the message names the argument). Errors go to stderr as `error: ...`.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from web3 import Web3
from web3.exceptions import Web3Exception

from contracts._anvil import anvil_command
from contracts._app import AppAuthClient, checked_env_version
from contracts._audit import CUSTOM_CONTROLLER, AuditReader
from contracts._deploy import deploy
from contracts._devchain import require_dev_chain
from contracts._governance import GovernanceClient
from contracts._hexargs import parse_address, parse_bytes32
from contracts._ownercall import owner_call, print_call
from contracts._register import predicted_app_id, register_app, register_controller
from contracts._tx import Receipt, Transactor
from contracts._types import AppBootInfo
from contracts.cliargs import connect, redact_in, signing_transactor
from contracts.errors import ContractsError, InvalidInput

Handler = Callable[[argparse.Namespace], int]

EXIT_OK, EXIT_REFUSED, EXIT_INPUT = 0, 1, 2


def guarded(handler: Handler) -> Handler:
    """Turns our errors into a one-line message and an exit status; the RPC URL's
    credentials are redacted from every message."""

    def run(args: argparse.Namespace) -> int:
        def error(text: str) -> None:
            print(f"error: {redact_in(text, getattr(args, 'rpc', None))}", file=sys.stderr)

        try:
            return handler(args)
        except InvalidInput as exc:
            error(str(exc))
            return EXIT_INPUT
        except ContractsError as exc:
            error(exc.diagnostics())
            return EXIT_REFUSED
        except (Web3Exception, OSError) as exc:
            # The node went away mid-command, or answered something web3 could not use.
            error(f"JSON-RPC failure: {exc}")
            return EXIT_REFUSED

    return run


def emit(args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    print(json.dumps(document, indent=2) if args.json else text)


def existing_contract(w3: Web3, argument: str, value: str) -> str:
    address = parse_address(argument, value)
    if not w3.eth.get_code(address):
        raise InvalidInput(argument, f"no contract at {address} on this chain")
    return address


def governance_client(
    w3: Web3, args: argparse.Namespace, tx: Transactor | None
) -> GovernanceClient:
    return GovernanceClient(w3, existing_contract(w3, "--governance", args.governance), tx)


def tx_fields(receipt: Receipt) -> dict[str, Any]:
    return {"tx_hash": receipt.tx_hash, "block": receipt.block}


class _Terminated(Exception):
    pass


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def run_anvil(args: argparse.Namespace) -> int:
    command = anvil_command(args.port, block_time=args.block_time)
    print(f"anvil on http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
    # SIGTERM (a supervisor, `kill`) must stop anvil too, not orphan it.
    signal.signal(signal.SIGTERM, _raise_terminated)
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except (KeyboardInterrupt, _Terminated):
        process.terminate()
        process.wait()
        return EXIT_OK


def run_deploy(args: argparse.Namespace) -> int:
    w3 = connect(args.rpc)
    if args.allow_simulator:
        require_dev_chain(int(w3.eth.chain_id), "--allow-simulator")
    deployment = deploy(signing_transactor(w3, args), allow_simulator=args.allow_simulator)
    document = {"governance": deployment.governance, "app_factory": deployment.app_factory}
    emit(
        args, document, f"governance  {deployment.governance}\napp_factory {deployment.app_factory}"
    )
    return EXIT_OK


def run_os_image(allow: bool) -> Handler:
    def run(args: argparse.Namespace) -> int:
        w3 = connect(args.rpc)
        image = parse_bytes32("--os-image-hash", args.os_image_hash)
        if args.calldata:
            reader = governance_client(w3, args, None)
            function = "addOsImage" if allow else "removeOsImage"
            call = owner_call(w3, reader.contract, function, image, caller=reader.get_owner())
            return print_call(args, call)
        governance = governance_client(w3, args, signing_transactor(w3, args))
        if allow:
            receipt = governance.send_add_os_image(image)
        else:
            receipt = governance.send_remove_os_image(image)
        verb = "allowed" if allow else "revoked"
        document = {"os_image_hash": "0x" + image.hex(), "allowed": allow, **tx_fields(receipt)}
        emit(args, document, f"{verb} OS image 0x{image.hex()} (tx {receipt.tx_hash})")
        return EXIT_OK

    return run


def run_kms_measurement(allow: bool) -> Handler:
    def run(args: argparse.Namespace) -> int:
        w3 = connect(args.rpc)
        measurement = parse_bytes32("--measurement", args.measurement)
        function = "addKmsMeasurement" if allow else "removeKmsMeasurement"
        if args.calldata:
            reader = governance_client(w3, args, None)
            call = owner_call(w3, reader.contract, function, measurement, caller=reader.get_owner())
            return print_call(args, call)
        governance = governance_client(w3, args, signing_transactor(w3, args))
        if allow:
            receipt = governance.send_add_kms_measurement(measurement)
        else:
            receipt = governance.send_remove_kms_measurement(measurement)
        now = governance.is_kms_measurement_allowed(measurement, block=receipt.block)
        document = {
            "kms_measurement": "0x" + measurement.hex(),
            "allowed": now,
            **tx_fields(receipt),
        }
        verb = "allowed" if allow else "revoked"
        emit(args, document, f"{verb} KMS measurement 0x{measurement.hex()} (tx {receipt.tx_hash})")
        return EXIT_OK

    return run


def run_audit(args: argparse.Namespace) -> int:
    w3 = connect(args.rpc)
    address = existing_contract(w3, "--governance", args.governance)
    reader = AuditReader(w3, address)
    history = reader.history(from_block=args.from_block)
    if args.json:
        print(json.dumps([event.to_json() for event in history], indent=2))
    else:
        for event in history:
            print(event.to_line())
    for line in audit_caveats(reader):
        print(line, file=sys.stderr)
    return EXIT_OK


def audit_caveats(reader: AuditReader) -> list[str]:
    """What the history above does not prove, one line each (printed on stderr)."""
    lines = [
        f"note: app {app} has a custom controller (code hash {digest}): {CUSTOM_CONTROLLER}; "
        "it can change who gets the app's keys without an event"
        for app, digest in sorted(reader.custom_controllers.items())
    ]
    lines += [
        f"note: {registrar} registered apps but is not the governance's app factory: "
        "its own events are not part of this history"
        for registrar in sorted(reader.foreign_registrars)
    ]
    return lines


def run_register(args: argparse.Namespace) -> int:
    if args.controller is not None:
        return run_register_controller(args)
    w3 = connect(args.rpc)
    hashes = [parse_bytes32("--compose-hash", h) for h in args.compose_hash]
    devices = [parse_bytes32("--device-id", d) for d in args.device_id]
    salt = None if args.salt is None else parse_bytes32("--salt", args.salt)
    governance = governance_client(w3, args, signing_transactor(w3, args))
    app = register_app(
        governance,
        salt=salt,
        compose_hashes=hashes,
        device_ids=devices,
        allow_any_device=args.any_device,
    )
    document = {
        "app_id": app.app_id,
        "owner": app.owner,
        "app_factory": app.factory,
        "salt": "0x" + app.salt.hex(),
        **tx_fields(app.receipt),
    }
    text = (
        f"app_id {app.app_id} (owner {app.owner}, factory {app.factory}, "
        f"salt 0x{app.salt.hex()}, tx {app.receipt.tx_hash})"
    )
    emit(args, document, text)
    return EXIT_OK


def run_register_controller(args: argparse.Namespace) -> int:
    factory_options = [
        name
        for name, given in (
            ("--salt", args.salt is not None),
            ("--compose-hash", bool(args.compose_hash)),
            ("--device-id", bool(args.device_id)),
            ("--any-device", args.any_device),
        )
        if given
    ]
    if factory_options:
        raise InvalidInput(
            "--controller",
            f"registers an existing contract: {', '.join(factory_options)} set up a new "
            "AppAuth and cannot go with it (the controller's owner sets its policy)",
        )
    w3 = connect(args.rpc)
    governance = governance_client(w3, args, signing_transactor(w3, args))
    app = register_controller(governance, args.controller)
    document = {
        "app_id": app.app_id,
        "controller": app.app_id,
        "code_hash": app.code_hash,
        **tx_fields(app.receipt),
    }
    text = (
        f"app_id {app.app_id} (existing controller, code hash {app.code_hash}, "
        f"tx {app.receipt.tx_hash})\nnote: {CUSTOM_CONTROLLER} (flagged by tkms chain audit): "
        "the controller can change who gets the app's keys without an event"
    )
    emit(args, document, text)
    return EXIT_OK


def run_predict_id(args: argparse.Namespace) -> int:
    w3 = connect(args.rpc)
    owner = parse_address("--owner", args.owner)
    salt = parse_bytes32("--salt", args.salt)
    factory, app_id = predicted_app_id(governance_client(w3, args, None), owner, salt)
    deployed = bool(w3.eth.get_code(Web3.to_checksum_address(app_id)))
    document = {"app_id": app_id, "owner": owner, "app_factory": factory, "deployed": deployed}
    state = "deployed" if deployed else "not deployed yet"
    emit(args, document, f"app_id {app_id} (owner {owner}, factory {factory}, {state})")
    return EXIT_OK


def run_compose(allow: bool) -> Handler:
    def run(args: argparse.Namespace) -> int:
        w3 = connect(args.rpc)
        app_id = existing_contract(w3, "--app-id", args.app_id)
        compose_hash = parse_bytes32("--compose-hash", args.compose_hash)
        if args.calldata:
            function = "addComposeHash" if allow else "removeComposeHash"
            return app_owner_call(args, function, compose_hash)
        app = AppAuthClient(w3, app_id, signing_transactor(w3, args))
        if allow:
            receipt = app.send_add_compose_hash(compose_hash)
        else:
            receipt = app.send_remove_compose_hash(compose_hash)
        verb = "allowed" if allow else "revoked"
        document = {
            "app_id": app_id,
            "compose_hash": "0x" + compose_hash.hex(),
            "allowed": allow,
            **tx_fields(receipt),
        }
        emit(args, document, f"{verb} compose hash 0x{compose_hash.hex()} for {app_id}")
        return EXIT_OK

    return run


def app_owner_call(args: argparse.Namespace, function: str, *call_args: Any) -> int:
    """`--calldata`: print the call the owner of the AppAuth at `--app-id` (a multisig or a
    timelock) should make, after simulating it as that owner at the head; sends nothing."""
    w3 = connect(args.rpc)
    reader = AppAuthClient(w3, existing_contract(w3, "--app-id", args.app_id))
    call = owner_call(w3, reader.contract, function, *call_args, caller=reader.get_owner())
    return print_call(args, call)


def owned_app(args: argparse.Namespace) -> AppAuthClient:
    """The AppAuth at `--app-id`, sending as the signer the arguments name (its owner)."""
    w3 = connect(args.rpc)
    return AppAuthClient(
        w3, existing_contract(w3, "--app-id", args.app_id), signing_transactor(w3, args)
    )


def run_env_signer(args: argparse.Namespace) -> int:
    if args.calldata:
        return app_owner_call(args, "setEnvSigner", parse_address("--signer", args.signer))
    app = owned_app(args)
    receipt = app.send_set_env_signer(parse_address("--signer", args.signer))
    document = {"app_id": app.address, "env_signer": app.get_env_signer(), **tx_fields(receipt)}
    emit(args, document, f"env signer of {app.address} is now {document['env_signer']}")
    return EXIT_OK


def run_env_version(args: argparse.Namespace) -> int:
    if args.calldata:
        return app_owner_call(args, "setEnvVersion", checked_env_version(args.version))
    app = owned_app(args)
    receipt = app.send_set_env_version(args.version)
    document = {"app_id": app.address, "env_version": args.version, **tx_fields(receipt)}
    emit(args, document, f"env version of {app.address} is now {args.version}")
    return EXIT_OK


def run_live_revocation(args: argparse.Namespace) -> int:
    if args.calldata:
        return app_owner_call(args, "setLiveRevocationBlocks", args.blocks)
    app = owned_app(args)
    receipt = app.send_set_live_revocation_blocks(args.blocks)
    document = {"app_id": app.address, "live_revocation_blocks": args.blocks, **tx_fields(receipt)}
    state = (
        f"on: running agents stop serving keys within {args.blocks} blocks of a revocation"
        if args.blocks
        else "off: running agents keep the keys they fetched at boot"
    )
    emit(args, document, f"live revocation of {app.address} is {state}")
    return EXIT_OK


def run_dstack_kms(args: argparse.Namespace) -> int:
    if args.calldata:
        return app_owner_call(args, "setDstackKmsRelease", bool(args.enable))
    app = owned_app(args)
    receipt = app.send_set_dstack_kms_release(bool(args.enable))
    allowed = app.get_dstack_kms_release()
    document = {"app_id": app.address, "dstack_kms_release": allowed, **tx_fields(receipt)}
    state = "may" if allowed else "may no longer"
    emit(args, document, f"a KMS node {state} assemble the keys of {app.address} for dstack guests")
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    w3 = connect(args.rpc)
    governance = governance_client(w3, args, None)
    info = AppBootInfo(
        app_id=parse_address("--app-id", args.app_id),
        compose_hash=parse_bytes32("--compose-hash", args.compose_hash),
        device_id=parse_bytes32("--device-id", args.device_id),
        os_image_hash=parse_bytes32("--os-image-hash", args.os_image_hash),
        tcb_status=args.tcb_status,
    )
    block = w3.eth.block_number
    decision = governance.is_app_allowed(info, block=block)
    document = {"allowed": decision.allowed, "reason": decision.reason}
    text = "allowed" if decision.allowed else f"denied: {decision.reason}"
    emit(args, document, f"{text} (block {block})")
    return EXIT_OK if decision.allowed else EXIT_REFUSED
