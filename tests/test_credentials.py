"""Refreshing through botocore: ahead of expiry, once per refresh, without stalling callers.

The schedule itself is unit-tested in ``test_refresh.py``; here are the botocore adapter
(fast, on a stub fetch) and the behaviour end to end.

The whole process (our credentials, moto, the verifying STS, the issuer) travels in
time together with time-machine, so expiries are real and nobody waits for real.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
import time_machine

from gitlab_botocore import GitLabOIDCError
from gitlab_botocore.credentials import CredentialsRegistry, GitLabOIDCCredentials
from gitlab_botocore.exceptions import REENTRANT_CALL_MESSAGE
from gitlab_botocore.exchange import IssuedCredentials
from gitlab_botocore.refresh import Refresher
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.faults import Fault

from .conftest import Job
from .waiting import in_forked_child, refresh_in_flight, wait_for

START = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def clock(job: Job) -> Iterator[time_machine.Traveller]:
    """Frozen time; the job's token lives long enough for every test here."""
    with time_machine.travel(START, tick=False) as traveller:
        job.token(lifetime_seconds=6 * 3600)
        yield traveller


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


def test_failed_refresh_at_the_end_raises(
    clock: time_machine.Traveller, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    from gitlab_botocore import STSError

    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    aws.sts.inject(Fault.access_denied(), Fault.access_denied())
    clock.shift(3100)  # mandatory window, but still usable: keep serving
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        assert access_key(credentials) == first
    assert "using the current ones" in caplog.text
    caplog.clear()
    clock.shift(460)  # 40 s before expiry: too close to hand out
    denied = pytest.raises(STSError, match="AccessDenied")
    with caplog.at_level(logging.DEBUG, logger="gitlab_botocore"), denied:
        access_key(credentials)
    assert "using the current ones" not in caplog.text  # they are not used any more


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Forking while a refresh thread runs is the very case under test (Python 3.12+ warns of it).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_is_not_blocked_by_the_parents_refresh(
    clock: time_machine.Traveller, aws: FakeAWS
) -> None:
    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    aws.sts.set_latency(3)  # the parent's background refresh holds its lock meanwhile
    clock.shift(2750)
    assert access_key(credentials) == first
    wait_for(refresh_in_flight)

    def in_the_child() -> str:  # past the point where it must refresh itself
        clock.shift(400)
        return access_key(credentials)

    child_key = in_forked_child(
        in_the_child, hung="the child hung on a lock held by the parent's refresh thread"
    )
    assert child_key.startswith("ASIA")
    assert child_key != first


# -- the refresh schedule, with a fake clock and a stub fetch ------------------------------
# Fast and exhaustive: no network, no time travel. The end-to-end tests above and below
# check the same rules through boto3 against the local STS.

# -- the botocore adapter, on a stub fetch ------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


def issued_at(now: float, number: int) -> IssuedCredentials:
    return IssuedCredentials(
        access_key=f"ASIA{number:016d}",
        secret_key=f"secret-{number}",
        token=f"token-{number}",
        expiration=datetime.datetime.fromtimestamp(now + 3600, tz=datetime.timezone.utc),
        assumed_role_arn=f"arn:aws:sts::123456789012:assumed-role/deploy/s{number}",
        session_name=f"s{number}",
    )


@pytest.fixture
def adapter_clock() -> Clock:
    return Clock()


@pytest.fixture
def adapted(adapter_clock: Clock) -> GitLabOIDCCredentials:
    calls: list[bool] = []

    def fetch(retry: bool) -> IssuedCredentials:
        calls.append(retry)
        return issued_at(adapter_clock(), len(calls))

    refresher = Refresher(fetch, clock=adapter_clock, start_thread=lambda target: target())
    return GitLabOIDCCredentials(refresher, method="gitlab-oidc", description="role=r")


def test_every_botocore_read_serves_the_same_generation(
    adapted: GitLabOIDCCredentials, adapter_clock: Clock
) -> None:
    for elapsed in (0.0, 3100.0):  # the first fetch, then a refresh in the mandatory window
        adapter_clock.now += elapsed
        frozen = adapted.get_frozen_credentials()
        issued = adapted.get_issued_credentials()
        number = int(issued.access_key[4:])
        assert (frozen.access_key, frozen.secret_key, frozen.token) == (
            issued.access_key,
            f"secret-{number}",
            f"token-{number}",
        )
        assert (adapted.access_key, adapted.secret_key, adapted.token) == tuple(frozen[:3])
        assert adapted.account_id == "123456789012"
        assert adapted.expiration == issued.expiration
    assert number == 2


def test_no_botocore_private_field_is_written(adapted: GitLabOIDCCredentials) -> None:
    # botocore's constructor sets these to "nothing yet"; the adapter serves every read
    # itself, so they never change (and never hold a secret a debugger could show).
    adapted.get_frozen_credentials()
    assert adapted._access_key is None
    assert adapted._secret_key is None
    assert adapted._token is None
    assert adapted._expiry_time is None
    assert adapted._frozen_credentials is None


def test_refresh_needed_and_expiration_do_not_fetch(adapted: GitLabOIDCCredentials) -> None:
    assert adapted.refresh_needed()
    assert adapted.expiration is None
    assert "not fetched" in repr(adapted)
    adapted.get_frozen_credentials()
    assert not adapted.refresh_needed()
    assert "secret" not in repr(adapted)
    assert "token-" not in repr(adapted)


# -- an STS outage, end to end -------------------------------------------------------------


def test_an_sts_outage_does_not_stall_callers_with_usable_credentials(
    job: Job, clock: time_machine.Traveller, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    # The reported outage: 64 threads, credentials valid 9 more minutes, STS answering
    # 503. Before, one thread held the refresh lock for the whole retry budget and every
    # other thread waited behind it.
    job.set(GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="20")
    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    clock.shift(3060)  # 9 minutes left: inside the last 10
    slow_503 = Fault("ServiceUnavailable", "Service is unavailable.", 503, delay=0.3)
    aws.sts.inject(*[slow_503] * 80)
    barrier = threading.Barrier(64, timeout=30)
    waits: list[float] = []
    keys: list[str] = []
    lock = threading.Lock()

    def caller() -> None:
        barrier.wait()
        started = time.monotonic()
        key = access_key(credentials)
        with lock:
            waits.append(time.monotonic() - started)
            keys.append(key)

    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        threads = [threading.Thread(target=caller) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert set(keys) == {first}
    # One attempt takes ~0.3 s; the retry budget is 20 s. Margins for a loaded machine.
    assert max(waits) < 5.0
    assert aws.sts.assume_role_calls == 2  # the first fetch, then one attempt: time is frozen
    assert "using the current ones" in caplog.text

    # Retries go on with later calls, after the back-off.
    aws.sts.reset()
    clock.shift(10)
    assert access_key(credentials) != first
    assert aws.sts.assume_role_calls == 1


def test_a_caller_with_nothing_usable_waits_for_retries(
    job: Job, clock: time_machine.Traveller, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    clock.shift(3550)  # 50 s before expiry: too close to hand out
    aws.sts.inject(Fault.service_unavailable(), Fault.service_unavailable())
    with caplog.at_level(logging.INFO, logger="gitlab_botocore"):
        assert access_key(credentials) != first
    assert [call.outcome for call in aws.sts.calls] == [
        "ok",
        "ServiceUnavailable",
        "ServiceUnavailable",
        "ok",
    ]
    assert "using the current ones" not in caplog.text


def test_with_the_cache_a_usable_caller_does_not_wait_for_another_process(
    job: Job, clock: time_machine.Traveller, aws: FakeAWS, tmp_path: Path
) -> None:
    # Another process of the job holds the cache's lock, as it would through a retry
    # loop during an outage; this process still has credentials for 9 minutes.
    job.set(GITLAB_BOTOCORE_CACHE=str(tmp_path / "cache"))
    credentials = boto3.Session().get_credentials()
    first = access_key(credentials)
    (lock_file,) = (tmp_path / "cache").glob("*.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        clock.shift(3060)
        keys: list[str] = []
        caller = threading.Thread(target=lambda: keys.append(access_key(credentials)))
        caller.start()
        caller.join(timeout=15)  # the cache would make it wait 30 s for the lock
        assert keys
        assert keys[0] != first  # its own attempt succeeded
    finally:
        holder.kill()
        holder.wait()
    assert aws.sts.assume_role_calls == 2


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_is_not_blocked_by_a_registry_another_thread_was_filling() -> None:
    """A thread of the parent was creating credentials (registry lock held) at the fork:
    the child has no such thread and must not wait for it."""
    registry = CredentialsRegistry()
    entered, release = threading.Event(), threading.Event()

    def slow_create() -> Any:
        entered.set()
        release.wait(10)
        return "parent's"

    filler = threading.Thread(target=lambda: registry.get_or_create("parent", slow_create))
    filler.start()
    assert entered.wait(10)
    made: Any = "child's"  # any object stands in for credentials here
    try:
        got = in_forked_child(
            lambda: registry.get_or_create("child", lambda: made),
            hung="the child hung on the registry lock held by a parent's thread",
            timeout=10,
        )
        assert got == made
    finally:
        release.set()
        filler.join()


def test_asking_the_registry_from_inside_a_creation_raises_unless_it_exists() -> None:
    """Making credentials logs (botocore says where it found the STS endpoint); a log
    handler calling AWS on that record asks the registry from within the creation, in the
    same thread. It is told so at once instead of waiting for itself; credentials that
    already exist are still served."""
    registry = CredentialsRegistry()
    existing, made, never = (stand_in() for _ in range(3))
    registry.get_or_create("other", lambda: existing)
    inner: list[Any] = []

    def create_that_logs() -> Any:
        inner.append(registry.get_or_create("other", lambda: never))
        with pytest.raises(GitLabOIDCError) as nested:
            registry.get_or_create("role", lambda: never)
        inner.append(str(nested.value))
        return made

    assert registry.get_or_create("role", create_that_logs) is made
    assert inner == [existing, REENTRANT_CALL_MESSAGE]
    assert registry.get_or_create("role", lambda: never) is made


def stand_in() -> Any:
    """Any object stands in for credentials in the registry."""
    return object()


def _module_lock(path: str) -> Callable[[], Any]:
    """A getter for a lock a refresh thread takes: ``module:attribute[.attribute]``."""
    import importlib

    module_name, attributes = path.split(":")

    def get() -> Any:
        found: Any = importlib.import_module(module_name)
        for name in attributes.split("."):
            found = getattr(found, name)
        return found

    return get


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize(
    "lock_path",
    [
        "gitlab_botocore.redaction:_filter._lock",
        "gitlab_botocore.sts_client:_warned_plain_http._lock",
        "gitlab_botocore.token_source:_warned._lock",
        "gitlab_botocore.cache:_warned._lock",
        "gitlab_botocore.provider:_warned._lock",
    ],
)
def test_a_forked_child_gets_the_module_locks_a_fetch_takes_free(lock_path: str) -> None:
    """A fetch thread of the parent held one of these locks (for microseconds) at the fork:
    the child, which has no such thread, must not wait for it on its own first fetch."""
    lock = _module_lock(lock_path)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    try:
        got = in_forked_child(
            lambda: "free" if lock().acquire(timeout=5) else "held",
            hung=f"the child hung on {lock_path}",
            timeout=10,
        )
        assert got == "free"
    finally:
        release.set()
        holder.join()


def test_a_thread_waiting_longer_than_any_creation_takes_raises() -> None:
    registry = CredentialsRegistry(wait_seconds=0.2)
    entered, release = threading.Event(), threading.Event()
    made = stand_in()

    def stuck_create() -> Any:
        entered.set()
        release.wait(10)
        return made

    creator = threading.Thread(target=lambda: registry.get_or_create("role", stuck_create))
    creator.start()
    assert entered.wait(10)
    try:
        with pytest.raises(GitLabOIDCError, match="for another thread to make AWS credentials"):
            registry.get_or_create("role", stand_in)
    finally:
        release.set()
        creator.join()
    assert registry.get_or_create("role", stand_in) is made
