"""Registering an app through the governance's factory, or an existing controller, checked
before and after.

The governance owner chooses the factory (`setAppFactory`), so what `tkms app register` sends
to is not trusted by being named: before sending, the factory's runtime code must be the
`AppAuthFactory` tkms ships, bound to this governance; after, the new app id must be the one
computed here for (factory, sender, salt), its code `AppAuth`'s, its owner the sender, and the
governance must list it as registered. A factory swapped for one that deploys apps owned by
someone else is refused before anything is sent.

`register_controller` registers a contract that already exists, e.g. a dstack `DstackApp`
(`tkms app register --controller`): any contract implementing dstack's `IAppAuth` may
decide who gets an app's keys, and its address is the app id. Before sending, the contract
must say through ERC-165 that it implements `IAppAuth` (interface id 0x1e079198); its code is
not ours, so its decisions are not in `tkms chain audit` (which flags it).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from web3 import Web3
from web3.exceptions import Web3Exception

from contracts._app import AppAuthClient, AppFactoryClient
from contracts._artifacts import load_artifact
from contracts._codecheck import code_hash, is_deployed, predict_app_id
from contracts._governance import GovernanceClient
from contracts._hexargs import parse_address, parse_bytes32
from contracts._tx import Receipt, require_sender
from contracts._types import AppStatus
from contracts.errors import InvalidInput, UnexpectedContract


@dataclass(frozen=True)
class RegisteredApp:
    app_id: str
    owner: str
    factory: str
    salt: bytes
    receipt: Receipt


def verified_factory(governance: GovernanceClient) -> str:
    """The governance's app factory, after checking it is our `AppAuthFactory` for it."""
    w3 = governance.w3
    factory = governance.get_app_factory()
    if int(factory, 16) == 0:
        raise InvalidInput("--governance", "this governance has no app factory set")
    if not is_deployed(w3, factory, "AppAuthFactory"):
        raise UnexpectedContract(
            f"the governance's app factory {factory} is not the AppAuthFactory this tkms ships "
            f"(runtime code hash {code_hash(w3, factory)}): refusing to deploy through it; "
            "nothing was sent"
        )
    bound_to = AppFactoryClient(w3, factory).get_governance()
    if bound_to != governance.address:
        raise UnexpectedContract(
            f"the app factory {factory} registers apps with {bound_to}, not with the "
            f"governance {governance.address}: nothing was sent"
        )
    return factory


def predicted_app_id(governance: GovernanceClient, owner: str, salt: bytes) -> tuple[str, str]:
    """(factory, app id) that `register_app` gives `owner` for `salt`, from a verified factory;
    the id is computed here and must agree with the factory's own `predictAppId`."""
    factory = verified_factory(governance)
    computed = predict_app_id(factory, owner, salt)
    reported = AppFactoryClient(governance.w3, factory).predict_app_id(owner, salt)
    if reported != computed:
        raise UnexpectedContract(
            f"the app factory {factory} predicts {reported}, tkms computes {computed}"
        )
    return factory, computed


def register_app(
    governance: GovernanceClient,
    *,
    salt: bytes | None = None,
    compose_hashes: Sequence[bytes] = (),
    device_ids: Sequence[bytes] = (),
    allow_any_device: bool = False,
    require_tcb_up_to_date: bool = True,
) -> RegisteredApp:
    """Deploys an AppAuth owned by the governance client's signer through the verified
    factory and registers it; raises `UnexpectedContract` if the result is not that."""
    transactor = require_sender(governance.transactor, "register_app")
    chosen = secrets.token_bytes(32) if salt is None else parse_bytes32("salt", salt)
    owner = transactor.address
    factory, expected = predicted_app_id(governance, owner, chosen)
    receipt, app_id = AppFactoryClient(governance.w3, factory, transactor).send_deploy_app(
        salt=chosen,
        compose_hashes=compose_hashes,
        device_ids=device_ids,
        allow_any_device=allow_any_device,
        require_tcb_up_to_date=require_tcb_up_to_date,
    )
    check_new_app(governance, app_id, owner=owner, expected=expected, block=receipt.block)
    return RegisteredApp(app_id=app_id, owner=owner, factory=factory, salt=chosen, receipt=receipt)


