"""The relay's validation rule (relay/store.py): forged and stale envelopes are dropped."""

from __future__ import annotations

from mpc.encoding import unframe
from mpc.group import Scalar
from mpc.nodehealth import decode_note, sign_note
from mpc.revocation import NODE_REMOVED, RevocationNotice, notice_envelope
from relay.store import ManifestStore
from tests.relay.signing import (
    CHAIN_ID,
    FORGER,
    GOVERNANCE,
    NETWORK,
    health_envelope,
    sign,
    tls_key,
)


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


def _health_store() -> ManifestStore:
    store = ManifestStore(NETWORK.fingerprint)
    store.offer(NETWORK.envelope(NETWORK.manifest(7)))
    return store


def _note_envelope(member: int, issued_ms: int, epoch: int = 7) -> bytes:
    return health_envelope(member, epoch, issued_ms)


def test_health_notes_are_kept_per_member_and_replays_are_stale() -> None:
    store, now = _health_store(), 1_800_000_000_000
    first = _note_envelope(1, now - 1000)
    assert store.offer_health(first, now).accepted
    assert store.offer_health(_note_envelope(2, now - 500), now).accepted
    replay = store.offer_health(first, now + 10)
    assert not replay.accepted and "not newer" in replay.reason
    assert store.offer_health(_note_envelope(1, now), now).accepted
    assert sorted(note.address[0] for note, _ in store.health.values()) == [1, 2]
    assert store.health[bytes([1]) * 20][0].issued_ms == now


def test_old_future_forged_and_other_epoch_notes_are_dropped() -> None:
    store, now = _health_store(), 1_800_000_000_000
    assert "ms old" in store.offer_health(_note_envelope(1, now - 61_000), now).reason
    assert "ahead" in store.offer_health(_note_envelope(1, now + 11_000), now).reason
    assert "stale" in store.offer_health(_note_envelope(1, now, epoch=6), now).reason
    forged = sign_note(decode_note(unframe(_note_envelope(1, now), "x")[1]), tls_key(2))
    assert "key other than its pin" in store.offer_health(forged, now).reason
    assert store.health == {}
    assert store.dropped == {"stale": 2, "invalid": 2}


def test_health_notes_wait_for_a_manifest_and_a_new_epoch_clears_them() -> None:
    store, now = ManifestStore(NETWORK.fingerprint), 1_800_000_000_000
    assert "no manifest yet" in store.offer_health(_note_envelope(1, now), now).reason
    store.offer(NETWORK.envelope(NETWORK.manifest(7)))
    assert store.offer_health(_note_envelope(1, now), now).accepted
    store.offer(NETWORK.envelope(NETWORK.manifest(8)))
    assert store.health == {}


def _notice(subject: int, epoch: int = 7, signer: Scalar | None = None) -> bytes:
    notice = RevocationNotice(
        chain_id=CHAIN_ID,
        governance=GOVERNANCE,
        generation=2,
        epoch=epoch,
        kind=NODE_REMOVED,
        subject=bytes([subject]) * 20,
    )
    secret = NETWORK.secrets[1] if signer is None else signer
    return notice_envelope(notice, sign(secret, notice.encode()))


def test_revocations_are_kept_for_the_newest_epoch_only_and_forged_ones_dropped() -> None:
    store = ManifestStore(NETWORK.fingerprint)
    assert "no manifest yet" in store.offer_revocation(_notice(3)).reason
    store.offer(NETWORK.envelope(NETWORK.manifest(7)))
    assert store.offer_revocation(_notice(3)).reason == "revocation"
    assert store.offer_revocation(_notice(3)).reason == "current"
    assert "stale" in store.offer_revocation(_notice(2, epoch=6)).reason
    assert "not signed by epoch 7" in store.offer_revocation(_notice(2, signer=FORGER)).reason
    assert list(store.revocations) == [bytes([3]) * 20]
    store.offer(NETWORK.envelope(NETWORK.manifest(8)))
    assert store.revocations == {}
