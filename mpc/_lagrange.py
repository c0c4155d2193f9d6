"""Lagrange coefficients at 0 as small integers over a common denominator, and their use.

For small member indices λ_i = Π_{j≠i} j / Π_{j≠i} (j - i) is a ratio of small integers:
for members {1, 2, 3} it is (3, -3, 1). Written as λ_i = μ_i / d with integers μ_i and one
positive denominator d, Σ λ_i·P_i = d⁻¹·Σ μ_i·P_i, and the backend multiplies by a small
integer in a few microseconds (its cost follows the scalar's bit length) where a full
255-bit scalar costs ~0.2 ms. Combining t partials then costs two full multiplications at
most instead of a multi-scalar multiplication over 255-bit coefficients.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Final

from mpc.errors import ProtocolMisuse
from mpc.group import G1, Scalar

#: Beyond this many bits the integer form is no faster than the reduced coefficients.
MAX_BITS: Final = 128


def integer_lagrange_at_zero(indices: Sequence[int]) -> tuple[list[int], int] | None:
    """(μ_i in the order of `indices`, d > 0) with λ_i = μ_i / d, or None if they are large."""
    if len(set(indices)) != len(indices) or any(i <= 0 for i in indices):
        raise ProtocolMisuse(f"indices must be distinct and positive, got {list(indices)}")
    found = _integer_lagrange(tuple(indices))
    return None if found is None else (list(found[0]), found[1])


# A client combines the same few member sets again and again; the Fractions cost ~65 µs a set.
@functools.lru_cache(maxsize=256)
def _integer_lagrange(indices: tuple[int, ...]) -> tuple[tuple[int, ...], int] | None:
    fractions = []
    for i in indices:
        value = Fraction(1)
        for j in indices:
            if j != i:
                value *= Fraction(j, j - i)
        fractions.append(value)
    d = math.lcm(*(f.denominator for f in fractions))
    mus = [int(f * d) for f in fractions]
    if max(abs(m) for m in mus).bit_length() > MAX_BITS or d.bit_length() > MAX_BITS:
        return None
    return tuple(mus), d


def small_combination(points: Sequence[G1], coefficients: Sequence[int]) -> G1:
    """Σ c_i·P_i for small signed integers c_i (each product costs about its bit length)."""
    # Start from the first term, not the identity, so that the sum stays in the points'
    # backend (mpc.group: mixing backends costs a conversion).
    acc: G1 | None = None
    for point, c in zip(points, coefficients, strict=True):
        term = point * Scalar(abs(c))
        if c < 0:
            term = -term
        acc = term if acc is None else acc + term
    return G1.identity() if acc is None else acc