def check_new_app(
    governance: GovernanceClient, app_id: str, *, owner: str, expected: str, block: int
) -> None:
    """Raises `UnexpectedContract` unless `app_id` is `expected`, runs AppAuth's code, is owned
    by `owner` and is registered with `governance`, at `block`."""
    w3 = governance.w3
    if app_id != expected:
        raise UnexpectedContract(f"the factory deployed {app_id}, not the app id {expected}")
    if not is_deployed(w3, app_id, "AppAuth", block=block):
        raise UnexpectedContract(
            f"the new app {app_id} does not run the AppAuth this tkms ships "
            f"(runtime code hash {code_hash(w3, app_id, block=block)})"
        )
    actual_owner = AppAuthClient(w3, app_id).get_owner(block=block)
    if actual_owner != owner:
        raise UnexpectedContract(
            f"the new app {app_id} is owned by {actual_owner}, not by the sender {owner}"
        )
    status = governance.get_app_status(app_id, block=block)
    if status != AppStatus.REGISTERED:
        raise UnexpectedContract(f"the new app {app_id} is not registered ({status.name})")


#: ERC-165's own interface id, the id no contract may claim, and dstack's `IAppAuth` (the
#: selector of `isAppAllowed((address,bytes32,address,bytes32,bytes32,bytes32,bytes32,string,
#: string[]))`, the interface's one function).
ERC165_ID = bytes.fromhex("01ffc9a7")
INVALID_ID = bytes.fromhex("ffffffff")
IAPP_AUTH_ID = bytes.fromhex("1e079198")
#: ERC-165 says a query must use at most 30,000 gas.
_ERC165_GAS = 30_000


@dataclass(frozen=True)
class RegisteredController:
    app_id: str
    code_hash: str
    receipt: Receipt


def _supports(w3: Web3, address: str, interface: bytes) -> bool:
    contract = w3.eth.contract(
        address=Web3.to_checksum_address(address), abi=load_artifact("IAppAuth").abi
    )
    try:
        answer = contract.functions.supportsInterface(interface).call({"gas": _ERC165_GAS})
    except (Web3Exception, ValueError):  # a revert, or an answer that is not a bool
        return False
    return answer is True


def check_app_controller(w3: Web3, controller: str) -> str:
    """`controller` (checksummed) if a contract there implements dstack's IAppAuth by
    ERC-165's rules; InvalidInput naming `--controller` otherwise."""
    address = parse_address("--controller", controller)
    if not w3.eth.get_code(address):
        raise InvalidInput("--controller", f"no contract at {address} on this chain")
    if not _supports(w3, address, ERC165_ID) or _supports(w3, address, INVALID_ID):
        raise InvalidInput(
            "--controller", f"the contract at {address} does not implement ERC-165 detection"
        )
    if not _supports(w3, address, IAPP_AUTH_ID):
        raise InvalidInput(
            "--controller",
            f"the contract at {address} does not implement dstack's IAppAuth "
            f"(supportsInterface(0x{IAPP_AUTH_ID.hex()}) is not true)",
        )
    return address


def register_controller(governance: GovernanceClient, controller: str) -> RegisteredController:
    """Registers an existing IAppAuth contract as an app (its address is the app id), after
    checking it; raises `UnexpectedContract` if governance does not list it afterwards."""
    transactor = require_sender(governance.transactor, "register_controller")
    w3 = governance.w3
    app_id = check_app_controller(w3, controller)
    status = governance.get_app_status(app_id)
    if status == AppStatus.REGISTERED:
        raise InvalidInput("--controller", f"{app_id} is already registered")
    if status == AppStatus.REMOVED and transactor.address != governance.get_owner():
        raise InvalidInput(
            "--controller",
            f"{app_id} was removed by the governance owner; only the owner can register it again",
        )
    receipt = governance.send_register_app(app_id)
    registered = governance.get_app_status(app_id, block=receipt.block)
    if registered != AppStatus.REGISTERED:
        raise UnexpectedContract(f"the app {app_id} is not registered ({registered.name})")
    return RegisteredController(
        app_id=app_id, code_hash=code_hash(w3, app_id, block=receipt.block), receipt=receipt
    )
