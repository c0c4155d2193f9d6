"""`tkms node admit`: the governance owner's one command for a node that runs `tkms node join`.

1. review the node's `registration.json` before it registers (`review_document`: the file,
   its evidence with the chain's policy, the binding of the evidence to the node's keys);
2. `allowNodeRegistration(node)`, unless allowed already;
3. wait until the chain holds exactly the reviewed registration (the waiting `join` sends it
   as soon as it is allowed), then check it (`check_on_chain`) and approve that registration's
   hash, allowing the verified KMS measurement (`approve_reviewed`);
4. with `--reshare`: wait until the node serves its registered TLS key at its Kms endpoint
   (its `tkms node run` follows the chain), then propose the reshare that adds it to the
   committee of the latest generation (checked as `tkms chain propose-epoch` checks).

Nothing is approved if a check fails; a node that registers something other than the
reviewed file is refused, naming what differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attest import AttestError, Collateral, check_key_pin, fetch_certificate
from node.errors import NodeError
from node.registration import (
    Approval,
    RegistrationRejected,
    approve_reviewed,
    check_on_chain,
    review_document,
)

if TYPE_CHECKING:
    from contracts import EpochInfo, GovernanceClient

Say = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class Admission:
    approval: Approval
    allowed_now: bool  # False: the address was allowed to register before
    reshare: EpochInfo | None = None


def admit(
    client: GovernanceClient,
    document: Any,
    *,
    now: int,
    collateral: Collateral | None,
    wait_seconds: float,
    say: Say,
    reshare: bool = False,
    threshold: int | None = None,
    phases: tuple[int, int, int, int, int] | None = None,
    poll_seconds: float = 1.0,
) -> Admission:
    from contracts import NodeStatus

    reviewed = review_document(client, document, now=now, collateral=collateral)
    registration = reviewed.registration
    node = registration.address
    say(
        f"reviewed {node}: evidence {'simulated' if reviewed.evidence.simulated else 'TDX'} "
        f"verified and bound to its keys; endpoint {registration.endpoint}"
    )
    if reshare:
        _require_reshare_possible(client)
    allowed_now = False
    if not client.is_node_registration_allowed(node):
        receipt = client.send_allow_node_registration(node)
        allowed_now = True
        say(f"allowed {node} to register (block {receipt.block})")
    deadline = time.monotonic() + wait_seconds
    said = False
    while True:
        block = int(client.w3.eth.block_number)
        info = client.get_node(node, block=block)
        if info.registration_hash == registration.registration_hash:
            if info.status is NodeStatus.APPROVED:
                raise RegistrationRejected("chain", f"{node} is already approved: nothing to admit")
            if info.status is NodeStatus.PENDING:
                check_on_chain(registration, info)
                break
        if time.monotonic() > deadline:
            on_chain = (
                "nothing"
                if info.status is NodeStatus.NONE
                else f"registration 0x{info.registration_hash.hex()} ({info.status.name})"
            )
            raise NodeError(
                f"{node} did not register the reviewed registration within {wait_seconds:.0f} s "
                f"(the chain holds {on_chain}): is its `tkms node join` running, funded and "
                "given this endpoint? nothing was approved"
            )
        if not said:
            say(f"waiting for {node} to register (its `tkms node join` does, once allowed)")
            said = True
        time.sleep(poll_seconds)
    approval = approve_reviewed(client, reviewed)
    say(
        f"approved {node} (registration hash 0x{approval.registration_hash.hex()}); KMS "
        f"measurement 0x{approval.measurement.hex()} "
        + ("allowed" if approval.measurement_added else "was already allowed")
    )
    if not reshare:
        return Admission(approval=approval, allowed_now=allowed_now)
    _wait_serving(registration.endpoint, registration.tls_key_hash, deadline, say)
    epoch = _propose_reshare(client, node, threshold, phases)
    return Admission(approval=approval, allowed_now=allowed_now, reshare=epoch)


def _require_reshare_possible(client: GovernanceClient) -> None:
    if client.get_latest_generation() == 0:
        raise NodeError(
            "--reshare: no key generation yet; admit every first node without it, then "
            "propose the DKG (tkms chain propose-epoch --kind dkg)"
        )


def _wait_serving(endpoint: str, tls_key_hash: bytes, deadline: float, say: Say) -> None:
    """Until the node's Kms endpoint presents the TLS key it registered: its daemon runs."""
    from node.endpoints import Endpoints

    kms = Endpoints.parse(endpoint).kms
    said = False
    while True:
        try:
            pem = asyncio.run(fetch_certificate(kms, timeout=3.0))
            check_key_pin(pem, tls_key_hash)
            say(f"the node serves its registered TLS key at {kms}")
            return
        except (AttestError, ConnectionError) as exc:  # ConnectionError: not reachable yet
            if time.monotonic() > deadline:
                raise NodeError(
                    f"approved, but no reshare proposed: the node does not serve its "
                    f"registered key at {kms} ({exc}); propose it later with tkms chain "
                    "propose-epoch --kind reshare --add ADDRESS"
                ) from None
            if not said:
                say(f"waiting for the node to serve at {kms} before proposing the reshare")
                said = True
        time.sleep(1.0)


def _propose_reshare(
    client: GovernanceClient,
    node: str,
    threshold: int | None,
    phases: tuple[int, int, int, int, int] | None,
) -> EpochInfo:
    from contracts import EpochKind, plan_epoch, read_state

    state = read_state(client)
    plan = plan_epoch(
        state,
        kind=EpochKind.RESHARE,
        signer=client.sender,
        add=[node],
        threshold=threshold,
        phases=phases,
    )
    receipt, epoch = client.send_propose_epoch(
        plan.kind, plan.members, plan.threshold, plan.phase_blocks
    )
    return client.get_epoch(epoch, block=receipt.block)
