"""Node health notes (mpc/nodehealth.py): the documented bytes (tests/data/relay), and a note
believed only from a member of the manifest, signed with that member's pinned TLS key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mpc.errors import EncodingError, InvalidSignature
from mpc.nodehealth import HealthNote, decode_note, sign_note, verify_note
from tests.relay.signing import NETWORK, tls_key

DATA = Path(__file__).parents[1] / "data/relay"
VECTOR = json.loads((DATA / "health_vectors.json").read_text())
MANIFEST = NETWORK.manifest(7)


def _note(**change: object) -> HealthNote:
    fields = dict(VECTOR["fields"])
    fields["governance"] = bytes.fromhex(fields["governance"])
    fields["address"] = bytes.fromhex(fields["address"])
    fields.update(change)
    return HealthNote(**fields)


def test_the_vector_note_is_reproduced_and_its_envelope_verifies() -> None:
    assert _note().encode().hex() == VECTOR["note"]
    assert decode_note(bytes.fromhex(VECTOR["note"])) == _note()
    note = verify_note(bytes.fromhex(VECTOR["envelope"]), MANIFEST)
    assert note == _note() and note.health_name == "DEGRADED"


def test_a_member_signs_its_own_note() -> None:
    note = _note(address=MANIFEST.members[2].address, health=2, reason="")
    assert verify_note(sign_note(note, tls_key(3)), MANIFEST) == note


def test_a_note_signed_with_another_key_than_the_pin_is_refused() -> None:
    """Member 3's key cannot speak for member 2, nor can a fresh key."""
    for key in (tls_key(3), ec.generate_private_key(ec.SECP256R1())):
        with pytest.raises(InvalidSignature, match="key other than its pin"):
            verify_note(sign_note(_note(), key), MANIFEST)


def test_notes_of_non_members_other_epochs_or_networks_are_refused() -> None:
    outsider = _note(address=b"\x99" * 20)
    with pytest.raises(InvalidSignature, match="not a member of epoch 7"):
        verify_note(sign_note(outsider, tls_key(2)), MANIFEST)
    with pytest.raises(InvalidSignature, match="not the current epoch 7"):
        verify_note(sign_note(_note(epoch=6), tls_key(2)), MANIFEST)
    with pytest.raises(InvalidSignature, match="another network"):
        verify_note(sign_note(_note(chain_id=1), tls_key(2)), MANIFEST)


def test_a_changed_note_does_not_verify() -> None:
    envelope = bytes.fromhex(VECTOR["envelope"])
    changed = envelope.replace(b"1 of 3 members", b"0 of 3 members")
    assert changed != envelope
    with pytest.raises(InvalidSignature, match="bad signature"):
        verify_note(changed, MANIFEST)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"health": 3}, "health 3 is not 0, 1 or 2"),
        ({"reason": "x\n"}, "printable ASCII"),
        ({"reason": "x" * 201}, "printable ASCII"),
        ({"address": b"\x01"}, "must be 20 bytes"),
        ({"head": -1}, "head is not a u64"),
    ],
)
def test_malformed_notes_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        dataclasses.replace(_note(), **change)  # type: ignore[arg-type]
