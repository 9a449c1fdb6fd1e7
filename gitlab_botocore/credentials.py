"""Refreshing credentials, shared by every session in the process that wants the same role.

Refresh design. Credentials are renewed ahead of expiry in stages, scaled to their
lifetime so that short (900 s) sessions do not refresh on every call (see :func:`plan`):

* from ``refresh_at`` (a quarter of the lifetime before expiry, at most 15 min),
  the first caller to notice starts one STS attempt in a background thread and every
  caller keeps using the current credentials, so nobody waits on STS;
* from ``must_refresh_at`` (a sixth of the lifetime, at most 10 min) the first caller
  to notice makes one STS attempt itself, and gets the new credentials when it
  succeeds; callers arriving meanwhile keep the current ones;
* from ``usable_until`` (a minute before expiry, less for short lifetimes), or with no
  credentials yet, callers wait for a fetch that retries transient failures within the
  retry budget, single-flight: one STS call, other threads block on it.

So while the current credentials are usable no caller waits longer than one STS
attempt, however long STS is down. A failed attempt is logged and the next one waits
for an exponential back-off (on a later call, or in the background), instead of
hammering STS on every call. A background thread per attempt (rather than a permanent
worker) keeps idle processes free of threads and needs no shutdown.
"""

from __future__ import annotations

import datetime
import enum
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Callable

from botocore.credentials import DeferredRefreshableCredentials, ReadOnlyCredentials

from .exchange import IssuedCredentials

logger = logging.getLogger(__name__)

ADVISORY_REFRESH_SECONDS = 15 * 60
MANDATORY_REFRESH_SECONDS = 10 * 60
# Credentials this close to expiry are not handed out even when a refresh failed.
MIN_USABLE_SECONDS = 60
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 120.0

_HAS_ACCOUNT_ID = "account_id" in ReadOnlyCredentials._fields

Fetch = Callable[[bool], IssuedCredentials]
"""Gets fresh credentials. Called with ``True`` when the caller has nothing usable and
waits: retry transient failures within the retry budget. With ``False``: one STS attempt,
raising its failure (the refresh schedule decides when to try again)."""


@dataclass(frozen=True, repr=False)  # its repr would show the secret key
class _Generation:
    """One set of issued credentials and the moments that matter for it (epoch seconds)."""

    frozen: ReadOnlyCredentials = field(repr=False)
    issued: IssuedCredentials
    refresh_at: float
    must_refresh_at: float
    usable_until: float

    @classmethod
    def of(cls, issued: IssuedCredentials, now: float) -> _Generation:
        expires = issued.expiration.timestamp()
        lifetime = max(expires - now, 0.0)
        values: list[str | None] = [issued.access_key, issued.secret_key, issued.token]
        if _HAS_ACCOUNT_ID:
            values.append(issued.account_id)
        return cls(
            frozen=ReadOnlyCredentials(*values),
            issued=issued,
            refresh_at=expires - min(ADVISORY_REFRESH_SECONDS, lifetime / 4),
            must_refresh_at=expires - min(MANDATORY_REFRESH_SECONDS, lifetime / 6),
            usable_until=expires - min(MIN_USABLE_SECONDS, lifetime / 10),
        )


class Plan(enum.Enum):
    """What a caller does about a refresh, decided by :func:`plan`."""

    SERVE = "serve the current credentials"
    ATTEMPT_IN_BACKGROUND = "start one STS attempt in the background; serve the current ones"
    ATTEMPT_NOW = "make one STS attempt, then serve the new credentials or the current ones"
    FETCH = "nothing usable: wait for a fetch that retries within the budget"


