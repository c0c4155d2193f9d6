"""`tkms chain ...` (local chain, deployment, audit) and `tkms app ...` (register, govern, check).

`register` is called once per command name this package owns: "chain" and "app". Handlers
import their module (and web3) only when they run, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from contracts.cliargs import add_rpc_argument, add_signer_arguments

Handler = Callable[[argparse.Namespace], int]

ZERO32 = "0x" + "00" * 32


def register(subparsers: Any, name: str, help_text: str) -> None:
    if name == "keeper":
        _register_keeper(subparsers, help_text)
        return
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    if name == "chain":
        _register_chain(sub)
        _register_owner(sub)
    elif name == "app":
        _register_app(sub)
    else:
        raise ValueError(f"contracts.cli registers 'chain', 'app' and 'keeper', not {name!r}")


def _rpc(parser: argparse.ArgumentParser) -> None:
    add_rpc_argument(parser)


def _governance(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--governance", required=True, metavar="ADDR", help="KmsGovernance address")


def _key(parser: argparse.ArgumentParser, who: str) -> None:
    add_signer_arguments(parser, who)


def _salt(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--salt",
        required=required,
        metavar="HEX",
        help="32 bytes; the app id depends only on (factory, owner, salt)"
        + ("" if required else " (default: random)"),
    )


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _calldata(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calldata",
        action="store_true",
        help="send nothing: check, simulate as the owner, and print the call (to, data) for an "
        "owner that is a multisig or a timelock to make",
    )


def _lazy(function: str, *factory_args: bool, module: str = "contracts._commands") -> Handler:
    """A handler that imports `module` when called and runs `function` there."""

    def handler(args: argparse.Namespace) -> int:
        commands = importlib.import_module("contracts._commands")
        target = getattr(importlib.import_module(module), function)
        if factory_args:
            target = target(*factory_args)
        run: Handler = commands.guarded(target)
        return run(args)

    return handler


def _owner_lazy(function: str) -> Handler:
    return _lazy(function, module="contracts._owner_commands")


def _leaf(
    sub: Any, name: str, help_text: str, handler: Handler, description: str | None = None
) -> Any:
    parser = sub.add_parser(name, help=help_text, description=description or help_text)
    parser.set_defaults(handler=handler)
    return parser


COMPOSE_DESCRIPTION = {
    "allow": "allow a compose hash for an app (app owner only): the nodes derive keys for it "
    "from the block the transaction is in",
    "revoke": "revoke a compose hash for an app (app owner only). The nodes refuse new "
    "derivations for it from the block the revocation is in, so no new instance of it gets "
    "keys; an instance already running keeps serving the keys it fetched at boot, as with "
    "dstack, unless the app opted in to live revocation (`tkms app set-live-revocation`): then "
    "its agent stops serving keys within that many blocks. Keys an app already handed out "
    "(copied, written to disk, sent away) are out of anyone's reach: rotate what they protect",
}


def _blocks(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of blocks: {text!r}") from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"must be 0 (off) to 2**64-1 blocks, got {value}")
    return value


def _register_chain(sub: Any) -> None:
    anvil = _leaf(sub, "anvil", "run a local anvil chain in the foreground", _lazy("run_anvil"))
    anvil.add_argument("--port", type=int, default=8545, help="port on 127.0.0.1 (default 8545)")
    anvil.add_argument("--block-time", type=float, metavar="S", help="mine every S seconds")

    deploy = _leaf(sub, "deploy", "deploy KmsGovernance and its app factory", _lazy("run_deploy"))
    _rpc(deploy)
    _key(deploy, "the deployer (the governance owner)")
    deploy.add_argument(
        "--allow-simulator",
        action="store_true",
        help="accept simulated TEEs (refused unless the chain id is 31337 or 1337)",
    )
    _json(deploy)

    for verb, allow in (("allow", True), ("revoke", False)):
        image = _leaf(
            sub,
            f"{verb}-os-image",
            f"{verb} an OS image hash (owner only)",
            _lazy("run_os_image", allow),
        )
        _rpc(image)
        _governance(image)
        _key(image, "the governance owner")
        image.add_argument("--os-image-hash", required=True, metavar="HEX")
        _calldata(image)
        _json(image)

    for verb, allow in (("allow", True), ("revoke", False)):
        measurement = _leaf(
            sub,
            f"{verb}-kms-measurement",
            f"{verb} a KMS node measurement (mr_aggregated; owner only): peers accept a node only "
            "with an allowed one (`tkms node measurement` computes a release's)",
            _lazy("run_kms_measurement", allow),
        )
        _rpc(measurement)
        _governance(measurement)
        _key(measurement, "the governance owner")
        measurement.add_argument("--measurement", required=True, metavar="HEX")
        _calldata(measurement)
        _json(measurement)

    audit = _leaf(
        sub,
        "audit",
        "the governance history from events, oldest first. Complete only for apps whose "
        "controller runs tkms's AppAuth: apps with custom controllers are flagged, their "
        "decisions are not audited",
        _lazy("run_audit"),
    )
    _rpc(audit)
    _governance(audit)
    audit.add_argument("--from-block", type=int, default=0, metavar="N")
    _json(audit)


def _register_app(sub: Any) -> None:
    register_app = _leaf(
        sub,
        "register",
        "deploy an AppAuth owned by you through the governance's app factory and register it; "
        "the factory and the new app are checked against the contracts tkms ships. With "
        "--controller: register an existing contract implementing dstack's IAppAuth (e.g. a "
        "DstackApp) instead",
        _lazy("run_register"),
    )
    _rpc(register_app)
    _governance(register_app)
    _key(register_app, "the app owner")
    _salt(register_app, required=False)
    register_app.add_argument(
        "--compose-hash", action="append", default=[], metavar="HEX", help="repeatable"
    )
    register_app.add_argument(
        "--device-id", action="append", default=[], metavar="HEX", help="repeatable"
    )
    register_app.add_argument("--any-device", action="store_true", help="allow every device")
    register_app.add_argument(
        "--controller",
        metavar="ADDR",
        help="an existing IAppAuth contract (checked with ERC-165); its address is the app id",
    )
    _json(register_app)

    for verb, allow in (("allow", True), ("revoke", False)):
        compose = _leaf(
            sub,
            f"{verb}-compose",
            f"{verb} a compose hash for an app (app owner only)",
            _lazy("run_compose", allow),
            COMPOSE_DESCRIPTION[verb],
        )
        _rpc(compose)
        _key(compose, "the app owner")
        compose.add_argument("--app-id", required=True, metavar="HEX")
        compose.add_argument("--compose-hash", required=True, metavar="HEX")
        _calldata(compose)
        _json(compose)

    live = _leaf(
        sub,
        "set-live-revocation",
        "make running agents stop serving keys within N blocks of a revocation (app owner only)",
        _lazy("run_live_revocation"),
        "opt the app in to live revocation (app owner only): its running agents confirm every "
        "N/2 blocks that the network still derives their keys, and stop serving keys within N "
        "blocks of a revocation, or once N blocks pass without that confirmation (the nodes "
        "unreachable, the agent's chain view stale); 0 turns it off (dstack's behaviour: a "
        "running agent keeps the keys it fetched at boot)",
    )
    _rpc(live)
    _key(live, "the app owner")
    live.add_argument("--app-id", required=True, metavar="HEX")
    live.add_argument(
        "--blocks", required=True, type=_blocks, metavar="N", help="0 (off) or a number of blocks"
    )
    _calldata(live)
    _json(live)

    env_signer = _leaf(
        sub,
        "set-env-signer",
        "name who signs the app's encrypted env (app owner only)",
        _lazy("run_env_signer"),
    )
    _rpc(env_signer)
    _key(env_signer, "the app owner")
    env_signer.add_argument("--app-id", required=True, metavar="HEX")
    env_signer.add_argument("--signer", required=True, metavar="ADDR", help="zero: no env")
    _calldata(env_signer)
    _json(env_signer)

    env_version = _leaf(
        sub,
        "set-env-version",
        "raise the env version agents accept (app owner only; older envs stop working)",
        _lazy("run_env_version"),
    )
    _rpc(env_version)
    _key(env_version, "the app owner")
    env_version.add_argument("--app-id", required=True, metavar="HEX")
    env_version.add_argument("--version", required=True, type=int, metavar="N")
    _calldata(env_version)
    _json(env_version)

    dstack_kms = _leaf(
        sub,
        "set-dstack-kms",
        "let one KMS node assemble the app's keys for an unmodified dstack guest, or stop it "
        "(app owner only; docs/dstack-kms.md)",
        _lazy("run_dstack_kms"),
    )
    _rpc(dstack_kms)
    _key(dstack_kms, "the app owner")
    dstack_kms.add_argument("--app-id", required=True, metavar="HEX")
    release = dstack_kms.add_mutually_exclusive_group(required=True)
    release.add_argument("--enable", action="store_true", help="opt the app in")
    release.add_argument("--disable", action="store_true", help="opt the app out")
    _calldata(dstack_kms)
    _json(dstack_kms)

    predict = _leaf(
        sub,
        "predict-id",
        "the app id `app register --salt SALT` will give OWNER (bound to the owner: nobody "
        "else can deploy an app there)",
        _lazy("run_predict_id"),
    )
    _rpc(predict)
    _governance(predict)
    predict.add_argument("--owner", required=True, metavar="ADDR", help="the future app owner")
    _salt(predict, required=True)
    _json(predict)

    check = _leaf(
        sub, "check", "ask the governance whether an app identity may get keys", _lazy("run_check")
    )
    _rpc(check)
    _governance(check)
    check.add_argument("--app-id", required=True, metavar="HEX")
    check.add_argument("--compose-hash", required=True, metavar="HEX")
    check.add_argument("--device-id", default=ZERO32, metavar="HEX")
    check.add_argument("--tcb-status", default="UpToDate", metavar="S")
    check.add_argument("--os-image-hash", default=ZERO32, metavar="HEX")
    _json(check)


def _owner_leaf(sub: Any, name: str, help_text: str, function: str, who: str | None) -> Any:
    """A `tkms chain` command on the governance: --rpc, --governance, --json, and a signer
    (`who`; None: read-only)."""
    parser = _leaf(sub, name, help_text, _owner_lazy(function))
    _rpc(parser)
    _governance(parser)
    if who is not None:
        _key(parser, who)
    _json(parser)
    return parser


def _register_owner(sub: Any) -> None:
    _owner_leaf(
        sub,
        "status",
        "the governance's state: owner, generations, committee, running epoch, schedule, nodes",
        "run_status",
        None,
    )

    propose = _owner_leaf(
        sub,
        "propose-epoch",
        "propose an epoch (owner; anyone for the scheduled refresh once due): checked against "
        "the chain first, then sent; prints the epoch and its deadlines",
        "run_propose_epoch",
        "the governance owner (or anyone, for the scheduled refresh)",
    )
    propose.add_argument("--kind", required=True, choices=("dkg", "reshare", "refresh", "rotate"))
    propose.add_argument(
        "--members",
        action="append",
        metavar="ADDR[,ADDR...]",
        help="the committee, in order (default: the current committee; for a DKG every "
        "approved node)",
    )
    propose.add_argument(
        "--add", action="append", metavar="ADDR", help="add an approved node (repeatable)"
    )
    propose.add_argument("--remove", action="append", metavar="ADDR", help="drop a member")
    propose.add_argument(
        "--threshold",
        type=int,
        metavar="T",
        help="default: the current one (reshare, refresh), else n/2+1",
    )
    propose.add_argument(
        "--phases",
        metavar="K,D,C,J,F",
        help="blocks of Keys, Deal, Complain, Justify, Confirm, each >= 3 (default: the refresh "
        "schedule's for a refresh, else 5,10,10,10,10)",
    )
    _calldata(propose)

    cancel = _owner_leaf(
        sub, "cancel-epoch", "cancel the running epoch (owner)", "run_cancel_epoch", "the owner"
    )
    cancel.add_argument("--epoch", type=int, metavar="N", help="must be the running one")
    _calldata(cancel)

    timeout = _owner_leaf(
        sub,
        "timeout-epoch",
        "fail the running epoch once past its Confirm deadline (anyone)",
        "run_timeout_epoch",
        "any funded account",
    )
    timeout.add_argument("--epoch", type=int, metavar="N", help="must be the running one")

    retire = _owner_leaf(
        sub,
        "retire-generation",
        "retire a previous key generation: nodes erase its shares (owner at any time, anyone "
        "after its window)",
        "run_retire_generation",
        "the owner (or anyone after the window)",
    )
    retire.add_argument("--generation", type=int, required=True, metavar="G")
    _calldata(retire)

    window = _owner_leaf(
        sub,
        "set-retirement-window",
        "blocks a rotated-out generation stays usable before anyone may retire it (owner)",
        "run_set_retirement_window",
        "the owner",
    )
    window.add_argument("--blocks", type=int, required=True, metavar="N")
    _calldata(window)

    schedule = _owner_leaf(
        sub,
        "set-refresh-schedule",
        "let anyone (tkms keeper) propose a refresh INTERVAL blocks after the last epoch (owner)",
        "run_set_refresh_schedule",
        "the owner",
    )
    schedule.add_argument("--interval", type=int, metavar="BLOCKS")
    schedule.add_argument("--phases", metavar="K,D,C,J,F", help="each >= 3 blocks")
    schedule.add_argument("--off", action="store_true", help="no scheduled refreshes")
    _calldata(schedule)

    transfer = _owner_leaf(
        sub,
        "transfer-ownership",
        "name the next owner, who must accept (owner); --cancel withdraws the offer",
        "run_transfer_ownership",
        "the owner",
    )
    target = transfer.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="ADDR")
    target.add_argument("--cancel", action="store_true")
    _calldata(transfer)

    accept = _owner_leaf(
        sub,
        "accept-ownership",
        "become the owner (the pending owner named by transfer-ownership)",
        "run_accept_ownership",
        "the pending owner",
    )
    _calldata(accept)


def _register_keeper(subparsers: Any, help_text: str) -> None:
    keeper = subparsers.add_parser(
        "keeper",
        help=help_text,
        description="Makes the governance's permissionless calls when they fall due: the "
        "scheduled refresh (tkms chain set-refresh-schedule), timeouts of expired epochs, "
        "retirement of generations past their window. Needs a funded account, not the owner.",
    )
    keeper.set_defaults(handler=_owner_lazy("run_keeper"))
    _rpc(keeper)
    _governance(keeper)
    _key(keeper, "the keeper (any funded account)")
    keeper.add_argument("--poll", type=float, default=5.0, metavar="S", help="seconds (default 5)")
    keeper.add_argument("--once", action="store_true", help="one pass, then exit")
    keeper.add_argument("--json", action="store_true", help="one JSON object per line")
