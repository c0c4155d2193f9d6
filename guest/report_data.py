"""dstack's report_data for app-supplied content (the legacy Tappd `TdxQuote`).

    report_data = H(tag ‖ ":" ‖ content), zero-padded to 64 bytes

with tag `app-data` unless the caller names its own, and H one of `HASHES` (default
`sha512`); `raw` passes 64 bytes through unchanged. The tag keeps an app's quotes for one
purpose from being replayed as quotes for another.

Python's hashlib has SHA-3 but not the original Keccak (same permutation, padding byte 0x01
instead of SHA-3's 0x06), which dstack offers as keccak256/384/512: `keccak` below is the
sponge over Keccak-f[1600], checked in tests against hashlib's SHA-3 (with 0x06) and against
eth-hash's keccak256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

DEFAULT_HASH = "sha512"
APP_DATA_TAG = "app-data"
_MASK = (1 << 64) - 1


def _rol(lane: int, n: int) -> int:
    n %= 64
    return ((lane << n) | (lane >> (64 - n))) & _MASK


def _keccak_f(lanes: list[list[int]]) -> None:
    """Keccak-f[1600] in place on lanes[x][y] (FIPS 202, section 3)."""
    r = 1
    for _ in range(24):
        c = [lanes[x][0] ^ lanes[x][1] ^ lanes[x][2] ^ lanes[x][3] ^ lanes[x][4] for x in range(5)]
        d = [c[(x + 4) % 5] ^ _rol(c[(x + 1) % 5], 1) for x in range(5)]
        for x in range(5):
            for y in range(5):
                lanes[x][y] ^= d[x]
        x, y = 1, 0
        current = lanes[x][y]
        for t in range(24):  # rho and pi
            x, y = y, (2 * x + 3 * y) % 5
            current, lanes[x][y] = lanes[x][y], _rol(current, (t + 1) * (t + 2) // 2)
        for y in range(5):  # chi
            row = [lanes[x][y] for x in range(5)]
            for x in range(5):
                lanes[x][y] = row[x] ^ (~row[(x + 1) % 5] & row[(x + 2) % 5])
        for j in range(7):  # iota: round constants from the degree-8 LFSR
            r = ((r << 1) ^ ((r >> 7) * 0x71)) % 256
            if r & 2:
                lanes[0][0] ^= 1 << ((1 << j) - 1)


def sponge(bits: int, data: bytes, pad: int) -> bytes:
    """The `bits`-bit digest of the Keccak sponge with capacity 2*bits and padding `pad`
    (0x01: Keccak, 0x06: SHA-3)."""
    rate = 200 - bits // 4
    padded = bytearray(data + bytes([pad]))
    padded += bytes(-len(padded) % rate)
    padded[-1] |= 0x80
    lanes = [[0] * 5 for _ in range(5)]
    for block in range(0, len(padded), rate):
        for i in range(rate // 8):
            word = int.from_bytes(padded[block + 8 * i : block + 8 * i + 8], "little")
            lanes[i % 5][i // 5] ^= word
        _keccak_f(lanes)
    out = b"".join(lanes[i % 5][i // 5].to_bytes(8, "little") for i in range(rate // 8))
    return out[: bits // 8]


def keccak(bits: int) -> Callable[[bytes], bytes]:
    return lambda data: sponge(bits, data, 0x01)


def _hashlib(name: str) -> Callable[[bytes], bytes]:
    return lambda data: hashlib.new(name, data).digest()


HASHES: dict[str, Callable[[bytes], bytes]] = {
    "sha256": _hashlib("sha256"),
    "sha384": _hashlib("sha384"),
    "sha512": _hashlib("sha512"),
    "sha3-256": _hashlib("sha3_256"),
    "sha3-384": _hashlib("sha3_384"),
    "sha3-512": _hashlib("sha3_512"),
    "keccak256": keccak(256),
    "keccak384": keccak(384),
    "keccak512": keccak(512),
}


def app_report_data(content: bytes, hash_algorithm: str, tag: str) -> bytes:
    """64 bytes of report_data for `content` (module docstring). ValueError names what is
    wrong: an unknown algorithm, or raw content that is not exactly 64 bytes."""
    if hash_algorithm == "raw":
        if len(content) != 64:
            raise ValueError(f"raw report_data must be exactly 64 bytes, got {len(content)}")
        return content
    digest = HASHES.get(hash_algorithm)
    if digest is None:
        raise ValueError(
            f"unknown hash_algorithm {hash_algorithm!r} (use raw or {', '.join(HASHES)})"
        )
    return digest(tag.encode() + b":" + content).ljust(64, b"\0")
