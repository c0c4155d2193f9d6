"""Structured mutations of real inputs, and the vendored test data they start from.

A mutation is a short list of byte edits (flip a bit, set a byte, write a boundary integer at
a field offset, cut, drop, insert or duplicate a slice) applied to a seed. Offsets are drawn
near the seed's known field offsets as well as anywhere, so length and type fields are hit far
more often than uniform sampling would hit them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from hypothesis import strategies as st

from tests.conftest import ATTESTATION_DATA

#: Values that break length and count fields: zero, one, sign and width boundaries.
BOUNDARY_INTS = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000)
BOUNDARY_INTS_32 = (*BOUNDARY_INTS, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)

Edit = tuple[str, int, int, bytes]
T = TypeVar("T")
_OPS = ("flip", "set", "u16", "u32", "cut", "drop", "insert", "dup")


def attestation_dir() -> Path:
    """The vendored `tests/data/attestation` (part of the checkout)."""
    return ATTESTATION_DATA


def _edit(positions: st.SearchStrategy[int]) -> st.SearchStrategy[Edit]:
    blob = st.binary(max_size=64)
    return st.one_of(
        st.tuples(st.just("flip"), positions, st.integers(0, 7), st.just(b"")),
        st.tuples(st.just("set"), positions, st.integers(0, 255), st.just(b"")),
        st.tuples(
            st.just("u16"),
            positions,
            st.sampled_from(BOUNDARY_INTS) | st.integers(0, 0xFFFF),
            st.just(b""),
        ),
        st.tuples(
            st.just("u32"),
            positions,
            st.sampled_from(BOUNDARY_INTS_32) | st.integers(0, 0xFFFFFFFF),
            st.just(b""),
        ),
        st.tuples(st.just("cut"), positions, st.just(0), st.just(b"")),
        st.tuples(st.just("drop"), positions, st.integers(1, 64), st.just(b"")),
        st.tuples(st.just("insert"), positions, st.just(0), blob),
        st.tuples(st.just("dup"), positions, st.integers(1, 64), st.just(b"")),
    )


def apply_edits(seed_bytes: bytes, edits: Sequence[Edit]) -> bytes:
    """Apply `edits` in order; offsets wrap around the current length."""
    data = bytearray(seed_bytes)
    for op, raw_pos, arg, blob in edits:
        pos = raw_pos % (len(data) + 1)
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << arg
        elif op == "set" and pos < len(data):
            data[pos] = arg
        elif op in ("u16", "u32"):
            width = 2 if op == "u16" else 4
            data[pos : pos + width] = (arg & (256**width - 1)).to_bytes(width, "little")
        elif op == "cut":
            del data[pos:]
        elif op == "drop":
            del data[pos : pos + arg]
        elif op == "insert":
            data[pos:pos] = blob
        elif op == "dup":
            data[pos:pos] = data[pos : pos + arg]
    return bytes(data)


def mutants(
    seeds: Sequence[bytes], hot: Sequence[int] = (), max_edits: int = 4
) -> st.SearchStrategy[bytes]:
    """Seeds with 0..`max_edits` edits; a third of the offsets fall within 8 bytes of `hot`."""
    longest = max(len(s) for s in seeds)
    anywhere = st.integers(0, longest)
    positions = anywhere
    if hot:
        near = st.builds(
            lambda base, delta: max(0, base + delta), st.sampled_from(hot), st.integers(-8, 8)
        )
        positions = st.one_of(near, anywhere, anywhere)
    return st.builds(
        apply_edits, st.sampled_from(list(seeds)), st.lists(_edit(positions), max_size=max_edits)
    )


def seeded(make: Callable[[random.Random], T]) -> st.SearchStrategy[T]:
    """Cases built by `make` from a `random.Random` that hypothesis seeds.

    Hypothesis spends ~0.7 ms on every example it generates; one integer draw per case keeps
    its share small while it still drives (and, by `--seed`, derandomizes) the sequence.
    """
    return st.integers(0, 2**64 - 1).map(lambda s: make(random.Random(s)))


def random_edits(
    rng: random.Random, seed_bytes: bytes, hot: Sequence[int] = (), max_edits: int = 4
) -> bytes:
    """`apply_edits` with edits drawn from `rng` (the fast path of `mutants`)."""
    edits: list[Edit] = []
    for _ in range(rng.randint(0, max_edits)):
        op = rng.choice(_OPS)
        if hot and rng.random() < 0.4:
            pos = max(0, rng.choice(hot) + rng.randint(-8, 8))
        else:
            pos = rng.randint(0, len(seed_bytes))
        arg, blob = 0, b""
        if op == "flip":
            arg = rng.randint(0, 7)
        elif op == "set":
            arg = rng.randint(0, 255)
        elif op in ("u16", "u32"):
            top = 0xFFFF if op == "u16" else 0xFFFFFFFF
            arg = rng.choice(BOUNDARY_INTS_32) if rng.random() < 0.6 else rng.randint(0, top)
        elif op in ("drop", "dup"):
            arg = rng.randint(1, 64)
        elif op == "insert":
            blob = rng.randbytes(rng.randint(0, 64))
        edits.append((op, pos, arg, blob))
    return apply_edits(seed_bytes, edits)


def fast_mutants(
    seeds: Sequence[bytes], hot: Sequence[int] = (), max_edits: int = 4
) -> st.SearchStrategy[bytes]:
    listed = list(seeds)
    return seeded(lambda rng: random_edits(rng, rng.choice(listed), hot, max_edits))


def raw_or_mutant(
    seeds: Sequence[bytes], hot: Sequence[int] = (), max_raw: int = 8192
) -> st.SearchStrategy[bytes]:
    """Mostly structured mutants of `seeds` (most of them by the fast path), sometimes raw bytes."""
    fast = fast_mutants(seeds, hot)
    raw = seeded(lambda rng: rng.randbytes(rng.randint(0, rng.choice((1, 8, 64, 200, max_raw)))))
    return st.one_of(fast, fast, fast, raw)


def rich_mutants(
    seeds: Sequence[bytes], hot: Sequence[int] = (), max_raw: int = 8192
) -> st.SearchStrategy[bytes]:
    """Hypothesis-built edits of `seeds` and plain hypothesis binaries (the slower share)."""
    return st.one_of(mutants(seeds, hot), st.binary(max_size=max_raw))


_TEXTS = ("", "0x", "00", "zz", "\ud800", "\x00", "app-id", "system-ready", "é" * 3, "0" * 96)
_INTS = (0, 1, 3, 4, -1, 2, 0xFFFFFFFF, 0x100000000, 0x08000001, 2**64, -(2**63))


def random_json(rng: random.Random, depth: int = 2) -> object:
    """A JSON-able value biased to boundary ints, hex-ish strings and odd unicode."""
    kind = rng.randrange(9 if depth > 0 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice(_INTS)
    if kind == 3:
        return rng.uniform(-1e9, 1e9)
    if kind == 4:
        return rng.choice(_TEXTS)
    if kind == 5:
        return rng.randbytes(rng.choice((0, 1, 20, 32, 47, 48, 49))).hex()
    if kind == 6:
        return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, 8)))
    if kind == 7:
        return [random_json(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(_TEXTS): random_json(rng, depth - 1) for _ in range(rng.randint(0, 3))}
