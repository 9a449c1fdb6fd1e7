"""The refresh schedule: when to renew credentials, and who waits for it.

Free of botocore sessions and clients: a :class:`Refresher` holds the current
:class:`IssuedCredentials`, a fetch function and a clock (both injected, so tests drive it
with a stub and a fake clock). Credentials are renewed ahead of expiry in stages scaled to
their lifetime, so that short (900 s) sessions do not refresh on every call (see
:func:`plan`):

* from ``refresh_at`` (a quarter of the lifetime before expiry, at most 15 min), the
  first caller to notice starts one STS attempt in a background thread and every caller
  keeps the current credentials, so nobody waits on STS;
* from ``must_refresh_at`` (a sixth of the lifetime, at most 10 min) the first caller to
  notice makes one attempt itself and gets the new credentials when it succeeds; callers
  arriving meanwhile keep the current ones;
* from ``usable_until`` (a minute before expiry, less for short lifetimes), or with no
  credentials yet, callers wait for a fetch that retries transient failures within the
  retry budget, single-flight: one STS call, other threads block on it.

:meth:`Refresher.prefetch` starts that first fetch in a background thread before anyone
asks, so that the STS round trip overlaps with the job's start-up; callers arriving while it
runs wait for it instead of making their own.

So while the current credentials are usable no caller waits longer than one STS attempt,
however long STS is down. A failed attempt is logged and the next one waits for a
back-off (:data:`RETRY_BACKOFF`) instead of hammering STS on every call. A thread per
background attempt (rather than a permanent worker) keeps idle processes free of threads
and needs no shutdown.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Callable, Final

from .backoff import Backoff
from .exceptions import REENTRANT_CALL_MESSAGE, STUCK_WAIT_MESSAGE, GitLabOIDCError
from .exchange import IssuedCredentials

logger = logging.getLogger(__name__)

ADVISORY_REFRESH_SECONDS = 15 * 60
MANDATORY_REFRESH_SECONDS = 10 * 60
# Credentials this close to expiry are not handed out even when a refresh failed.
MIN_USABLE_SECONDS = 60
RETRY_BACKOFF = Backoff(first=5.0, ceiling=120.0)
"""Between failed refresh attempts: 2.5-5 s after the first, up to 1-2 min."""
THREAD_NAME = "gitlab-botocore-refresh"

if TYPE_CHECKING:  # type aliases cost a fresh process time at import; annotations are strings
    Fetch = Callable[[bool], IssuedCredentials]
    """Gets fresh credentials. Called with ``True`` when the caller has nothing usable and
    waits: retry transient failures within the retry budget. With ``False``: one STS attempt,
    raising its failure (the schedule decides when to try again)."""

    StartThread = Callable[[Callable[[], None]], None]
    """Runs a function in the background; raises ``RuntimeError`` when it cannot."""

    Announce = Callable[[IssuedCredentials], None]
    """Told of each new set of credentials, once callers can have them."""


class Generation:
    """One set of issued credentials and the moments that matter for it (epoch seconds).

    Never changed once made (a refresh makes a new one). A plain class with slots rather
    than a frozen dataclass, which compiles its generated methods when the module loads: a
    job's fresh process would pay for that (~0.5 ms).
    """

    __slots__ = ("issued", "must_refresh_at", "refresh_at", "usable_until")

    def __init__(
        self,
        *,
        issued: IssuedCredentials,
        refresh_at: float,
        must_refresh_at: float,
        usable_until: float,
    ) -> None:
        self.issued = issued
        self.refresh_at = refresh_at
        self.must_refresh_at = must_refresh_at
        self.usable_until = usable_until

    def __repr__(self) -> str:
        return f"<Generation expires={self.issued.expiration.isoformat()}>"

    @classmethod
    def of(cls, issued: IssuedCredentials, now: float) -> Generation:
        expires = issued.expiration.timestamp()
        lifetime = max(expires - now, 0.0)
        return cls(
            issued=issued,
            refresh_at=expires - min(ADVISORY_REFRESH_SECONDS, lifetime / 4),
            must_refresh_at=expires - min(MANDATORY_REFRESH_SECONDS, lifetime / 6),
            usable_until=expires - min(MIN_USABLE_SECONDS, lifetime / 10),
        )


class Plan:
    """What a caller does about a refresh, decided by :func:`plan`.

    Plain strings rather than an ``enum.Enum``, whose class a job's fresh process would
    build at import (~0.1 ms).
    """

    SERVE: Final = "serve the current credentials"
    ATTEMPT_IN_BACKGROUND: Final = "start one STS attempt in the background; serve the current ones"
    ATTEMPT_NOW: Final = "make one STS attempt, then serve the new credentials or the current ones"
    FETCH: Final = "nothing usable: wait for a fetch that retries within the budget"


def plan(current: Generation | None, now: float, retry_after: float) -> str:
    """What a caller does at ``now``, free of threads and clocks.

    ``retry_after`` is when the next attempt is due after a failure (0 after success).
    Whether an attempt is already in flight is for the caller to find out: a usable
    caller never waits for one.
    """
    if current is None or now >= current.usable_until:
        return Plan.FETCH
    if now < current.refresh_at or now < retry_after:
        return Plan.SERVE
    if now < current.must_refresh_at:
        return Plan.ATTEMPT_IN_BACKGROUND
    return Plan.ATTEMPT_NOW


def _start_daemon_thread(target: Callable[[], None]) -> None:
    threading.Thread(target=target, name=THREAD_NAME, daemon=True).start()


class Refresher:
    """Holds the current credentials and renews them on the schedule above; thread-safe.

    ``fetch`` (see :data:`Fetch`) returns fresh :class:`IssuedCredentials` or raises
    :class:`~gitlab_botocore.GitLabOIDCError`. ``clock`` returns epoch seconds;
    ``start_thread`` runs a background attempt (a daemon thread by default); ``announce``
    is called with each new set of credentials after the fetch has ended, so that a log
    handler shipping that record with AWS gets them rather than waiting for the fetch.

    What a fetch logs is handled in the fetching thread. If that handling asks for these
    credentials while none are usable (a log handler calling AWS), it raises at once
    instead of waiting for the fetch it is part of, which would never end. A caller
    waiting for another thread's fetch gives up after ``wait_limit`` seconds (longer than
    any fetch takes; ``None``: no limit) and raises, rather than hang with a stuck thread.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        clock: Callable[[], float] = time.time,
        start_thread: StartThread = _start_daemon_thread,
        announce: Announce | None = None,
        wait_limit: float | None = None,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._start_thread = start_thread
        self._announce = announce
        self._wait_limit = wait_limit
        self._unannounced: IssuedCredentials | None = None
        # The thread working under _fetch_lock, if any: what it logs is handled there.
        self._fetching_thread: int | None = None
        self._current: Generation | None = None
        # Held for the whole of an attempt or fetch: at most one STS call in flight.
        self._fetch_lock = threading.Lock()
        _LIVE.add(self)
        self._fetches = 0  # completed retrying fetches, to spot one that ended while we waited
        self._fetch_error: BaseException | None = None  # how the last retrying fetch failed
        self._early_failure_unseen = False  # the early fetch failed, and no caller knows yet
        self._failures = 0  # failed attempts and fetches in a row
        self._retry_after = 0.0

    def current(self) -> IssuedCredentials:
        """The credentials to use now, as one consistent value, refreshed as scheduled.

        May wait for STS when nothing usable is held; raises the fetch's error then.
        """
        step = plan(self._current, self._clock(), self._retry_after)
        if step == Plan.ATTEMPT_IN_BACKGROUND:
            self._attempt_in_background()
        elif step == Plan.ATTEMPT_NOW:
            self._attempt_now()
        elif step == Plan.FETCH:
            self._fetch_and_wait()
        current = self._current
        if current is None:  # a fetch either stores credentials or raises
            raise RuntimeError("no credentials after a fetch")
        return current.issued

    def peek(self) -> IssuedCredentials | None:
        """The credentials held now, without refreshing (``None`` before the first fetch)."""
        current = self._current
        return current.issued if current else None

    def refresh_needed(self, refresh_in: float | None = None) -> bool:
        """Whether :meth:`current` would do more than serve what is held: with no
        credentials, or from the advisory moment on (or ``refresh_in`` seconds before
        expiry, when given)."""
        current = self._current
        if current is None:
            return True
        if refresh_in is None:
            return self._clock() >= current.refresh_at
        return self._clock() >= current.issued.expiration.timestamp() - refresh_in

    def prefetch(self) -> bool:
        """Start the first fetch in the background, so that the STS round trip overlaps
        with what the caller does next (building its own client, say); ``True`` if it did.

        The fetch is the one the first :meth:`current` would make, retrying within the
        budget. Callers that arrive while it runs wait for it and share its credentials or
        its error. If it failed, the first caller to arrive within the back-off that
        follows a failure (:data:`RETRY_BACKOFF`: 2.5-5 s) gets that error too, without a
        second call, as if it had made the call itself; a caller arriving later fetches
        afresh, so a failure at start-up is never served long after the fact. Does nothing
        when credentials are held or a fetch is under way, nor when no thread can be
        started.
        """
        if self._current is not None or not self._fetch_lock.acquire(blocking=False):
            return False
        try:
            self._start_thread(self._first_fetch)
        except RuntimeError:  # no new threads at interpreter shutdown
            self._release()
            return False
        return True

    @property
    def fetching(self) -> bool:
        """Whether a fetch or attempt is under way (in any thread)."""
        return self._fetch_lock.locked()

    def _first_fetch(self) -> None:
        self._fetching_thread = threading.get_ident()
        try:
            if self._current is None:
                self._retrying_fetch()
        except Exception as error:  # raised to the callers waiting for this fetch
            logger.debug("The first fetch, started in the background, failed: %s", error)
            self._early_failure_unseen = True
        finally:
            self._release()

    def _attempt_in_background(self) -> None:
        if not self._fetch_lock.acquire(blocking=False):
            return  # an attempt is already in flight
        try:
            self._start_thread(self._background_attempt)
        except RuntimeError:  # no new threads at interpreter shutdown
            self._release()

    def _background_attempt(self) -> None:
        self._fetching_thread = threading.get_ident()
        try:
            if plan(self._current, self._clock(), self._retry_after) != Plan.SERVE:
                self._attempt(retry=False)
        except Exception as error:  # logged by _attempt; callers keep the current ones
            logger.debug("Background refresh failed: %s", error)
        finally:
            self._release()

    def _attempt_now(self) -> None:
        # The current credentials are usable: never wait behind someone else's attempt.
        if not self._fetch_lock.acquire(blocking=False):
            return
        self._fetching_thread = threading.get_ident()
        try:
            if plan(self._current, self._clock(), self._retry_after) == Plan.ATTEMPT_NOW:
                self._attempt(retry=False)
        except Exception as error:  # logged by _attempt; the current ones still work
            logger.debug("Refresh attempt failed: %s", error)
        finally:
            self._release()

    def _fetch_and_wait(self) -> None:
        if self._fetching_thread == threading.get_ident():
            raise GitLabOIDCError(REENTRANT_CALL_MESSAGE)
        fetches_before = self._fetches
        limit = self._wait_limit
        if not self._fetch_lock.acquire(timeout=-1 if limit is None else limit):
            work = "to fetch these credentials from STS"
            raise GitLabOIDCError(STUCK_WAIT_MESSAGE.format(seconds=limit, work=work))
        self._fetching_thread = threading.get_ident()
        try:
            if plan(self._current, self._clock(), self._retry_after) != Plan.FETCH:
                return  # another thread refreshed while we waited
            error = self._fetch_error
            early = self._early_failure_unseen and self._clock() < self._retry_after
            if error is not None and (self._fetches != fetches_before or early):
                # The fetch we waited for failed, or the early fetch failed just before we
                # asked: do not repeat the call.
                self._early_failure_unseen = False
                raise error
            self._early_failure_unseen = False
            self._retrying_fetch()
        finally:
            self._release()

    def _release(self) -> None:
        """Release ``_fetch_lock``, then announce the credentials the fetch stored (if any):
        whatever that logs may ask for them, from this thread or another."""
        issued, self._unannounced = self._unannounced, None
        self._fetching_thread = None
        self._fetch_lock.release()
        if issued is not None and self._announce is not None:
            self._announce(issued)

    def _retrying_fetch(self) -> None:
        """A fetch that retries within the budget, under ``_fetch_lock``; its outcome is
        kept for the callers that waited for it (see :meth:`_fetch_and_wait`)."""
        try:
            self._attempt(retry=True)
        except Exception as error:
            self._fetch_error = error
            raise
        else:
            self._fetch_error = None
        finally:
            self._fetches += 1

    def _attempt(self, *, retry: bool) -> None:
        """Fetch under ``_fetch_lock``; store the result, or schedule the next attempt."""
        try:
            issued = self._fetch(retry)
        except Exception as error:
            self._failures += 1
            delay = RETRY_BACKOFF.seconds(self._failures)
            now = self._clock()
            self._retry_after = now + delay
            current = self._current
            if current is not None and now < current.usable_until:
                logger.warning(
                    "Refreshing AWS credentials failed; using the current ones, which expire "
                    "at %s, and trying again in %.0f s. %s",
                    current.issued.expiration.isoformat(),
                    delay,
                    error,
                )
            raise
        self._current = Generation.of(issued, self._clock())
        self._failures = 0
        self._retry_after = 0.0
        self._unannounced = issued


_LIVE: weakref.WeakSet[Refresher] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A refresh thread of the parent may hold a lock; the child has no such thread.
    for refresher in list(_LIVE):
        refresher._fetch_lock = threading.Lock()
        refresher._fetching_thread = None  # its ident may be reused by a thread of the child
        refresher._unannounced = None  # the parent announces those


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
