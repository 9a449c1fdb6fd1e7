"""The refresh schedule on its own: a stub fetch and a fake clock, no botocore, no servers.

Every window of :func:`~gitlab_botocore.refresh.plan` and every path of
:class:`~gitlab_botocore.refresh.Refresher` (single flight, background and foreground
attempts, back-off, failures shared by waiters), in milliseconds. The same behaviour
through ``boto3.Session()`` over real local servers is in ``test_credentials.py``.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from collections.abc import Iterator
from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitlab_botocore import AccessDeniedError, GitLabOIDCError, STSUnavailableError
from gitlab_botocore.exceptions import REENTRANT_CALL_MESSAGE
from gitlab_botocore.exchange import IssuedCredentials
from gitlab_botocore.refresh import (
    RETRY_BACKOFF,
    THREAD_NAME,
    Generation,
    Plan,
    Refresher,
    plan,
)

from .waiting import in_forked_child, refresh_in_flight, wait_for

START = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)


def access_key(refresher: Refresher) -> str:
    return refresher.current().access_key


LIFETIME = 3600.0  # refresh_at 2700 s in, must_refresh_at 3000 s, usable_until 3540 s


class FakeClock:
    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now

    def shift(self, seconds: float) -> None:
        self.now += seconds


class StubFetch:
    """Stands in for the STS exchange: records each call's ``retry`` flag; answers with
    the next scripted outcome (an exception to raise, else fresh credentials). With
    ``hold()``, calls block until ``release()``."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[bool] = []
        self.outcomes: list[BaseException | None] = []
        self.entered = threading.Semaphore(0)
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def __call__(self, retry: bool) -> IssuedCredentials:
        with self._lock:
            self.calls.append(retry)
            number = len(self.calls)
            outcome = self.outcomes.pop(0) if self.outcomes else None
        self.entered.release()
        if not self._gate.wait(timeout=30):
            raise AssertionError("the stub fetch was never released")
        if outcome is not None:
            raise outcome
        return IssuedCredentials(
            access_key=f"ASIA{number:016d}",
            secret_key="secret",
            token="token",
            expiration=datetime.datetime.fromtimestamp(
                self.clock() + LIFETIME, tz=datetime.timezone.utc
            ),
            assumed_role_arn=f"arn:aws:sts::123456789012:assumed-role/deploy/s{number}",
            session_name=f"s{number}",
        )


def no_threads(target: Callable[[], None]) -> None:
    """A thread starter at interpreter shutdown."""
    raise RuntimeError("can't create new thread at interpreter shutdown")


def outage() -> STSUnavailableError:
    return STSUnavailableError("STS answered 503 ServiceUnavailable")


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stub(fake_clock: FakeClock) -> StubFetch:
    return StubFetch(fake_clock)


@pytest.fixture
def refreshing(fake_clock: FakeClock, stub: StubFetch) -> Iterator[Refresher]:
    yield Refresher(stub, clock=fake_clock)
    stub.release()
    wait_for(lambda: not refresh_in_flight())


Queued = list[Callable[[], None]]


@pytest.fixture
def queued() -> Queued:
    """Background work handed to the thread starter, for the test to run when it says."""
    return []


@pytest.fixture
def deferred(fake_clock: FakeClock, stub: StubFetch, queued: Queued) -> Refresher:
    """A refresher whose background work goes to ``queued`` instead of a thread."""
    return Refresher(stub, clock=fake_clock, start_thread=queued.append)


def generation(now: float = 0.0, lifetime: float = LIFETIME) -> Generation:
    issued = IssuedCredentials(
        access_key="ASIAEXAMPLE",
        secret_key="secret",
        token="token",
        expiration=datetime.datetime.fromtimestamp(now + lifetime, tz=datetime.timezone.utc),
        assumed_role_arn="arn:aws:sts::123456789012:assumed-role/deploy/s",
        session_name="s",
    )
    return Generation.of(issued, now)


