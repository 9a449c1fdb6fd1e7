"""Small helpers shared by the tests that watch threads."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Callable

import pytest

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


def in_forked_child(work: Callable[[], str], *, hung: str, timeout: float = 20.0) -> str:
    """Run ``work`` in a forked child and return what it returned; fail with ``hung`` if the
    child has not finished after ``timeout`` seconds (it is killed), or if ``work`` raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.write(write_end, work().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        deadline = time.monotonic() + timeout
        while (finished := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(hung)
            time.sleep(0.02)
        output = os.read(read_end, 4096).decode()
    finally:
        os.close(read_end)
    assert os.WEXITSTATUS(finished[1]) == 0, "the child failed"
    return output
