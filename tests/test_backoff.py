"""The one back-off helper, and the three policies built on it."""

from __future__ import annotations

import copy
import pickle

import pytest

from gitlab_botocore import cache, exchange, refresh
from gitlab_botocore.backoff import Backoff


def test_waits_double_up_to_the_ceiling() -> None:
    policy = Backoff(first=1.0, ceiling=10.0, jitter=0.0)
    assert [policy.seconds(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize("attempt", [1, 3, 12])
def test_jitter_draws_down_by_at_most_its_share(attempt: int) -> None:
    policy = Backoff(first=0.2, ceiling=5.0, jitter=0.5)
    top = min(5.0, 0.2 * 2 ** (attempt - 1))
    assert policy.seconds(attempt, lambda: 0.0) == top
    assert policy.seconds(attempt, lambda: 0.5) == top * 0.75
    for _ in range(50):  # the default random source stays in range too
        assert top / 2 < policy.seconds(attempt) <= top


def test_a_very_long_run_of_failures_does_not_overflow() -> None:
    assert Backoff(first=5.0, ceiling=120.0, jitter=0.0).seconds(10_000) == 120.0


@pytest.mark.parametrize(
    ("first", "ceiling", "jitter"), [(0.0, 1.0, 0.5), (2.0, 1.0, 0.5), (1.0, 2.0, 1.5)]
)
def test_nonsense_policies_are_refused(first: float, ceiling: float, jitter: float) -> None:
    with pytest.raises(ValueError, match=r"first|jitter"):
        Backoff(first=first, ceiling=ceiling, jitter=jitter)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff(first=1.0, ceiling=2.0).seconds(0)


@pytest.mark.parametrize(
    ("policy", "first_wait", "longest_wait", "randomised"),
    [
        (exchange.RETRY_BACKOFF, 0.2, 5.0, True),  # between STS retries within the budget
        (refresh.RETRY_BACKOFF, 5.0, 120.0, True),  # between failed refresh attempts
        (cache.LOCK_POLL_BACKOFF, 0.005, 0.05, False),  # polling another process's lock
    ],
)
def test_the_library_policies(
    policy: Backoff, first_wait: float, longest_wait: float, randomised: bool
) -> None:
    assert policy.seconds(1, lambda: 0.0) == first_wait
    assert policy.seconds(100, lambda: 0.0) == longest_wait
    assert (policy.seconds(1, lambda: 0.9) < first_wait) is randomised


def test_a_policy_is_a_read_only_value() -> None:
    policy = Backoff(first=0.2, ceiling=5.0)
    assert policy == Backoff(first=0.2, ceiling=5.0, jitter=0.5)
    assert policy != Backoff(first=0.2, ceiling=6.0)
    assert hash(policy) == hash(Backoff(first=0.2, ceiling=5.0))
    assert copy.deepcopy(policy) == policy
    assert pickle.loads(pickle.dumps(policy)) == policy  # noqa: S301 (our own bytes)
    with pytest.raises(AttributeError, match="read-only"):
        policy.first = 1.0
