"""The long-term deal key a node registers on chain (ML-KEM-768 + X25519, HPKE-shaped).

Shares are no longer encrypted to this key: every epoch has its own keys (`mpc.epochkey`),
which die with the epoch, and the sealed shares go on the public board (`mpc.sharebox`). The
registered key stays part of a node's attested registration (design §4.4) until the registry
format drops it; nothing in the protocol uses its private half.

`cryptography` gives these hybrid keys no serialization, so this module defines one:

    private key (96 B)  = ML-KEM-768 seed (64 B) ‖ X25519 private key (32 B)
    public key (1216 B) = ML-KEM-768 encapsulation key (1184 B) ‖ X25519 public key (32 B)
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from mpc.errors import EncodingError
from mpc.group import Rng

MLKEM_SEED_SIZE: Final = 64
MLKEM_PUBLIC_SIZE: Final = 1184
X25519_SIZE: Final = 32
PRIVATE_KEY_SIZE: Final = MLKEM_SEED_SIZE + X25519_SIZE
PUBLIC_KEY_SIZE: Final = MLKEM_PUBLIC_SIZE + X25519_SIZE
_X25519_P: Final = 2**255 - 19


class DealPublicKey:
    """A member's registered deal key (the public half); 1216 bytes. Build with `from_bytes`."""

    __slots__ = ("_key", "_raw")

    def __init__(self, raw: bytes, key: hpke.MLKEM768X25519PublicKey) -> None:
        self._raw = raw
        self._key = key

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "deal public key") -> DealPublicKey:
        """Strictly decode: exact length, canonical ML-KEM key, canonical X25519 u-coordinate."""
        if len(data) != PUBLIC_KEY_SIZE:
            raise EncodingError(what, f"expected {PUBLIC_KEY_SIZE} bytes, got {len(data)}")
        data = bytes(data)
        kem_raw, x_raw = data[:MLKEM_PUBLIC_SIZE], data[MLKEM_PUBLIC_SIZE:]
        try:
            kem = mlkem.MLKEM768PublicKey.from_public_bytes(kem_raw)
        except ValueError:
            raise EncodingError(what, "ML-KEM-768 part is not a valid encapsulation key") from None
        if kem.public_bytes_raw() != kem_raw:
            raise EncodingError(what, "ML-KEM-768 part is not canonical")
        # RFC 7748 lets decoders mask the top bit and reduce mod p; we refuse both instead,
        # so every key has exactly one encoding.
        if int.from_bytes(x_raw, "little") >= _X25519_P:
            raise EncodingError(what, "X25519 part is not canonical (u >= 2^255 - 19)")
        xkey = x25519.X25519PublicKey.from_public_bytes(x_raw)
        return cls(data, hpke.MLKEM768X25519PublicKey(kem, xkey))

    def to_bytes(self) -> bytes:
        return self._raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DealPublicKey):
            return NotImplemented
        return self._raw == other._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"DealPublicKey({self._raw[-8:].hex()}…)"


class DealKeyPair:
    """A member's deal key pair. Secret: the repr hides it; bytes only via `private_bytes()`.

    Python cannot wipe memory: erasing this key means deleting its sealed copies and
    dropping every reference to the object.
    """

    __slots__ = ("_kem_seed", "_private", "_public", "_x_raw")

    def __init__(self, kem: mlkem.MLKEM768PrivateKey, xkey: x25519.X25519PrivateKey) -> None:
        self._private = hpke.MLKEM768X25519PrivateKey(kem, xkey)
        raw = kem.public_key().public_bytes_raw() + xkey.public_key().public_bytes_raw()
        self._public = DealPublicKey.from_bytes(raw)
        self._kem_seed = kem.private_bytes_raw()
        self._x_raw = xkey.private_bytes_raw()

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> DealKeyPair:
        """A fresh key pair from 96 bytes of `rng`."""
        return cls.from_private_bytes(rng(PRIVATE_KEY_SIZE))

    @classmethod
    def from_private_bytes(cls, data: bytes, what: str = "deal private key") -> DealKeyPair:
        if len(data) != PRIVATE_KEY_SIZE:
            raise EncodingError(what, f"expected {PRIVATE_KEY_SIZE} bytes, got {len(data)}")
        kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes(data[:MLKEM_SEED_SIZE]))
        xkey = x25519.X25519PrivateKey.from_private_bytes(bytes(data[MLKEM_SEED_SIZE:]))
        return cls(kem, xkey)

    def private_bytes(self) -> bytes:
        """ML-KEM-768 seed (64 B) ‖ X25519 private key (32 B). Secret."""
        return self._kem_seed + self._x_raw

    @property
    def public_key(self) -> DealPublicKey:
        return self._public

    def __repr__(self) -> str:
        return f"DealKeyPair(public={self._public!r}, <redacted>)"
