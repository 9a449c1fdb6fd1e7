"""Exponential back-off: one policy type for every wait-and-try-again in the library.

The STS exchange waits between retries within its budget, the refresh schedule waits
between failed refresh attempts, and the cache polls a lock another process holds. Each
names its own :class:`Backoff`; the arithmetic lives here once.
"""

from __future__ import annotations

import random
from typing import Callable

from .values import ReadOnlyValue

# 2.0 ** 1024 overflows a float; any ceiling is reached long before this many doublings.
_MAX_DOUBLINGS = 64


class Backoff(ReadOnlyValue):
    """Waits of ``first`` seconds, doubling with each attempt up to ``ceiling``.

    ``jitter`` is the share of each wait that is random: the wait is drawn between
    ``(1 - jitter)`` and all of the doubled value, so waits still grow while processes
    that failed together do not retry in step. ``jitter=0`` gives fixed waits.

    Read-only. A plain class rather than a frozen dataclass, whose generated methods a
    job's fresh process would compile at import (~0.3 ms).
    """

    __slots__ = ("ceiling", "first", "jitter")

    first: float
    ceiling: float
    jitter: float

    def __init__(self, first: float, ceiling: float, jitter: float = 0.5) -> None:
        if not 0 < first <= ceiling:
            raise ValueError(f"need 0 < first <= ceiling, got {first} and {ceiling}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter is a share between 0 and 1, got {jitter}")
        self._set(first=first, ceiling=ceiling, jitter=jitter)

    def __repr__(self) -> str:
        return f"Backoff(first={self.first}, ceiling={self.ceiling}, jitter={self.jitter})"

    def seconds(self, attempt: int, uniform: Callable[[], float] = random.random) -> float:
        """The wait after the ``attempt``-th failure in a row (1 for the first).

        ``uniform`` returns a number in [0, 1); tests pass their own.
        """
        if attempt < 1:
            raise ValueError(f"attempts are counted from 1, got {attempt}")
        doubled = self.first * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS)
        top = min(self.ceiling, doubled)
        return top * (1.0 - self.jitter * uniform())
