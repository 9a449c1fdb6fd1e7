"""Small helpers shared by the tests that watch threads."""

from __future__ import annotations

import threading
import time
from typing import Callable

from gitlab_botocore.refresh import THREAD_NAME


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def refresh_in_flight() -> bool:
    """Whether a background refresh thread is running."""
    return any(thread.name == THREAD_NAME for thread in threading.enumerate())
