"""The relay's validation rules (relay/store.py): forged and stale envelopes are dropped; the
newest manifest of each of the two newest generations is kept, staleness judged within a
generation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.encoding import unframe
from mpc.group import Scalar
from mpc.nodehealth import decode_note, sign_note
from mpc.revocation import NODE_REMOVED, RevocationNotice, notice_envelope
from relay.store import GENERATIONS, ManifestStore
from tests.relay.signing import (
    CHAIN_ID,
    FORGER,
    GOVERNANCE,
    NETWORK,
    KeyedNetwork,
    health_envelope,
    secret,
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
    assert list(store.revocations[2]) == [bytes([3]) * 20]
    store.offer(NETWORK.envelope(NETWORK.manifest(8)))
    assert store.revocations == {}


def test_the_retiring_generation_is_kept_beside_the_new_one() -> None:
    """A rotation: generation 1's epoch 5 stays served beside generation 2's epoch 6, and a
    later epoch of generation 1 (its own newest rule) still replaces it."""
    store = ManifestStore(NETWORK.fingerprint)
    old, new = NETWORK.envelope(NETWORK.manifest(5, 1)), NETWORK.envelope(NETWORK.manifest(6, 2))
    assert store.offer(old).reason == "new"
    assert store.offer(new).reason == "new"
    assert store.newest == new and store.newest_epoch == 6 and store.newest_generation == 2
    held = store.of(1)
    assert held is not None and held.envelope == old and held.epoch == 5
    assert store.offer(old).reason == "current"  # a republication of the retiring generation
    # Generation 1's epoch 5 arriving after generation 2's epoch 6 is new for generation 1.
    late = ManifestStore(NETWORK.fingerprint)
    late.offer(new)
    assert late.offer(old).reason == "new" and late.newest == new
    # A reshare of generation 1 to epoch 7 replaces its epoch 5; epoch 4 of it is stale.
    seven = NETWORK.envelope(NETWORK.manifest(7, 1))
    assert store.offer(seven).reason == "new" and store.newest_epoch == 6
    stale = store.offer(NETWORK.envelope(NETWORK.manifest(4, 1)))
    assert not stale.accepted
    assert stale.reason == "stale: epoch 4 is older than generation 1's newest, 7"
    assert {g: h.epoch for g, h in store.held.items()} == {1: 7, 2: 6}


FOUR = KeyedNetwork(tuple(secret(f"relay store generation {g}") for g in range(1, 5)))
POOL = {(g, e): FOUR.envelope(FOUR.manifest(e, g)) for g in range(1, 5) for e in range(1, 4)}


def test_generations_older_than_the_two_newest_are_stale_and_let_go() -> None:
    store = ManifestStore(FOUR.fingerprint)
    for g in (1, 2, 3):
        assert store.offer(POOL[(g, 1)]).reason == "new"
    assert sorted(store.held) == [2, 3]  # generation 1 let go when generation 3 came
    old = store.offer(POOL[(1, 3)])
    assert not old.accepted
    assert (
        old.reason == "stale: generation 1 is older than the 2 newest (generation 3 is the newest)"
    )
    assert store.offer(POOL[(2, 3)]).reason == "new"  # the retiring one still moves on


def test_health_and_revocations_follow_their_generations() -> None:
    """Health notes are about the newest epoch: a manifest of the retiring generation leaves
    them; revocations are kept per generation, each for its own newest epoch."""
    store, now = ManifestStore(NETWORK.fingerprint), 1_800_000_000_000
    store.offer(NETWORK.envelope(NETWORK.manifest(7, 2)))
    assert store.offer_health(_note_envelope(1, now), now).accepted
    assert store.offer_revocation(_notice(3)).reason == "revocation"
    store.offer(NETWORK.envelope(NETWORK.manifest(5, 1)))  # the retiring generation, late
    assert list(store.health) == [bytes([1]) * 20]
    retiring = RevocationNotice(
        chain_id=CHAIN_ID,
        governance=GOVERNANCE,
        generation=1,
        epoch=5,
        kind=NODE_REMOVED,
        subject=bytes([2]) * 20,
    )
    signed = notice_envelope(retiring, sign(NETWORK.secrets[0], retiring.encode()))
    assert store.offer_revocation(signed).reason == "revocation"
    # Signed by generation 2's key, it does not verify against generation 1's manifest.
    forged = notice_envelope(retiring, sign(NETWORK.secrets[1], retiring.encode()))
    assert "not signed by epoch 5" in store.offer_revocation(forged).reason
    assert {g: list(n) for g, n in store.revocations.items()} == {
        2: [bytes([3]) * 20],
        1: [bytes([2]) * 20],
    }
    store.offer(NETWORK.envelope(NETWORK.manifest(8, 1)))  # generation 1 moves on: its go
    assert list(store.revocations) == [2] and list(store.health) == [bytes([1]) * 20]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(POOL)), max_size=12))
def test_the_store_keeps_each_kept_generations_newest_epoch(offers: list[tuple[int, int]]) -> None:
    """Against a model: an offer is accepted iff its generation is within the two newest seen
    so far and its epoch is not older than its generation's newest; afterwards the store holds
    exactly the newest epoch of each generation within the two newest."""
    store = ManifestStore(FOUR.fingerprint)
    newest: dict[int, int] = {}
    for g, e in offers:
        top = max([*newest, g])
        expected = g > top - GENERATIONS and e >= newest.get(g, 0)
        verdict = store.offer(POOL[(g, e)])
        assert verdict.accepted == expected, (g, e, verdict.reason)
        if expected:
            newest[g] = max(e, newest.get(g, 0))
        newest = {k: v for k, v in newest.items() if k > top - GENERATIONS}
    assert {g: h.epoch for g, h in store.held.items()} == newest
    assert {g: h.envelope for g, h in store.held.items()} == {
        g: POOL[(g, e)] for g, e in newest.items()
    }
    assert store.newest_generation == max(newest, default=0)
    assert store.accepted + sum(store.dropped.values()) == len(offers)
