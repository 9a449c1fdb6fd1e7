"""Exponential back-off: one policy type for every wait-and-try-again in the library.

The STS exchange waits between retries within its budget, the refresh schedule waits
between failed refresh attempts, and the cache polls a lock another process holds. Each
names its own :class:`Backoff`; the arithmetic lives here once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

# 2.0 ** 1024 overflows a float; any ceiling is reached long before this many doublings.
_MAX_DOUBLINGS = 64


@dataclass(frozen=True)
class Backoff:
    """Waits of ``first`` seconds, doubling with each attempt up to ``ceiling``.

    ``jitter`` is the share of each wait that is random: the wait is drawn between
    ``(1 - jitter)`` and all of the doubled value, so waits still grow while processes
    that failed together do not retry in step. ``jitter=0`` gives fixed waits.
    """

    first: float
    ceiling: float
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.ceiling:
            raise ValueError(f"need 0 < first <= ceiling, got {self.first} and {self.ceiling}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter is a share between 0 and 1, got {self.jitter}")

    def seconds(self, attempt: int, uniform: Callable[[], float] = random.random) -> float:
        """The wait after the ``attempt``-th failure in a row (1 for the first).

        ``uniform`` returns a number in [0, 1); tests pass their own.
        """
        if attempt < 1:
            raise ValueError(f"attempts are counted from 1, got {attempt}")
        doubled = self.first * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS)
        top = min(self.ceiling, doubled)
        return top * (1.0 - self.jitter * uniform())