def plan(current: _Generation | None, now: float, retry_after: float) -> Plan:
    """The refresh schedule: what a caller does at ``now``, free of threads and clocks.

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


def retry_delay(failures: int) -> float:
    """Seconds until the next attempt after ``failures`` failures in a row: exponential,
    jittered down by up to half so that processes do not retry in step."""
    ceiling = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2.0 ** (failures - 1))
    return ceiling * random.uniform(0.5, 1.0)


class RefreshingCredentials(DeferredRefreshableCredentials):  # type: ignore[misc]
    """botocore credentials that fetch on first use and refresh without stalling callers.

    ``fetch`` (see :data:`Fetch`) returns fresh :class:`IssuedCredentials` or raises
    :class:`~gitlab_botocore.GitLabOIDCError`. ``clock`` returns epoch seconds; tests may
    pass their own.
    """

    def __init__(
        self,
        fetch: Fetch,
        method: str,
        clock: Callable[[], float] = time.time,
        description: str = "",
    ) -> None:
        super().__init__(refresh_using=lambda: fetch(True), method=method)
        self._fetch = fetch
        self._clock = clock
        self._description = description
        self._current: _Generation | None = None
        # Held for the whole of an attempt or fetch: at most one STS call in flight.
        self._fetch_lock = threading.Lock()
        _LIVE.add(self)
        self._fetches = 0  # completed retrying fetches, to spot one that ended while we waited
        self._fetch_error: BaseException | None = None  # how the last retrying fetch failed
        self._failures = 0  # failed attempts and fetches in a row
        self._retry_after = 0.0

    # botocore reads every attribute (and get_frozen_credentials) through _refresh().
    def _refresh(self) -> None:
        step = plan(self._current, self._clock(), self._retry_after)
        if step is Plan.SERVE:
            return
        if step is Plan.ATTEMPT_IN_BACKGROUND:
            self._attempt_in_background()
        elif step is Plan.ATTEMPT_NOW:
            self._attempt_now()
        else:
            self._fetch_and_wait()

    def refresh_needed(self, refresh_in: int | None = None) -> bool:
        current = self._current
        if current is None:
            return True
        if refresh_in is None:
            return self._clock() >= current.refresh_at
        return self._clock() >= current.issued.expiration.timestamp() - refresh_in

    @property
    def account_id(self) -> str | None:
        self._refresh()
        current = self._current
        return current.issued.account_id if current else None

    @property
    def expiration(self) -> datetime.datetime | None:
        """When the current credentials expire (``None`` before the first fetch)."""
        current = self._current
        return current.issued.expiration if current else None

    def get_issued_credentials(self) -> IssuedCredentials:
        """The current keys with their expiry, as one consistent value.

        Fetches or refreshes first, as reading any attribute does, so it may wait for STS.
        """
        self._refresh()
        current = self._current
        if current is None:  # _refresh() raises rather than leave none
            raise RuntimeError("no credentials after a refresh")
        return current.issued

    def _attempt_in_background(self) -> None:
        if not self._fetch_lock.acquire(blocking=False):
            return  # an attempt is already in flight
        try:
            threading.Thread(
                target=self._background_attempt, name="gitlab-botocore-refresh", daemon=True
            ).start()
        except RuntimeError:  # no new threads at interpreter shutdown
            self._fetch_lock.release()

    def _background_attempt(self) -> None:
        try:
            if plan(self._current, self._clock(), self._retry_after) is not Plan.SERVE:
                self._attempt(retry=False)
        except Exception as error:  # logged by _attempt; callers keep the current ones
            logger.debug("Background refresh failed: %s", error)
        finally:
            self._fetch_lock.release()

    def _attempt_now(self) -> None:
        # The current credentials are usable: never wait behind someone else's attempt.
        if not self._fetch_lock.acquire(blocking=False):
            return
        try:
            if plan(self._current, self._clock(), self._retry_after) is Plan.ATTEMPT_NOW:
                self._attempt(retry=False)
        except Exception as error:  # logged by _attempt; the current ones still work
            logger.debug("Refresh attempt failed: %s", error)
        finally:
            self._fetch_lock.release()

    def _fetch_and_wait(self) -> None:
        fetches_before = self._fetches
        with self._fetch_lock:
            if plan(self._current, self._clock(), self._retry_after) is not Plan.FETCH:
                return  # another thread refreshed while we waited
            if self._fetches != fetches_before and self._fetch_error is not None:
                raise self._fetch_error  # the fetch we waited for failed: do not repeat it
            try:
                self._attempt(retry=True)
            except Exception as error:
                self._fetches += 1
                self._fetch_error = error
                raise
            self._fetches += 1
            self._fetch_error = None

    def _attempt(self, *, retry: bool) -> None:
        """Fetch under ``_fetch_lock``; store the result, or schedule the next attempt."""
        try:
            issued = self._fetch(retry)
        except Exception as error:
            self._failures += 1
            delay = retry_delay(self._failures)
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
        generation = _Generation.of(issued, self._clock())
        self._access_key = issued.access_key
        self._secret_key = issued.secret_key
        self._token = issued.token
        self._account_id = issued.account_id
        self._expiry_time = issued.expiration
        self._frozen_credentials = generation.frozen
        self._current = generation
        self._failures = 0
        self._retry_after = 0.0

    def __repr__(self) -> str:
        current = self._current
        state = f"expires={current.issued.expiration.isoformat()}" if current else "not fetched"
        return f"<RefreshingCredentials method={self.method!r} {self._description} {state}>"


_LIVE: weakref.WeakSet[RefreshingCredentials] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A refresh thread of the parent may hold a lock; the child has no such thread.
    for credentials in list(_LIVE):
        credentials._fetch_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SharedCredentials:
    """One credentials object per key, for the whole process."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, RefreshingCredentials] = {}
        self._lock = threading.Lock()

    def get_or_create(
        self, key: Hashable, create: Callable[[], RefreshingCredentials]
    ) -> RefreshingCredentials:
        with self._lock:
            credentials = self._entries.get(key)
            if credentials is None:
                credentials = self._entries[key] = create()
            return credentials

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
