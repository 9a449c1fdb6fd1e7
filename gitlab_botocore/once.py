"""What this process has already said once: the memory behind each once-only warning.

A WARNING about a role, an endpoint or a cache directory is worth giving once per process,
from whichever thread gets there first (a background refresh included). A forked child
starts with the parent's memory but a fresh lock: the thread that may have held it is not
there.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Hashable


class Once:
    """The keys seen so far in this process; thread-safe and fork-safe."""

    __slots__ = ("__weakref__", "_lock", "_seen")

    def __init__(self) -> None:
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()
        _ALL.add(self)

    def first(self, key: Hashable) -> bool:
        """Whether ``key`` is seen for the first time; it is remembered from now on."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def forget(self) -> None:
        """Forget every key, as if in a new process."""
        with self._lock:
            self._seen.clear()


_ALL: weakref.WeakSet[Once] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for once in list(_ALL):
        once._lock = threading.Lock()  # a thread of the parent may have held it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
