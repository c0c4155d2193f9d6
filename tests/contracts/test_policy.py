"""Platform policy and ownership: only the owner changes them, removal is one call like adding."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from web3 import Web3

from contracts import AppBootInfo, GovernanceClient, TransactionFailed

AsSigner = Callable[[int], GovernanceClient]
MR = b"\x11" * 32
IMAGE = b"\x22" * 32


def test_ownership_moves_in_two_steps_and_only_to_the_named_account(
    governance: GovernanceClient, as_signer: AsSigner
) -> None:
    owner, successor = governance.get_owner(), as_signer(7).sender
    with pytest.raises(TransactionFailed, match="NotOwner"):
        as_signer(7).send_transfer_ownership(successor)
    governance.send_transfer_ownership(successor)
    assert (governance.get_owner(), governance.get_pending_owner()) == (owner, successor)
    with pytest.raises(TransactionFailed, match=r"NotPendingOwner\(caller=0x"):
        as_signer(8).send_accept_ownership()
    as_signer(7).send_accept_ownership()
    assert (governance.get_owner(), governance.get_pending_owner()) == (successor, "0x" + "0" * 40)
    with pytest.raises(TransactionFailed, match=f"NotOwner\\(caller={owner}\\)"):
        governance.send_add_os_image(IMAGE)
    as_signer(7).send_add_os_image(IMAGE)


def test_a_pending_transfer_can_be_cancelled(
    governance: GovernanceClient, as_signer: AsSigner
) -> None:
    governance.send_transfer_ownership(as_signer(7).sender)
    governance.send_transfer_ownership("0x" + "00" * 20)
    with pytest.raises(TransactionFailed, match="NotPendingOwner"):
        as_signer(7).send_accept_ownership()


# (adder, remover, reader, value): every permission the owner grants and revokes.
PERMISSIONS = [
    ("send_add_kms_measurement", "send_remove_kms_measurement", "is_kms_measurement_allowed", MR),
    ("send_add_os_image", "send_remove_os_image", "is_os_image_allowed", IMAGE),
    ("send_allow_tcb_status", "send_disallow_tcb_status", "is_tcb_status_allowed", "OutOfDate"),
    ("send_block_advisory", "send_unblock_advisory", "is_advisory_blocked", "INTEL-SA-00837"),
]


@pytest.mark.parametrize(("add", "remove", "read", "value"), PERMISSIONS, ids=lambda p: str(p)[:22])
def test_only_the_owner_grants_or_revokes_and_each_is_one_call(
    w3: Web3,
    governance: GovernanceClient,
    as_signer: AsSigner,
    add: str,
    remove: str,
    read: str,
    value: object,
) -> None:
    stranger = as_signer(9)
    with pytest.raises(TransactionFailed, match="NotOwner"):
        getattr(stranger, add)(value)
    assert getattr(governance, read)(value) is False
    granted = getattr(governance, add)(value)
    with pytest.raises(TransactionFailed, match="NotOwner"):
        getattr(stranger, remove)(value)
    revoked = getattr(governance, remove)(value)
    assert revoked.block == granted.block + 1
    assert getattr(governance, read)(value, block=granted.block) is True
    assert getattr(governance, read)(value, block=revoked.block) is False
    # Granting and revoking cost about the same: removal is never the harder path.
    assert revoked.gas_used <= granted.gas_used + 5000


def test_simulator_flag_is_owner_only_and_deploy_sets_it(
    governance: GovernanceClient, as_signer: AsSigner
) -> None:
    assert governance.get_simulator_allowed() is False
    with pytest.raises(TransactionFailed, match="NotOwner"):
        as_signer(9).send_set_simulator_allowed(True)
    on = governance.send_set_simulator_allowed(True)
    off = governance.send_set_simulator_allowed(False)
    assert governance.get_simulator_allowed(block=on.block) is True
    assert governance.get_simulator_allowed(block=off.block) is False


def test_kms_check_needs_platform_and_measurement(governance: GovernanceClient) -> None:
    node = AppBootInfo(
        app_id="0x" + "00" * 20, compose_hash=bytes(32), mr_aggregated=MR, os_image_hash=IMAGE
    )
    assert governance.is_kms_allowed(node).reason == "OS image is not allowed"
    governance.send_add_os_image(IMAGE)
    assert governance.is_kms_allowed(node).reason == "KMS measurement not allowed"
    governance.send_add_kms_measurement(MR)
    assert governance.is_kms_allowed(node).allowed is True
    assert (
        governance.is_kms_allowed(
            AppBootInfo(
                app_id=node.app_id,
                compose_hash=bytes(32),
                mr_aggregated=MR,
                os_image_hash=IMAGE,
                tcb_status="OutOfDate",
            )
        ).reason
        == "TCB status not allowed: OutOfDate"
    )


def test_concurrent_sends_from_one_account_get_distinct_nonces(
    governance: GovernanceClient,
) -> None:
    images = [bytes([0x30 + i]) * 32 for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        receipts = list(pool.map(governance.send_add_os_image, images))
    assert len({r.tx_hash for r in receipts}) == 4
    assert all(governance.is_os_image_allowed(image) for image in images)
