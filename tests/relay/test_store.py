"""The relay's validation rule (relay/store.py): forged and stale envelopes are dropped."""

from __future__ import annotations

from relay.store import ManifestStore
from tests.relay.signing import FORGER, NETWORK


def test_newer_epochs_replace_and_older_ones_are_dropped_as_stale() -> None:
    store = ManifestStore(NETWORK.fingerprint)
    five, six = (NETWORK.envelope(NETWORK.manifest(e)) for e in (5, 6))
    assert store.offer(five).reason == "new"
    assert store.offer(six).reason == "new"
    assert store.newest == six and store.newest_epoch == 6
    stale = store.offer(five)
    assert not stale.accepted and stale.reason.startswith("stale: epoch 5")
    assert store.offer(six).reason == "current"  # a republication is forwarded
    assert store.newest == six and store.dropped == {"stale": 1}


def test_forged_and_malformed_envelopes_change_nothing() -> None:
    store = ManifestStore(NETWORK.fingerprint)
    store.offer(NETWORK.envelope(NETWORK.manifest(5)))
    before = store.newest
    forged = store.offer(NETWORK.envelope(NETWORK.manifest(8), signer=FORGER))
    assert not forged.accepted and "not signed by generation 2" in forged.reason
    assert not store.offer(b"\x00\x00\x00\x05hello").accepted
    assert store.newest == before and store.newest_epoch == 5
    assert store.dropped == {"invalid": 2} and store.accepted == 1


def test_another_networks_manifest_is_dropped() -> None:
    store = ManifestStore(bytes(32))
    verdict = store.offer(NETWORK.envelope(NETWORK.manifest(5)))
    assert not verdict.accepted and "not the expected" in verdict.reason