@pytest.mark.parametrize(
    ("elapsed", "retry_after", "expected"),
    [
        (0, 0, Plan.SERVE),
        (2699, 0, Plan.SERVE),
        (2700, 0, Plan.ATTEMPT_IN_BACKGROUND),
        (2999, 0, Plan.ATTEMPT_IN_BACKGROUND),
        (2800, 2850, Plan.SERVE),  # backing off after a failure
        (2850, 2850, Plan.ATTEMPT_IN_BACKGROUND),
        (3000, 0, Plan.ATTEMPT_NOW),
        (3539, 0, Plan.ATTEMPT_NOW),
        (3100, 3200, Plan.SERVE),  # backing off, still usable
        (3200, 3200, Plan.ATTEMPT_NOW),
        (3540, 0, Plan.FETCH),  # no longer usable
        (3540, 9999, Plan.FETCH),  # back-off does not apply to a caller with nothing usable
        (3600, 0, Plan.FETCH),
        (9999, 0, Plan.FETCH),
    ],
)
def test_schedule_for_an_hour_of_credentials(
    elapsed: float, retry_after: float, expected: str
) -> None:
    assert plan(generation(), elapsed, retry_after) == expected


def test_schedule_without_credentials_always_fetches() -> None:
    for retry_after in (0.0, 1e12):
        assert plan(None, 0.0, retry_after) == Plan.FETCH


@pytest.mark.parametrize("lifetime", [900.0, 3600.0, 43200.0])
def test_schedule_moments_keep_their_order(lifetime: float) -> None:
    moments = generation(lifetime=lifetime)
    assert 0 < moments.refresh_at < moments.must_refresh_at < moments.usable_until < lifetime
    assert lifetime - moments.refresh_at <= 15 * 60
    assert lifetime - moments.must_refresh_at <= 10 * 60


def test_refresh_retries_back_off_from_5_s_to_2_min() -> None:
    for failures, ceiling in [(1, 5.0), (2, 10.0), (3, 20.0), (6, 120.0), (40, 120.0)]:
        assert RETRY_BACKOFF.seconds(failures, lambda: 0.0) == ceiling
        assert RETRY_BACKOFF.seconds(failures, lambda: 0.999999) == pytest.approx(ceiling / 2, 1e-5)


