"""How long the KMS client waits for the members asked so far before asking one more."""

from __future__ import annotations

import statistics
from collections import deque


class HedgeDelay:
    """How long to wait for the members asked so far before asking one more.

    Twice the median of the last `samples` answer times, kept within [`floor`, `ceiling`]:
    on a quiet network answers take ~10 ms and a silent member costs ~50 ms; under load the
    delay grows with the answers so healthy-but-busy members are not doubled up on. Before
    any answer (a fresh client: the guest agent's start-up derivation) it is `initial`.
    """

    def __init__(
        self,
        *,
        initial: float = 0.1,
        floor: float = 0.05,
        ceiling: float = 0.3,
        samples: int = 64,
    ) -> None:
        if not 0 < floor <= initial <= ceiling:
            raise ValueError("hedge delays must satisfy 0 < floor <= initial <= ceiling")
        self.initial, self.floor, self.ceiling = initial, floor, ceiling
        self._answers: deque[float] = deque(maxlen=samples)

    def observe(self, seconds: float) -> None:
        """One member's answer time (a good answer: failures hedge at once anyway)."""
        self._answers.append(seconds)

    def current(self) -> float:
        if not self._answers:
            return self.initial
        return min(self.ceiling, max(self.floor, 2 * statistics.median(self._answers)))
