"""Sealed key shares: round trip, listing, erasure, and files that must not load."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpc.group import Scalar
from mpc.sharing import Share
from mpc.types import MemberIndex
from node.errors import StorageError
from node.sealing import FileSealer
from node.shares import ShareStore


@pytest.fixture
def store(tmp_path: Path) -> ShareStore:
    return ShareStore(tmp_path / "shares", FileSealer.open(tmp_path, create=True))


def test_shares_round_trip_and_are_listed_by_generation_and_epoch(store: ShareStore) -> None:
    assert store.list() == []
    a, b = Share(MemberIndex(3), Scalar(12345)), Share(MemberIndex(1), Scalar(777))
    store.save(2, 7, a)
    store.save(1, 10, b)
    assert store.list() == [(1, 10), (2, 7)]
    loaded = store.load(2, 7)
    assert (loaded.member, loaded.value) == (3, Scalar(12345))
    assert Scalar(12345).to_bytes() not in (store.directory / "g2-e7.sealed").read_bytes()


def test_erase_deletes_the_sealed_file(store: ShareStore) -> None:
    store.save(1, 3, Share(MemberIndex(2), Scalar(5)))
    assert store.erase(1, 3) is True
    assert not (store.directory / "g1-e3.sealed").exists()
    assert store.erase(1, 3) is False
    assert store.list() == []
    with pytest.raises(StorageError, match="g1-e3.sealed"):
        store.load(1, 3)


def test_a_share_moved_to_another_slot_does_not_load(store: ShareStore) -> None:
    store.save(1, 3, Share(MemberIndex(2), Scalar(5)))
    (store.directory / "g1-e3.sealed").rename(store.directory / "g1-e4.sealed")
    with pytest.raises(StorageError, match="does not unseal"):
        store.load(1, 4)


def test_another_sealing_key_or_a_bad_slot_is_refused(tmp_path: Path, store: ShareStore) -> None:
    store.save(1, 3, Share(MemberIndex(2), Scalar(5)))
    other = ShareStore(store.directory, FileSealer(b"\x02" * 32))
    with pytest.raises(StorageError, match="does not unseal"):
        other.load(1, 3)
    with pytest.raises(StorageError, match="both must be >= 1"):
        store.save(0, 3, Share(MemberIndex(2), Scalar(5)))
