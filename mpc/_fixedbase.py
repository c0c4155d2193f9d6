"""A G1 point that is multiplied by many scalars: encoded once, then through a window table.

A node encrypts every partial of a session to the same requester key E (y·E per partial), so
E is worth preparing: its compressed bytes are computed once, and once it has been used
`table_after` times a window table of its multiples (w = 6: 43 rows of 63 points, ~0.5 MB,
~6 ms to build) turns each y·E from a 255-bit double-and-add (~0.2 ms here) into at most 42
additions (~0.08 ms). Points come in already validated (`G1.from_bytes`); nothing here decodes.

Not thread-safe: a node uses one instance from its event loop only.
"""

from __future__ import annotations

from typing import Final

from mpc.group import G1, Scalar

_WINDOW: Final = 6
_ROWS: Final = -(-255 // _WINDOW)
_MASK: Final = (1 << _WINDOW) - 1


class PreparedPoint:
    """`point` with its encoding cached and, after enough uses, a multiplication table."""

    __slots__ = ("_rows", "_uses", "encoded", "point", "table_after")

    def __init__(self, point: G1, *, table_after: int | None = 16) -> None:
        self.point = point
        self.encoded = point.to_bytes()
        self.table_after = table_after
        self._uses = 0
        self._rows: list[list[G1]] | None = None

    @property
    def has_table(self) -> bool:
        return self._rows is not None

    def mul(self, k: Scalar) -> G1:
        """k·point; the same result as `point * k`, faster once the table exists."""
        rows = self._rows
        if rows is None:
            self._uses += 1
            if self.table_after is None or self._uses < self.table_after:
                return self.point * k
            rows = self._rows = _build_rows(self.point)
        # Start from the first term, not the identity, so that the sum stays in the backend
        # the rows are in (mpc.group: mixing backends costs a conversion).
        acc: G1 | None = None
        digits = int(k)
        for row in rows:
            d = digits & _MASK
            if d:
                acc = row[d] if acc is None else acc + row[d]
            digits >>= _WINDOW
        return G1.identity() if acc is None else acc


def _build_rows(base: G1) -> list[list[G1]]:
    """rows[i][d] = d·2^(w·i)·base for every digit d of a w-bit window."""
    rows = []
    step = base
    for _ in range(_ROWS):
        row = [G1.identity(), step]
        for _ in range(_MASK - 1):
            row.append(row[-1] + step)
        rows.append(row)
        step = row[-1] + step  # 2^w times the previous row's base
    return rows