def test_first_fetch_retries_and_is_single_flight(refreshing: Refresher, stub: StubFetch) -> None:
    stub.hold()
    keys: list[str] = []
    threads = [
        threading.Thread(target=lambda: keys.append(access_key(refreshing))) for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    assert stub.entered.acquire(timeout=10)
    stub.release()
    for thread in threads:
        thread.join()
    assert stub.calls == [True]  # one fetch, with retries: nobody had anything usable
    assert len(set(keys)) == 1
    assert len(keys) == 16


def test_advisory_window_attempts_once_in_the_background(
    refreshing: Refresher, stub: StubFetch, fake_clock: FakeClock
) -> None:
    first = access_key(refreshing)
    fake_clock.shift(2750)
    stub.hold()
    for _ in range(20):  # served at once while the attempt is in flight
        assert access_key(refreshing) == first
    assert stub.entered.acquire(timeout=10)
    stub.release()
    wait_for(lambda: access_key(refreshing) != first)
    assert stub.calls == [True, False]


def test_mandatory_window_caller_gets_new_credentials_from_one_attempt(
    refreshing: Refresher, stub: StubFetch, fake_clock: FakeClock
) -> None:
    first = access_key(refreshing)
    fake_clock.shift(3100)
    assert access_key(refreshing) != first
    assert stub.calls == [True, False]


def test_mandatory_window_callers_never_wait_behind_an_attempt(
    refreshing: Refresher, stub: StubFetch, fake_clock: FakeClock
) -> None:
    first = access_key(refreshing)
    fake_clock.shift(3100)  # nine minutes left, as in the outage that stalled 64 threads
    stub.hold()  # STS hangs
    attempting = threading.Thread(target=lambda: access_key(refreshing))
    attempting.start()
    assert stub.entered.acquire(timeout=10)
    served: list[str] = []

    def caller() -> None:
        served.append(access_key(refreshing))

    callers = [threading.Thread(target=caller) for _ in range(63)]
    for thread in callers:
        thread.start()
    # All 63 finish while the attempt still hangs: they do not wait for it.
    wait_for(lambda: len(served) == 63)
    assert set(served) == {first}
    stub.release()
    attempting.join()
    for thread in callers:
        thread.join()
    assert stub.calls == [True, False]


def test_failed_attempts_back_off_and_keep_the_current_credentials(
    refreshing: Refresher,
    stub: StubFetch,
    fake_clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = access_key(refreshing)
    fake_clock.shift(3100)
    stub.outcomes = [outage(), outage()]
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore.refresh"):
        for _ in range(50):
            assert access_key(refreshing) == first
    assert stub.calls == [True, False]  # one attempt, then a back-off of 2.5 to 5 s
    assert "using the current ones" in caplog.text
    fake_clock.shift(5)
    assert access_key(refreshing) == first  # second attempt fails too: 5 to 10 s
    assert stub.calls == [True, False, False]
    fake_clock.shift(4.9)
    assert access_key(refreshing) == first
    assert len(stub.calls) == 3
    fake_clock.shift(5.2)
    assert access_key(refreshing) != first
    assert stub.calls == [True, False, False, False]


def test_past_the_last_usable_moment_callers_wait_for_a_retrying_fetch(
    refreshing: Refresher,
    stub: StubFetch,
    fake_clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = access_key(refreshing)
    fake_clock.shift(3100)
    stub.outcomes = [outage()]
    assert access_key(refreshing) == first
    fake_clock.shift(445)  # 55 s before expiry: no longer usable; back-off does not apply
    caplog.clear()
    stub.outcomes = [outage()]
    unavailable = pytest.raises(STSUnavailableError)
    with caplog.at_level(logging.DEBUG, logger="gitlab_botocore"), unavailable:
        access_key(refreshing)
    assert stub.calls == [True, False, True]
    assert "using the current ones" not in caplog.text
    assert access_key(refreshing) != first
    assert stub.calls == [True, False, True, True]


def test_waiting_callers_share_one_failed_fetch(refreshing: Refresher, stub: StubFetch) -> None:
    stub.outcomes = [outage()]
    stub.hold()
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            access_key(refreshing)
        except STSUnavailableError as error:
            errors.append(error)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert stub.entered.acquire(timeout=10)
    stub.release()
    for thread in threads:
        thread.join()
    # The seven that waited do not repeat a whole retry budget each.
    assert stub.calls == [True]
    assert len(errors) == 8


def test_a_single_attempt_in_flight_does_not_end_the_wait_of_unusable_callers(
    refreshing: Refresher, stub: StubFetch, fake_clock: FakeClock
) -> None:
    first = access_key(refreshing)
    fake_clock.shift(2750)
    stub.outcomes = [outage()]
    stub.hold()
    assert access_key(refreshing) == first  # starts a background attempt, which hangs
    assert stub.entered.acquire(timeout=10)
    fake_clock.shift(800)  # meanwhile the credentials stop being usable
    keys: list[str] = []
    waiting = threading.Thread(target=lambda: keys.append(access_key(refreshing)))
    waiting.start()
    stub.release()  # the single attempt fails; the waiting caller fetches, with retries
    waiting.join()
    assert keys
    assert keys[0] != first
    assert stub.calls == [True, False, True]


# -- more of the schedule ---------------------------------------------------------------

ORDER = [Plan.SERVE, Plan.ATTEMPT_IN_BACKGROUND, Plan.ATTEMPT_NOW, Plan.FETCH]


@given(
    lifetime=st.floats(min_value=1.0, max_value=43200.0),
    earlier=st.floats(min_value=0.0, max_value=50000.0),
    later=st.floats(min_value=0.0, max_value=50000.0),
)
def test_the_plan_only_ever_escalates_as_time_passes(
    lifetime: float, earlier: float, later: float
) -> None:
    earlier, later = sorted((earlier, later))
    current = generation(lifetime=lifetime)
    assert ORDER.index(plan(current, earlier, 0.0)) <= ORDER.index(plan(current, later, 0.0))


@given(
    lifetime=st.floats(min_value=1.0, max_value=43200.0),
    now=st.floats(min_value=0.0, max_value=50000.0),
    retry_after=st.floats(min_value=0.0, max_value=50000.0),
)
def test_backing_off_only_ever_defers_an_attempt(
    lifetime: float, now: float, retry_after: float
) -> None:
    current = generation(lifetime=lifetime)
    backing_off = plan(current, now, retry_after)
    free = plan(current, now, 0.0)
    assert backing_off is free or (backing_off is Plan.SERVE and now < retry_after)
    assert (backing_off is Plan.FETCH) == (free is Plan.FETCH)  # never for the unusable


def test_peek_and_refresh_needed_never_fetch(refreshing: Refresher, stub: StubFetch) -> None:
    assert refreshing.peek() is None
    assert refreshing.refresh_needed()
    assert stub.calls == []
    issued = refreshing.current()
    assert refreshing.peek() is issued
    assert stub.calls == [True]


def test_refresh_needed_follows_the_advisory_moment_or_a_given_lead(
    refreshing: Refresher, fake_clock: FakeClock
) -> None:
    refreshing.current()
    assert not refreshing.refresh_needed()
    assert refreshing.refresh_needed(refresh_in=3600)
    fake_clock.shift(2699)
    assert not refreshing.refresh_needed()
    fake_clock.shift(1)
    assert refreshing.refresh_needed()
    assert not refreshing.refresh_needed(refresh_in=600)


def test_current_gives_keys_and_expiry_of_one_fetch(
    refreshing: Refresher, fake_clock: FakeClock
) -> None:
    first = refreshing.current()
    fake_clock.shift(3100)
    second = refreshing.current()
    assert second.access_key != first.access_key
    assert second.expiration.timestamp() == fake_clock() + LIFETIME


def test_the_background_attempt_is_handed_to_the_thread_starter(
    fake_clock: FakeClock, stub: StubFetch, deferred: Refresher, queued: Queued
) -> None:
    first = access_key(deferred)
    fake_clock.shift(2750)
    for _ in range(10):
        assert access_key(deferred) == first
    assert len(queued) == 1  # one attempt, however many callers noticed
    assert stub.calls == [True]
    queued[0]()
    assert stub.calls == [True, False]
    assert access_key(deferred) != first
    assert len(queued) == 1


def test_without_threads_callers_keep_the_current_credentials_and_try_again(
    fake_clock: FakeClock, stub: StubFetch
) -> None:
    refresher = Refresher(stub, clock=fake_clock, start_thread=no_threads)
    first = access_key(refresher)
    fake_clock.shift(2750)
    assert access_key(refresher) == first
    fake_clock.shift(300)  # the mandatory window: the lock was released, so it attempts
    assert access_key(refresher) != first
    assert stub.calls == [True, False]


def test_a_success_resets_the_back_off(
    refreshing: Refresher, fake_clock: FakeClock, stub: StubFetch
) -> None:
    refreshing.current()
    fake_clock.shift(3000)
    stub.outcomes = [outage(), outage(), outage()]
    for _ in range(3):
        refreshing.current()
        fake_clock.shift(40)  # past any back-off of up to three failures
    refreshing.current()
    assert stub.calls == [True, False, False, False, False]  # the fourth succeeded
    fake_clock.shift(3000)
    stub.outcomes = [outage()]
    refreshing.current()
    fake_clock.shift(5)  # a first failure again: at most 5 s, not 40
    refreshing.current()
    assert stub.calls[-2:] == [False, False]
    assert len(stub.calls) == 7


# -- the first fetch, started before anyone asks (Refresher.prefetch) -------------------------


def test_a_prefetch_is_the_first_fetch(
    stub: StubFetch, deferred: Refresher, queued: Queued
) -> None:
    assert deferred.prefetch()
    assert not deferred.prefetch()  # one fetch under way is enough
    assert len(queued) == 1
    assert stub.calls == []  # nothing happens until the thread runs
    queued[0]()
    assert stub.calls == [True]  # the retrying fetch a first caller would have made
    assert access_key(deferred) == "ASIA0000000000000001"
    assert stub.calls == [True]


def test_callers_wait_for_a_prefetch_in_flight(refreshing: Refresher, stub: StubFetch) -> None:
    stub.hold()
    refreshing.prefetch()
    assert stub.entered.acquire(timeout=10)  # the prefetch is calling STS
    keys: list[str] = []
    callers = [
        threading.Thread(target=lambda: keys.append(access_key(refreshing))) for _ in range(8)
    ]
    for caller in callers:
        caller.start()
    stub.release()
    for caller in callers:
        caller.join(timeout=10)
    assert keys == ["ASIA0000000000000001"] * 8
    assert stub.calls == [True]


@pytest.mark.parametrize(
    "failure",
    [AccessDeniedError("Not authorized to perform sts:AssumeRoleWithWebIdentity"), outage()],
    ids=["refused", "outage"],
)
def test_a_failed_prefetch_is_raised_to_its_first_caller_then_fetched_again(
    fake_clock: FakeClock, stub: StubFetch, deferred: Refresher, queued: Queued, failure: Exception
) -> None:
    stub.outcomes = [failure]
    assert deferred.prefetch()
    queued[0]()
    fake_clock.shift(1)  # the job uses its credentials soon after
    with pytest.raises(type(failure)) as caught:
        deferred.current()
    assert caught.value is failure  # the early fetch's own answer, not a second call's
    assert stub.calls == [True]
    assert access_key(deferred) == "ASIA0000000000000002"  # a later use fetches afresh
    assert stub.calls == [True, True]


def test_long_after_a_failed_prefetch_the_first_caller_fetches_afresh(
    fake_clock: FakeClock, stub: StubFetch, deferred: Refresher, queued: Queued
) -> None:
    # STS may be back (or the trust policy fixed) by the time the job first uses its
    # credentials: past the back-off, that failure is not served.
    stub.outcomes = [outage()]
    deferred.prefetch()
    queued[0]()
    fake_clock.shift(RETRY_BACKOFF.first)
    assert access_key(deferred) == "ASIA0000000000000002"
    assert stub.calls == [True, True]


def test_only_the_early_fetch_failure_is_served_to_a_caller_who_did_not_wait(
    fake_clock: FakeClock, stub: StubFetch, deferred: Refresher, queued: Queued
) -> None:
    stub.outcomes = [outage(), outage()]
    deferred.prefetch()
    queued[0]()
    fake_clock.shift(RETRY_BACKOFF.first)
    with pytest.raises(STSUnavailableError):
        deferred.current()  # its own fetch, the second call, failed
    assert stub.calls == [True, True]
    assert access_key(deferred) == "ASIA0000000000000003"  # an ordinary failure: asks again
    assert stub.calls == [True, True, True]


def test_callers_waiting_on_a_failing_prefetch_all_get_its_error(
    refreshing: Refresher, stub: StubFetch
) -> None:
    failure = outage()
    stub.outcomes = [failure]
    stub.hold()
    refreshing.prefetch()
    assert stub.entered.acquire(timeout=10)  # the prefetch is calling STS
    errors: list[BaseException] = []

    def use() -> None:
        try:
            refreshing.current()
        except STSUnavailableError as error:
            errors.append(error)

    callers = [threading.Thread(target=use) for _ in range(4)]
    for caller in callers:
        caller.start()
    stub.release()
    for caller in callers:
        caller.join(timeout=10)
    assert len(errors) == 4
    assert all(error is failure for error in errors)
    assert stub.calls == [True]  # none of them called STS again


def test_without_threads_the_first_caller_fetches_itself(
    fake_clock: FakeClock, stub: StubFetch
) -> None:
    refresher = Refresher(stub, clock=fake_clock, start_thread=no_threads)
    assert not refresher.prefetch()
    assert not refresher.fetching
    assert access_key(refresher) == "ASIA0000000000000001"
    assert stub.calls == [True]


def test_a_prefetch_with_credentials_held_does_nothing(
    stub: StubFetch, deferred: Refresher, queued: Queued
) -> None:
    first = access_key(deferred)
    assert not deferred.prefetch()
    assert queued == []
    assert access_key(deferred) == first
    assert stub.calls == [True]


# -- what a fetch logs is handled in the fetching thread ------------------------------------


def test_asking_from_inside_the_fetch_raises_instead_of_waiting_for_itself(
    fake_clock: FakeClock, stub: StubFetch
) -> None:
    """A log handler that calls AWS, handling a record of the fetch, asks for the
    credentials from within it: it gets an error at once, and the fetch goes on."""
    inner: list[BaseException] = []

    def fetch_that_logs(retry: bool) -> IssuedCredentials:
        try:
            refresher.current()  # what the handler's AWS call does
        except GitLabOIDCError as error:
            inner.append(error)
        return stub(retry)

    refresher = Refresher(fetch_that_logs, clock=fake_clock)
    assert access_key(refresher) == "ASIA0000000000000001"
    assert [str(error) for error in inner] == [REENTRANT_CALL_MESSAGE]
    assert stub.calls == [True]


def test_new_credentials_are_announced_once_served(
    fake_clock: FakeClock, stub: StubFetch, deferred: Refresher, queued: Queued
) -> None:
    """The announcement (a log line) comes after the fetch has let go: whatever handles
    it, in any thread, gets the new credentials without a wait or another call."""
    seen: list[tuple[str, bool, str]] = []

    def announce(issued: IssuedCredentials) -> None:
        seen.append((issued.access_key, refresher.fetching, access_key(refresher)))

    refresher = Refresher(stub, clock=fake_clock, announce=announce)
    first = access_key(refresher)
    assert seen == [(first, False, first)]
    fake_clock.shift(LIFETIME - 30)  # unusable: the next caller waits for a fetch
    second = access_key(refresher)
    assert seen[1:] == [(second, False, second)]
    assert stub.calls == [True, True]


def test_a_failed_fetch_announces_nothing(fake_clock: FakeClock, stub: StubFetch) -> None:
    announced: list[IssuedCredentials] = []
    refresher = Refresher(stub, clock=fake_clock, announce=announced.append)
    stub.outcomes = [AccessDeniedError("refused")]
    with pytest.raises(AccessDeniedError):
        refresher.current()
    assert announced == []


def test_a_caller_waiting_longer_than_any_fetch_takes_raises(
    fake_clock: FakeClock, stub: StubFetch
) -> None:
    """The thread fetching is stuck (say, on a log handler's lock held by the waiting
    thread): the waiter gives up after the limit, with an explanation, and the fetch still
    serves the callers that come after it ends."""
    refresher = Refresher(stub, clock=fake_clock, wait_limit=0.2)
    stub.hold()
    assert refresher.prefetch()
    assert stub.entered.acquire(timeout=10)
    with pytest.raises(GitLabOIDCError) as stuck:
        refresher.current()
    assert str(stuck.value).startswith("Waited 0.2 s for another thread to fetch these")
    assert "QueueHandler" in str(stuck.value)
    stub.release()
    wait_for(lambda: not refresher.fetching)
    assert access_key(refresher) == "ASIA0000000000000001"
    assert stub.calls == [True]


def test_a_handler_calling_aws_on_a_failed_first_fetchs_record_is_told_at_once(
    fake_clock: FakeClock, stub: StubFetch
) -> None:
    """The early fetch failed and says so at DEBUG, still holding the fetch: a handler
    asking for the credentials on that record is told at once, and the job gets the
    fetch's own error, not a stuck wait."""
    refresher = Refresher(stub, clock=fake_clock, wait_limit=10)
    stub.outcomes = [AccessDeniedError("refused")]
    told: list[str] = []

    class AsksForCredentials(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if threading.current_thread().name != THREAD_NAME:
                return
            try:
                refresher.current()
            except GitLabOIDCError as error:
                told.append(str(error))

    handler = AsksForCredentials(logging.DEBUG)
    refresh_logger = logging.getLogger("gitlab_botocore.refresh")
    level = refresh_logger.level
    refresh_logger.addHandler(handler)
    refresh_logger.setLevel(logging.DEBUG)
    try:
        assert refresher.prefetch()
        with pytest.raises(AccessDeniedError):
            refresher.current()
    finally:
        refresh_logger.removeHandler(handler)
        refresh_logger.setLevel(level)
    assert told == [REENTRANT_CALL_MESSAGE]
    assert stub.calls == [True]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_with_no_fetch_under_way(
    fake_clock: FakeClock, stub: StubFetch
) -> None:
    """Forked while the early fetch runs: the child has neither the lock nor the record of
    which thread was fetching (a thread of the child may get that thread's ident)."""
    refresher = Refresher(stub, clock=fake_clock)
    stub.hold()
    assert refresher.prefetch()
    assert stub.entered.acquire(timeout=10)

    def in_child() -> str:
        stub.release()
        state = f"fetching={refresher.fetching} thread={refresher._fetching_thread}"
        keys: list[str] = []
        worker = threading.Thread(target=lambda: keys.append(access_key(refresher)))
        worker.start()
        worker.join(10)
        return f"{state} keys={keys}"

    try:
        got = in_forked_child(in_child, hung="the child waited for its parent's fetch")
    finally:
        stub.release()
    assert got == "fetching=False thread=None keys=['ASIA0000000000000002']"
