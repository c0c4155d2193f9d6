"""Revocation notices (mpc/revocation.py): canonical bytes, and believed only when signed by
the key of the verified manifest's epoch."""

from __future__ import annotations

import dataclasses

import pytest

from mpc.errors import EncodingError, InvalidSignature
from mpc.revocation import (
    NODE_REMOVED,
    RevocationNotice,
    decode_notice,
    notice_envelope,
    verify_notice,
)
from tests.relay.signing import CHAIN_ID, FORGER, GOVERNANCE, NETWORK, sign

MANIFEST = NETWORK.manifest(7)
NOTICE = RevocationNotice(CHAIN_ID, GOVERNANCE, 2, 7, NODE_REMOVED, b"\x03" * 20)


def test_the_notice_bytes_are_as_documented_and_round_trip() -> None:
    raw = NOTICE.encode()
    assert raw[:4] == (18).to_bytes(4, "big") and raw[4:22] == b"tkms-revocation:v1"
    assert raw.endswith((1).to_bytes(4, "big") + b"\x01" + (20).to_bytes(4, "big") + b"\x03" * 20)
    assert decode_notice(raw) == NOTICE
    with pytest.raises(EncodingError):
        decode_notice(raw + b"\x00")


def test_only_the_epochs_key_makes_a_notice() -> None:
    good = notice_envelope(NOTICE, sign(NETWORK.secrets[1], NOTICE.encode()))
    assert verify_notice(good, MANIFEST) == NOTICE
    for secret in (FORGER, NETWORK.secrets[0]):
        forged = notice_envelope(NOTICE, sign(secret, NOTICE.encode()))
        with pytest.raises(InvalidSignature, match="not signed by epoch 7"):
            verify_notice(forged, MANIFEST)
    old = dataclasses.replace(NOTICE, epoch=6)
    with pytest.raises(InvalidSignature, match="not the current epoch 7"):
        verify_notice(notice_envelope(old, sign(NETWORK.secrets[1], old.encode())), MANIFEST)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"kind": 2}, "is not 1"), ({"subject": b"\x01"}, "20 bytes"), ({"epoch": 0}, ">= 1")],
)
def test_malformed_notices_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        dataclasses.replace(NOTICE, **change)  # type: ignore[arg-type]
