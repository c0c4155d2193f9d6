"""The node registry: registration by owner-allowed addresses only, approval of one exact
registration, removal."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from web3 import Web3

from contracts import (
    GovernanceClient,
    InvalidInput,
    NodeInfo,
    NodeStatus,
    TransactionFailed,
    node_registration_hash,
)
from tests.contracts.conftest import register_node

AsSigner = Callable[[int], GovernanceClient]


def test_a_node_registers_itself_and_the_owner_approves_that_registration(
    governance: GovernanceClient, as_signer: AsSigner
) -> None:
    node = as_signer(7)
    address = node.sender
    governance.send_allow_node_registration(address)
    register_node(node, 7)
    info = governance.get_node(address)
    assert (info.status, info.endpoint, info.operator) == (
        NodeStatus.PENDING,
        "127.0.0.1:7007",
        address,
    )
    assert (info.tls_key_hash, info.deal_key, info.evidence_hash) == (
        b"\x07" * 32,
        b"\x07" * 1216,
        b"\x47" * 32,
    )
    assert address in governance.get_nodes()
    with pytest.raises(TransactionFailed, match=f"NotOwner\\(caller={address}\\)"):
        node.send_approve_node(address, info.registration_hash)
    governance.send_approve_node(address, info.registration_hash)
    assert governance.is_node_approved(address)
    with pytest.raises(
        TransactionFailed, match=r"NodeNotPending\(node=0x[0-9a-fA-F]{40}, status=2\)"
    ):
        governance.send_approve_node(address, info.registration_hash)


def test_approval_of_a_stale_registration_is_refused(
    governance: GovernanceClient, as_signer: AsSigner
) -> None:
    node = as_signer(7)
    address = node.sender
    governance.send_allow_node_registration(address)
    register_node(node, 7)
    reviewed = governance.get_node(address).registration_hash
    register_node(node, 7, endpoint="10.0.0.7:7000")  # keys or endpoint changed after review
    with pytest.raises(TransactionFailed, match="RegistrationChanged"):
        governance.send_approve_node(address, reviewed)
    assert governance.get_node(address).status is NodeStatus.PENDING


def test_removal_is_one_owner_call_and_re_registration_needs_approval_again(
    governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    with pytest.raises(TransactionFailed, match="NotOwner"):
        as_signer(3).send_remove_node(committee[0])
    removed = governance.send_remove_node(committee[0])
    assert governance.is_node_approved(committee[0], block=removed.block - 1)
    assert not governance.is_node_approved(committee[0], block=removed.block)
    assert governance.get_node(committee[0]).status is NodeStatus.REMOVED
    register_node(as_signer(2), 2)
    assert governance.get_node(committee[0]).status is NodeStatus.PENDING
    with pytest.raises(TransactionFailed, match="NodeNotRegistered"):
        governance.send_remove_node("0x" + "ab" * 20)


def test_malformed_registrations_name_the_field(
    governance: GovernanceClient, as_signer: AsSigner
) -> None:
    node = as_signer(8)
    governance.send_allow_node_registration(node.sender)
    with pytest.raises(InvalidInput, match="deal_key: must be 1..4096 bytes, got 0"):
        node.send_register_node(
            operator="0x" + "01" * 20,
            endpoint="x:1",
            tls_key_hash=bytes(32),
            deal_key=b"",
            evidence_hash=bytes(32),
        )
    with pytest.raises(InvalidInput, match="tls_key_hash: expected 32 bytes, got 31"):
        node.send_register_node(
            operator="0x" + "01" * 20,
            endpoint="x:1",
            tls_key_hash=bytes(31),
            deal_key=b"k",
            evidence_hash=bytes(32),
        )
    with pytest.raises(InvalidInput, match="endpoint: must be 1..256 bytes"):
        node.send_register_node(
            operator="0x" + "01" * 20,
            endpoint="",
            tls_key_hash=bytes(32),
            deal_key=b"k",
            evidence_hash=bytes(32),
        )
    with pytest.raises(InvalidInput, match="operator: bad EIP-55 checksum"):
        node.send_register_node(
            operator="0x" + "aB" * 20,
            endpoint="x:1",
            tls_key_hash=bytes(32),
            deal_key=b"k",
            evidence_hash=bytes(32),
        )
    raw = node.contract.functions.registerNode(
        "0x" + "01" * 20, "x:1", bytes(32), b"k" * 4097, bytes(32)
    )
    with pytest.raises(
        TransactionFailed, match=r"InvalidLength\(field='dealKey', length=4097, min=1, max=4096\)"
    ):
        assert node.transactor is not None
        node.transactor.send(raw)


def test_only_addresses_the_owner_allowed_can_register(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    stranger = as_signer(9)
    before = governance.get_nodes()
    with pytest.raises(
        TransactionFailed, match=f"NodeRegistrationNotAllowed\\(node={stranger.sender}\\)"
    ):
        register_node(stranger, 9)
    assert governance.get_nodes() == before  # the registry did not grow
    assert governance.get_node(stranger.sender).status is NodeStatus.NONE
    with pytest.raises(TransactionFailed, match="NotOwner"):
        stranger.send_allow_node_registration(stranger.sender)
    granted = governance.send_allow_node_registration(stranger.sender)
    register_node(stranger, 9)
    assert governance.get_nodes() == [*before, stranger.sender]
    with pytest.raises(TransactionFailed, match="NotOwner"):
        stranger.send_disallow_node_registration(stranger.sender)
    revoked = governance.send_disallow_node_registration(stranger.sender)
    assert governance.is_node_registration_allowed(stranger.sender, block=granted.block)
    assert not governance.is_node_registration_allowed(stranger.sender, block=revoked.block)
    assert revoked.gas_used <= granted.gas_used + 5000  # revoking is never the harder path
    # Disallowing stops re-registration; the entry itself stays until the owner removes it.
    with pytest.raises(TransactionFailed, match="NodeRegistrationNotAllowed"):
        register_node(stranger, 9, endpoint="10.0.0.9:1")
    assert governance.get_node(stranger.sender).status is NodeStatus.PENDING
    # An approved node that is disallowed stays approved, but cannot re-register.
    governance.send_disallow_node_registration(committee[0])
    assert governance.is_node_approved(committee[0])
    with pytest.raises(TransactionFailed, match="NodeRegistrationNotAllowed"):
        register_node(as_signer(2), 2, endpoint="10.0.0.2:1")


def test_the_registration_hash_is_computed_off_chain_exactly(
    governance: GovernanceClient, committee: list[str]
) -> None:
    def hash_of(info: NodeInfo) -> bytes:
        return node_registration_hash(
            node=info.address,
            operator=info.operator,
            endpoint=info.endpoint,
            tls_key_hash=info.tls_key_hash,
            deal_key=info.deal_key,
            evidence_hash=info.evidence_hash,
        )

    info = governance.get_node(committee[1])
    assert hash_of(info) == info.registration_hash
    assert hash_of(dataclasses.replace(info, endpoint="127.0.0.1:1")) != info.registration_hash
    assert hash_of(dataclasses.replace(info, deal_key=b"x" + info.deal_key)) != hash_of(info)
