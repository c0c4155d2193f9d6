"""The client's cross-check (guest/relay_check.py): a committee the network did not sign is
refused, with an error naming the difference; the relay itself is never trusted."""

from __future__ import annotations

import dataclasses

import pytest

from guest.kms_client import Committee, Member
from guest.relay_check import RelayUnavailable, UnsignedCommittee, check_committee
from mpc import Epoch, Generation, NetworkContext
from mpc.group import G1
from mpc.manifest import EpochManifest
from tests.relay.signing import FORGER, NETWORK


def _committee(manifest: EpochManifest) -> Committee:
    """What an honest RPC shows for `manifest` (verification keys play no part here)."""
    network = NetworkContext(
        chain_id=manifest.chain_id,
        contract=manifest.governance,
        generation=Generation(manifest.generation),
        epoch=Epoch(manifest.epoch),
    )
    members = tuple(
        Member(
            index=k,
            endpoint=m.endpoint,
            verification_key=G1.generator(),
            tls_key_hash=m.tls_key_hash,
            address=m.address,
        )
        for k, m in enumerate(manifest.members, start=1)
    )
    return Committee(network, manifest.threshold, members, manifest.group_key)


def test_the_signed_committee_passes() -> None:
    manifest = NETWORK.manifest(6)
    checked = check_committee(_committee(manifest), NETWORK.envelope(manifest), NETWORK.fingerprint)
    assert checked == manifest


def test_a_member_redirected_by_the_rpc_is_caught() -> None:
    manifest = NETWORK.manifest(6)
    honest = _committee(manifest)
    evil = dataclasses.replace(honest.members[1], endpoint="6.6.6.6:443", tls_key_hash=b"\x66" * 32)
    lying = dataclasses.replace(honest, members=(honest.members[0], evil, honest.members[2]))
    with pytest.raises(UnsignedCommittee, match="member 2: .* at 6.6.6.6:443.*RPC is lying"):
        check_committee(lying, NETWORK.envelope(manifest), NETWORK.fingerprint)


def test_an_rpc_showing_an_old_epoch_is_caught() -> None:
    old = _committee(NETWORK.manifest(5))
    with pytest.raises(UnsignedCommittee, match="shows epoch 5 .* network signed epoch 6"):
        check_committee(old, NETWORK.envelope(NETWORK.manifest(6)), NETWORK.fingerprint)


def test_a_lowered_threshold_is_caught() -> None:
    manifest = NETWORK.manifest(6)
    lying = dataclasses.replace(_committee(manifest), threshold=1)
    with pytest.raises(UnsignedCommittee, match="threshold 1, signed 2"):
        check_committee(lying, NETWORK.envelope(manifest), NETWORK.fingerprint)


def test_a_forged_manifest_from_the_relay_is_not_believed() -> None:
    """A relay that forges a manifest matching a lying RPC gets nowhere: it must verify."""
    manifest = NETWORK.manifest(6)
    forged = NETWORK.envelope(manifest, signer=FORGER)
    with pytest.raises(RelayUnavailable, match="does not verify"):
        check_committee(_committee(manifest), forged, NETWORK.fingerprint)
