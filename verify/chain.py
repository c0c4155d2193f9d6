"""What governance approves now, and the transaction that approved it (or revoked it).

Every answer is read at one head (`ChainView.head`), which must be recent: a verifier reading
a stale chain would pass what governance has since revoked, so an old head fails closed
(`head_check`). For each approval the latest event that set it is found in the contract's own
history (`contracts.fetch_events`), so a row can link the block and transaction that approved
a compose hash, an OS image, an app id, a KMS measurement or a node, and, when it is no
longer approved, the one that revoked it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from web3 import Web3

from contracts import (
    DEV_CHAIN_IDS,
    AppAuthClient,
    AppBootInfo,
    AppStatus,
    ChainEvent,
    GovernanceClient,
    fetch_events,
)
from verify.report import Check, Link, judged


@dataclass
class ChainView:
    """The chain at one head, and the event history of the contracts asked about."""

    w3: Web3
    governance_address: str
    head: int
    head_time: int
    chain_id: int

    @classmethod
    def connect(cls, w3: Web3, governance: str) -> ChainView:
        block = w3.eth.get_block("latest")
        return cls(w3, governance, int(block["number"]), int(block["timestamp"]), w3.eth.chain_id)

    @cached_property
    def governance(self) -> GovernanceClient:
        return GovernanceClient(self.w3, self.governance_address)

    def app(self, app_id: str) -> AppAuthClient:
        return AppAuthClient(self.w3, app_id)

    def events(self, address: str, names: tuple[str, ...]) -> list[ChainEvent]:
        return fetch_events(self.w3, [address], 0, self.head, names=list(names))

    def last(
        self, address: str, names: tuple[str, ...], match: Callable[[Mapping[str, Any]], bool]
    ) -> ChainEvent | None:
        """The latest of `names` events of `address` (up to the head) whose args `match`."""
        found = [e for e in self.events(address, names) if match(e.args)]
        return found[-1] if found else None

    @property
    def is_dev_chain(self) -> bool:
        return self.chain_id in DEV_CHAIN_IDS

    def simulator_policy(self) -> tuple[bool, str]:
        """Whether simulator quotes count now, and the sentence that says why (or why not)."""
        allowed = self.governance.get_simulator_allowed(block=self.head)
        where = f"governance {self.governance_address} on chain {self.chain_id}"
        if not allowed:
            return False, f"{where} does not allow simulated TEEs"
        if not self.is_dev_chain:
            return False, f"{where} allows simulators, but chain {self.chain_id} is no dev chain"
        return True, f"{where} (a dev chain) allows simulated TEEs at block {self.head}"


def head_check(view: ChainView, max_age: float, now: float | None = None) -> Check:
    age = (now if now is not None else time.time()) - view.head_time
    return judged(
        "chain head is recent",
        age <= max_age,
        f"block {view.head}, {age:.0f} s old (at most {max_age:.0f} s: an older view could "
        "miss a revocation)",
    )


def _link(event: ChainEvent | None, label: str) -> list[Link]:
    return [Link(label, event.tx_hash, event.block)] if event is not None else []


def _approval(
    view: ChainView,
    name: str,
    allowed: bool,
    what: str,
    address: str,
    added: tuple[str, str],
    removed: str,
    match: Callable[[Mapping[str, Any]], bool],
) -> Check:
    """A row for one on-chain permission, linking the event that granted (or revoked) it."""
    event = view.last(address, (added[0], removed), match)
    links = _link(event, event.event if event is not None else "")
    if allowed:
        detail = f"{what} {added[1]} at block {view.head}"
        if event is not None and event.event == added[0]:
            detail += f" (since block {event.block})"
    else:
        detail = f"{what} is NOT {added[1]} at block {view.head}"
        if event is not None and event.event == removed:
            detail += f": revoked at block {event.block} (tx {event.tx_hash})"
    check = judged(name, allowed, detail)
    check.links = links
    return check


def compose_check(view: ChainView, app_id: str, compose_hash: bytes, subject: str) -> Check:
    app = view.app(app_id)
    allowed = app.is_compose_hash_allowed(compose_hash, block=view.head)
    return _approval(
        view,
        f"{subject}: compose hash approved on chain now",
        allowed,
        f"compose hash {compose_hash.hex()} of app {app_id}",
        app.address,
        ("ComposeHashAdded", "allowed by the app's AppAuth"),
        "ComposeHashRemoved",
        lambda args: bytes(args["composeHash"]) == compose_hash,
    )


def os_image_check(view: ChainView, os_image_hash: bytes, subject: str) -> Check:
    allowed = view.governance.is_os_image_allowed(os_image_hash, block=view.head)
    return _approval(
        view,
        f"{subject}: OS image approved on chain now",
        allowed,
        f"OS image {os_image_hash.hex()}",
        view.governance_address,
        ("OsImageAdded", "allowed by governance"),
        "OsImageRemoved",
        lambda args: bytes(args["osImageHash"]) == os_image_hash,
    )


def app_registry_check(view: ChainView, app_id: str, subject: str) -> Check:
    """The app is in governance's app registry now (registered, not removed by the owner)."""
    status = view.governance.get_app_status(app_id, block=view.head)
    return _approval(
        view,
        f"{subject}: app id approved by governance",
        status == AppStatus.REGISTERED,
        f"app {app_id}",
        view.governance_address,
        ("AppRegistered", f"registered in governance (status {status.name})"),
        "AppRemoved",
        lambda args: str(args["appId"]).lower() == app_id.lower(),
    )


def kms_measurement_check(view: ChainView, mr_aggregated: bytes, subject: str) -> Check:
    allowed = view.governance.is_kms_measurement_allowed(mr_aggregated, block=view.head)
    return _approval(
        view,
        f"{subject}: KMS measurement approved now",
        allowed,
        f"mr_aggregated {mr_aggregated.hex()}",
        view.governance_address,
        ("KmsMeasurementAdded", "allowed for KMS nodes"),
        "KmsMeasurementRemoved",
        lambda args: bytes(args["mrAggregated"]) == mr_aggregated,
    )


def node_check(view: ChainView, node: str, subject: str) -> Check:
    approved = view.governance.is_node_approved(node, block=view.head)
    return _approval(
        view,
        f"{subject}: registration approved",
        approved,
        f"node {node}",
        view.governance_address,
        ("NodeApproved", "approved by governance"),
        "NodeRemoved",
        lambda args: str(args["node"]).lower() == node.lower(),
    )


def allowed_check(view: ChainView, info: AppBootInfo, subject: str, *, kms: bool = False) -> Check:
    """governance's whole decision (`isAppAllowed`, or `isKmsAllowed`) for this boot, now."""
    call = view.governance.is_kms_allowed if kms else view.governance.is_app_allowed
    decision = call(info, block=view.head)
    method = "isKmsAllowed" if kms else "isAppAllowed"
    detail = f"governance.{method} at block {view.head}: " + (
        "allowed" if decision.allowed else f"refused: {decision.reason}"
    )
    check = judged(f"{subject}: allowed by governance now", decision.allowed, detail)
    check.evidence["boot_info"] = {
        key: ("0x" + value.hex() if isinstance(value, bytes) else value)
        for key, value in info.__dict__.items()
    }
    return check
