"""Refreshing credentials, shared by every session in the process that wants the same role.

Refresh design. Credentials are renewed ahead of expiry in two stages, scaled to
their lifetime so that short (900 s) sessions do not refresh on every call:

* from ``refresh_at`` (a quarter of the lifetime before expiry, at most 15 min),
  the first caller to notice starts one background refresh and every caller keeps
  using the current credentials, so nobody waits on STS;
* from ``must_refresh_at`` (a sixth of the lifetime, at most 10 min) callers wait
  for a refresh, single-flight: one STS call, other threads block on it.

A failed refresh while the current credentials are still usable is logged and
retried after an exponential back-off instead of on every call. A background
thread per refresh (rather than a permanent worker) keeps idle processes free of
threads and needs no shutdown.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Callable

from botocore.credentials import DeferredRefreshableCredentials, ReadOnlyCredentials

from .exceptions import GitLabOIDCError
from .exchange import IssuedCredentials

logger = logging.getLogger(__name__)

ADVISORY_REFRESH_SECONDS = 15 * 60
MANDATORY_REFRESH_SECONDS = 10 * 60
# Credentials this close to expiry are not handed out even when a refresh failed.
MIN_USABLE_SECONDS = 60
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 120.0

_HAS_ACCOUNT_ID = "account_id" in ReadOnlyCredentials._fields


@dataclass(frozen=True, repr=False)  # its repr would show the secret key
class _Generation:
    """One set of issued credentials and the moments that matter for it (epoch seconds)."""

    frozen: ReadOnlyCredentials
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


class RefreshingCredentials(DeferredRefreshableCredentials):  # type: ignore[misc]
    """botocore credentials that fetch on first use and refresh without stalling callers.

    ``fetch`` returns fresh :class:`IssuedCredentials` or raises :class:`GitLabOIDCError`.
    ``clock`` returns epoch seconds; tests may pass their own.
    """

    def __init__(
        self,
        fetch: Callable[[], IssuedCredentials],
        method: str,
        clock: Callable[[], float] = time.time,
        description: str = "",
    ) -> None:
        super().__init__(refresh_using=fetch, method=method)
        self._fetch = fetch
        self._clock = clock
        self._description = description
        self._current: _Generation | None = None
        self._fetch_lock = threading.Lock()  # held for the whole of a fetch
        _LIVE.add(self)
        self._fetches = 0  # completed fetch attempts, to spot one that ended while we waited
        self._last_error: BaseException | None = None
        self._failures = 0
        self._retry_after = 0.0

    # botocore reads every attribute (and get_frozen_credentials) through _refresh().
    def _refresh(self) -> None:
        current = self._current
        now = self._clock()
        if current is not None and now < current.refresh_at:
            return
        if current is not None and now < current.must_refresh_at:
            self._start_background_refresh(now)
            return
        self._refresh_and_wait()

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

    def _start_background_refresh(self, now: float) -> None:
        if now < self._retry_after or not self._fetch_lock.acquire(blocking=False):
            return  # backing off, or a refresh is already in flight
        try:
            threading.Thread(
                target=self._background_refresh, name="gitlab-botocore-refresh", daemon=True
            ).start()
        except RuntimeError:  # no new threads at interpreter shutdown
            self._fetch_lock.release()

    def _background_refresh(self) -> None:
        try:
            self._fetch_and_store()
        except Exception as error:  # logged by _fetch_and_store; callers keep current ones
            logger.debug("Background refresh failed: %s", error)
        finally:
            self._fetch_lock.release()

    def _refresh_and_wait(self) -> None:
        fetches_before = self._fetches
        with self._fetch_lock:
            current = self._current
            now = self._clock()
            if current is not None and now < current.must_refresh_at:
                return  # another thread refreshed while we waited
            if self._fetches != fetches_before and self._last_error is not None:
                if current is not None and now < current.usable_until:
                    return
                raise self._last_error  # the fetch we waited for failed: do not repeat it
            if current is not None and now < min(self._retry_after, current.usable_until):
                return  # backing off after a failure; current credentials still work
            try:
                self._fetch_and_store()
            except GitLabOIDCError:
                if current is not None and self._clock() < current.usable_until:
                    return  # logged; serve current credentials until the retry
                raise

    def _fetch_and_store(self) -> None:
        """Fetch under ``_fetch_lock``; record success or schedule a retry."""
        try:
            issued = self._fetch()
        except Exception as error:
            self._fetches += 1
            self._last_error = error
            self._failures += 1
            delay = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (self._failures - 1))
            delay *= random.uniform(0.5, 1.0)
            self._retry_after = self._clock() + delay
            if self._current is not None:
                logger.warning(
                    "Refreshing AWS credentials failed; using the current ones, which expire at "
                    "%s, and retrying in %.0f s. %s",
                    self._current.issued.expiration.isoformat(),
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
        self._last_error = None
        self._failures = 0
        self._retry_after = 0.0
        self._fetches += 1

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
