"""Epoch manifests and their envelopes (mpc/manifest.py): the documented bytes (vectors in
tests/data/relay), strict decoding, and verification from the fingerprint alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.anchor import AnchorMismatch
from mpc.errors import EncodingError, InvalidSignature
from mpc.group import G2
from mpc.manifest import (
    EpochManifest,
    ManifestMember,
    SignedManifest,
    decode_envelope,
    decode_manifest,
    verify_envelope,
)
from tests.relay.signing import FORGER, NETWORK, KeyedNetwork, sign

VECTORS = json.loads((Path(__file__).parents[1] / "data/relay/manifest_vectors.json").read_text())


def test_vector_bytes_are_reproduced_from_their_fields() -> None:
    v = VECTORS
    manifest = EpochManifest(
        chain_id=v["chain_id"],
        governance=bytes.fromhex(v["governance"]),
        generation=v["generation"],
        epoch=v["epoch"],
        threshold=v["threshold"],
        group_key=G2.from_bytes(bytes.fromhex(v["group_key"])),
        members=tuple(
            ManifestMember(
                bytes.fromhex(m["address"]), m["endpoint"], bytes.fromhex(m["tls_key_hash"])
            )
            for m in v["members"]
        ),
    )
    assert manifest.encode().hex() == v["manifest"]
    assert decode_manifest(bytes.fromhex(v["manifest"])) == manifest
    # The label and the first fields, byte for byte as docs/relay.md lays them out.
    raw = bytes.fromhex(v["manifest"])
    assert raw[:4] == (22).to_bytes(4, "big") and raw[4:26] == b"tkms-epoch-manifest:v1"
    assert raw[26:30] == (32).to_bytes(4, "big")
    assert int.from_bytes(raw[30:62], "big") == v["chain_id"]


def test_vector_envelope_verifies_against_its_fingerprint_only() -> None:
    envelope = bytes.fromhex(VECTORS["envelope"])
    manifest = verify_envelope(envelope, bytes.fromhex(VECTORS["fingerprint"]))
    assert manifest.encode().hex() == VECTORS["manifest"]
    assert decode_envelope(envelope).signature.hex() == VECTORS["signature"]
    with pytest.raises(AnchorMismatch):
        verify_envelope(envelope, bytes(32))


def test_a_forged_signature_is_refused() -> None:
    manifest = NETWORK.manifest(9)
    forged = NETWORK.envelope(manifest, signer=FORGER)
    with pytest.raises(InvalidSignature, match="not signed by generation 2"):
        verify_envelope(forged, NETWORK.fingerprint)


def test_a_manifest_under_a_key_outside_the_chain_is_refused() -> None:
    """A forger's own generation-2 key, with the real link (to the real key), does not chain."""
    rogue = KeyedNetwork((NETWORK.secrets[0], FORGER))
    statement = rogue.manifest(9).encode()
    envelope = SignedManifest(statement, sign(FORGER, statement), rogue.keys, NETWORK.links)
    with pytest.raises(AnchorMismatch, match="generation 2 is not signed"):
        verify_envelope(envelope.encode(), NETWORK.fingerprint)


def test_a_manifest_naming_another_key_than_its_chain_is_refused() -> None:
    good = NETWORK.manifest(9)
    swapped = EpochManifest(**{**_fields(good), "group_key": NETWORK.keys[0]})
    statement = swapped.encode()
    envelope = SignedManifest(
        statement, sign(NETWORK.secrets[0], statement), NETWORK.keys, NETWORK.links
    ).encode()
    with pytest.raises(InvalidSignature, match="group key is not generation 2"):
        verify_envelope(envelope, NETWORK.fingerprint)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=802), st.integers(min_value=1, max_value=255))
def test_any_changed_byte_is_refused(position: int, flip: int) -> None:
    envelope = bytearray(bytes.fromhex(VECTORS["envelope"]))
    envelope[position] ^= flip
    with pytest.raises((EncodingError, InvalidSignature, AnchorMismatch, ValueError)):
        verify_envelope(bytes(envelope), NETWORK.fingerprint)


@settings(max_examples=30, deadline=None)
@given(
    epoch=st.integers(min_value=1, max_value=(1 << 64) - 1),
    members=st.integers(min_value=1, max_value=12),
    threshold=st.integers(min_value=1, max_value=12),
    endpoint=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
    ),
)
def test_manifests_round_trip(epoch: int, members: int, threshold: int, endpoint: str) -> None:
    base = NETWORK.manifest(epoch, members=members)
    fields = _fields(base)
    fields["threshold"] = min(threshold, members)
    fields["members"] = tuple(
        ManifestMember(m.address, endpoint, m.tls_key_hash) for m in base.members
    )
    manifest = EpochManifest(**fields)
    assert decode_manifest(manifest.encode()) == manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": 4}, "threshold 4 of 3"),
        ({"epoch": 0}, "must be >= 1"),
        ({"governance": b"\x01" * 19}, "governance must be 20 bytes"),
        ({"members": ()}, "0 members"),
    ],
)
def test_invalid_manifests_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        EpochManifest(**{**_fields(NETWORK.manifest(3)), **change})


def test_duplicate_members_and_bad_endpoints_are_refused() -> None:
    base = NETWORK.manifest(3)
    twice = (base.members[0], base.members[0])
    with pytest.raises(EncodingError, match="appears twice"):
        EpochManifest(**{**_fields(base), "members": twice, "threshold": 1})
    spaced = (ManifestMember(base.members[0].address, "host :1\n", base.members[0].tls_key_hash),)
    with pytest.raises(EncodingError, match="not printable ASCII"):
        EpochManifest(**{**_fields(base), "members": spaced, "threshold": 1})


def test_trailing_bytes_and_a_wrong_label_are_refused() -> None:
    raw = NETWORK.manifest(3).encode()
    with pytest.raises(EncodingError):
        decode_manifest(raw + b"\x00")
    with pytest.raises(EncodingError, match="not a tkms-epoch-manifest:v1"):
        decode_manifest(raw.replace(b"tkms-epoch-manifest:v1", b"tkms-epoch-manifest:v2"))


def _fields(m: EpochManifest) -> dict[str, Any]:
    return {name: getattr(m, name) for name in EpochManifest.__slots__}
