"""Refreshing: ahead of expiry, once per refresh, without stalling callers.

The whole process (our credentials, moto, the verifying STS, the issuer) travels in
time together with time-machine, so expiries are real and nobody waits for real.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import boto3
import pytest
import time_machine

from gitlab_botocore.testing.sts import FakeAWS, Fault

from .conftest import Job

START = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def clock(job: Job) -> Iterator[time_machine.Traveller]:
    """Frozen time; the job's token lives long enough for every test here."""
    with time_machine.travel(START, tick=False) as traveller:
        job.token(lifetime_seconds=6 * 3600)
        yield traveller


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def refresh_in_flight() -> bool:
    return any(thread.name == "gitlab-botocore-refresh" for thread in threading.enumerate())


def access_key(credentials: Any) -> str:
    key: str = credentials.get_frozen_credentials().access_key
    return key


def test_refresh_starts_in_background_and_callers_keep_current(
    clock: time_machine.Traveller, aws: FakeAWS
) -> None:
    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    first_expiry = credentials.expiration
    assert first_expiry == START + datetime.timedelta(hours=1)

    aws.sts.set_latency(0.3)  # the refresh is in flight while we look
    clock.shift(2750)  # inside the last 15 minutes
    assert access_key(credentials) == first  # served at once, no waiting
    wait_for(lambda: access_key(credentials) != first)
    assert aws.sts.assume_role_calls == 2
    assert credentials.expiration == START + datetime.timedelta(seconds=2750 + 3600)


def test_close_to_expiry_callers_wait_for_one_refresh(
    clock: time_machine.Traveller, aws: FakeAWS
) -> None:
    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    clock.shift(3100)  # inside the last 10 minutes: no more serving the old ones
    assert access_key(credentials) != first
    assert aws.sts.assume_role_calls == 2


def test_no_refresh_early_in_the_lifetime(clock: time_machine.Traveller, aws: FakeAWS) -> None:
    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    for _ in range(26):
        clock.shift(100)
        assert access_key(credentials) == first
    assert aws.sts.assume_role_calls == 1


def test_short_sessions_do_not_refresh_on_every_call(
    job: Job, clock: time_machine.Traveller, aws: FakeAWS
) -> None:
    # botocore's fixed 15/10-minute windows would refresh 900 s credentials on every call.
    job.set(GITLAB_BOTOCORE_DURATION_SECONDS="900")
    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    for _ in range(60):
        clock.shift(10)
        assert access_key(credentials) == first
    assert aws.sts.assume_role_calls == 1
    clock.shift(160)  # 760 s of 900: past the mandatory point for this lifetime
    assert access_key(credentials) != first
    assert aws.sts.assume_role_calls == 2


def test_the_token_is_read_again_on_refresh(
    job: Job, clock: time_machine.Traveller, aws: FakeAWS
) -> None:
    credentials = boto3.Session().get_credentials()
    access_key(credentials)
    job.token(lifetime_seconds=6 * 3600, pipeline_id=2002)
    clock.shift(3100)
    access_key(credentials)
    assert [call.claims["pipeline_id"] for call in aws.sts.calls] == ["1001", "2002"]


def test_64_threads_across_three_refresh_boundaries(
    clock: time_machine.Traveller, aws: FakeAWS
) -> None:
    credentials = boto3.Session().get_credentials()
    expiry_of: dict[str, datetime.datetime] = {}
    errors: list[BaseException] = []
    handed_out: list[tuple[float, str]] = []
    lock = threading.Lock()
    # Offsets in seconds: first fetch; quiet; background refresh at 2750; blocking
    # refresh (mandatory window of the second credentials, which expire at 6350);
    # background refresh of the third (expire at 9400, refresh from 8500).
    offsets = [0, 1000, 2750, 5800, 8600]
    barrier = threading.Barrier(65, timeout=30)

    def worker() -> None:
        for _ in offsets:
            barrier.wait()
            try:
                key = access_key(credentials)
                with lock:
                    handed_out.append((time.time(), key))
            except BaseException as error:
                errors.append(error)
            barrier.wait()

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for thread in threads:
        thread.start()
    previous = 0
    expected_calls = [1, 1, 2, 3, 4]
    for offset, calls in zip(offsets, expected_calls):
        clock.shift(offset - previous)
        previous = offset
        barrier.wait()  # all 64 call now
        barrier.wait()  # all 64 done
        wait_for(lambda calls=calls: aws.sts.assume_role_calls == calls)  # type: ignore[misc]
        wait_for(
            lambda: not any(t.name == "gitlab-botocore-refresh" for t in threading.enumerate())
        )
        expiry_of[access_key(credentials)] = credentials.expiration
    for thread in threads:
        thread.join()

    assert errors == []
    assert aws.sts.assume_role_calls == 4
    assert len(expiry_of) == 4
    for moment, key in handed_out:
        assert key in expiry_of
        assert expiry_of[key].timestamp() > moment  # never an expired one


def test_failed_background_refresh_keeps_credentials_and_backs_off(
    clock: time_machine.Traveller, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    aws.sts.inject(Fault.access_denied())
    clock.shift(2750)
    assert access_key(credentials) == first
    wait_for(lambda: aws.sts.assume_role_calls == 2)
    wait_for(lambda: "Refreshing AWS credentials failed" in caplog.text)
    for _ in range(50):  # every call in the back-off period: no new STS call
        assert access_key(credentials) == first
    assert aws.sts.assume_role_calls == 2
    clock.shift(130)  # past the longest back-off
    access_key(credentials)
    wait_for(lambda: access_key(credentials) != first)
    assert aws.sts.assume_role_calls == 3


def test_failed_refresh_at_the_end_raises(clock: time_machine.Traveller, aws: FakeAWS) -> None:
    from gitlab_botocore import STSError

    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    aws.sts.inject(Fault.access_denied(), Fault.access_denied())
    clock.shift(3100)  # mandatory window, but still usable: keep serving
    assert access_key(credentials) == first
    clock.shift(460)  # 40 s before expiry: too close to hand out
    with pytest.raises(STSError, match="AccessDenied"):
        access_key(credentials)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_is_not_blocked_by_the_parents_refresh(
    clock: time_machine.Traveller, aws: FakeAWS
) -> None:
    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    aws.sts.set_latency(3)  # the parent's background refresh holds its lock meanwhile
    clock.shift(2750)
    assert access_key(credentials) == first
    wait_for(refresh_in_flight)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: past the point where it must refresh itself
        try:
            clock.shift(400)
            os.write(write_end, access_key(credentials).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        deadline = time.monotonic() + 20
        while (finished := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the child hung on a lock held by the parent's refresh thread")
            time.sleep(0.05)
        child_key = os.read(read_end, 100).decode()
    finally:
        os.close(read_end)
    assert os.WEXITSTATUS(finished[1]) == 0
    assert child_key.startswith("ASIA")
    assert child_key != first
