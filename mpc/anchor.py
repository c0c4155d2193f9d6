"""A network's identity: its fingerprint, and the links that chain later key generations to it.

A tkms network is named by its fingerprint (design §7):

    fingerprint = SHA-256(frame("tkms-network:v1", chain id, governance, PK2 of generation 1))

PK2 of generation 1 comes out of the first DKG, so nobody can make another network with the
same fingerprint without that network's key: a chain that copies the governance address and
chain id (deterministic deployment makes both easy) still has its own PK2. A rotation starts
generation g with a fresh PK2_g; the network links it to the previous one with a threshold
signature of generation g-1 over the `tkms-generation:v1` statement (standard min-sig BLS under
PK2_{g-1}, `mpc.tsig.verify_signature`). Reshares and refreshes keep PK2: nothing to link.

`verify_key_chain` checks a whole chain from the fingerprint to the newest key; it is pure, so
whoever reads the keys and links (from a chain they do not trust) can check them here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from mpc.encoding import frame
from mpc.errors import MpcError, ProtocolMisuse
from mpc.group import G2
from mpc.tsig import verify_signature

FINGERPRINT_SIZE: Final = 32
_NETWORK_LABEL: Final = b"tkms-network:v1"
_GENERATION_LABEL: Final = b"tkms-generation:v1"


class AnchorMismatch(MpcError):
    """Keys that do not chain to the fingerprint; the message says which link fails."""


def _address(governance: bytes) -> bytes:
    if len(governance) != 20:
        raise ProtocolMisuse(f"governance address must be 20 bytes, got {len(governance)}")
    return governance


def network_fingerprint(chain_id: int, governance: bytes, genesis_key: G2) -> bytes:
    """The 32-byte fingerprint of the network whose generation-1 group key is `genesis_key`."""
    parts = (_NETWORK_LABEL, chain_id.to_bytes(32, "big"), _address(governance))
    return hashlib.sha256(frame(*parts, genesis_key.to_bytes())).digest()


def generation_statement(chain_id: int, governance: bytes, generation: int, key: G2) -> bytes:
    """`tkms-generation:v1` ‖ chain id ‖ governance ‖ generation ‖ PK2 of that generation."""
    if generation < 2:
        raise ProtocolMisuse(f"only generations >= 2 are linked, got {generation}")
    return frame(
        _GENERATION_LABEL,
        chain_id.to_bytes(32, "big"),
        _address(governance),
        generation.to_bytes(8, "big"),
        key.to_bytes(),
    )


def verify_key_chain(
    fingerprint: bytes,
    *,
    chain_id: int,
    governance: bytes,
    keys: Sequence[G2],
    links: Sequence[bytes],
) -> None:
    """Raise AnchorMismatch unless `keys` (PK2 of generations 1..g) chain to `fingerprint`.

    `links[i]` is the signature under `keys[i]` (generation i+1) over the statement of
    generation i+2, so there is one link fewer than keys.
    """
    if not keys:
        raise ProtocolMisuse("verify_key_chain needs the key of generation 1")
    if len(links) != len(keys) - 1:
        raise ProtocolMisuse(f"{len(keys)} keys need {len(keys) - 1} links, got {len(links)}")
    if len(fingerprint) != FINGERPRINT_SIZE:
        raise AnchorMismatch(f"a network fingerprint is 32 bytes, got {len(fingerprint)}")
    seen = network_fingerprint(chain_id, governance, keys[0])
    if seen != fingerprint:
        raise AnchorMismatch(
            f"chain {chain_id}, governance 0x{governance.hex()} and its generation-1 key make "
            f"network {seen.hex()}, not the expected {fingerprint.hex()}"
        )
    for generation, (previous, key, link) in enumerate(
        zip(keys[:-1], keys[1:], links, strict=True), start=2
    ):
        statement = generation_statement(chain_id, governance, generation, key)
        if not verify_signature(previous, statement, link):
            raise AnchorMismatch(
                f"the key of generation {generation} is not signed by generation "
                f"{generation - 1} (missing or invalid tkms-generation:v1 link)"
            )
