"""Unambiguous framing of byte strings, and RFC 9380 hash_to_field into the scalar field.

Every hash input in tkms that combines several values is framed with `frame()`: each part is
prefixed with its 4-byte big-endian length, so no two different tuples frame to the same
bytes. Fiat-Shamir challenges use `hash_to_scalar` with the challenge DST.
"""

from __future__ import annotations

import hashlib
from typing import Final

from mpc.dst import DST_CHALLENGE
from mpc.errors import EncodingError
from mpc.group import SCALAR_SIZE, R, Scalar

_B_IN_BYTES: Final = 32  # SHA-256 output size
_S_IN_BYTES: Final = 64  # SHA-256 block size
#: L = ceil((ceil(log2(r)) + k) / 8) with k = 128 (RFC 9380 §5).
_L: Final = 48


def frame(*parts: bytes) -> bytes:
    """Length-prefix every part (u32 big-endian) and concatenate."""
    out = bytearray()
    for part in parts:
        if len(part) >= 1 << 32:
            raise ValueError("part too long to frame")
        out += len(part).to_bytes(4, "big")
        out += part
    return bytes(out)


def unframe(data: bytes, what: str) -> list[bytes]:
    """Invert `frame`; reject truncation and trailing bytes."""
    parts, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise EncodingError(what, f"truncated length prefix at offset {pos}")
        size = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        if pos + size > len(data):
            raise EncodingError(what, f"part at offset {pos - 4} runs past the end")
        parts.append(bytes(data[pos : pos + size]))
        pos += size
    return parts


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 expand_message_xmd with SHA-256."""
    ell = -(-len_in_bytes // _B_IN_BYTES)
    if ell > 255 or len_in_bytes > 65535:
        raise ValueError("expand_message_xmd: requested output too long")
    if not 0 < len(dst) <= 255:
        raise ValueError(f"domain separation tag must be 1..255 bytes, got {len(dst)}")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(_S_IN_BYTES) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha256(msg_prime).digest()
    b = [hashlib.sha256(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, b[-1], strict=True))
        b.append(hashlib.sha256(mixed + bytes([i]) + dst_prime).digest())
    return b"".join(b)[:len_in_bytes]


def hash_to_scalar(msg: bytes, dst: bytes = DST_CHALLENGE) -> Scalar:
    """RFC 9380 §5.2 hash_to_field into Z_r with count = 1 (expand_message_xmd, SHA-256)."""
    return Scalar(int.from_bytes(expand_message_xmd(msg, dst, _L), "big") % R)


def challenge(label: bytes, *parts: bytes) -> Scalar:
    """A Fiat-Shamir challenge over a labelled, framed transcript."""
    return hash_to_scalar(frame(label, *parts), DST_CHALLENGE)


#: Size of a Fiat-Shamir proof (c, z): two scalars.
CHALLENGE_RESPONSE_SIZE: Final = 2 * SCALAR_SIZE


def decode_challenge_response(data: bytes, what: str) -> tuple[Scalar, Scalar]:
    """Strictly decode a proof's (c, z): exactly 64 bytes, both scalars canonical."""
    if len(data) != CHALLENGE_RESPONSE_SIZE:
        raise EncodingError(what, f"expected {CHALLENGE_RESPONSE_SIZE} bytes, got {len(data)}")
    c = Scalar.from_bytes(data[:SCALAR_SIZE], f"{what} c")
    return c, Scalar.from_bytes(data[SCALAR_SIZE:], f"{what} z")
