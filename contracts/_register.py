"""Registering an app through the governance's factory, checked before and after.

The governance owner chooses the factory (`setAppFactory`), so what `tkms app register` sends
to is not trusted by being named: before sending, the factory's runtime code must be the
`AppAuthFactory` tkms ships, bound to this governance; after, the new app id must be the one
computed here for (factory, sender, salt), its code `AppAuth`'s, its owner the sender, and the
governance must list it as registered. A factory swapped for one that deploys apps owned by
someone else is refused before anything is sent.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from contracts._app import AppAuthClient, AppFactoryClient
from contracts._codecheck import code_hash, is_deployed, predict_app_id
from contracts._governance import GovernanceClient
from contracts._hexargs import parse_bytes32
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
