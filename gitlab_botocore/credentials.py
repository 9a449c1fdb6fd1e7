"""The credentials botocore sees, and the registry that shares them across the process.

:class:`GitLabOIDCCredentials` adapts a :class:`~gitlab_botocore.refresh.Refresher` (the
refresh schedule) to botocore's credentials interface. It overrides every entry point
botocore and its users read (``get_frozen_credentials()``, the ``access_key``,
``secret_key``, ``token`` and ``account_id`` properties, ``refresh_needed()`` and
``_refresh()``), so it writes none of botocore's private fields: they stay as botocore's
own constructor left them (checked against botocore 1.27.12, 1.31.85 and 1.44.8).
"""

from __future__ import annotations

import datetime
import os
import threading
import weakref
from collections.abc import Hashable
from typing import Any, Callable

from botocore.credentials import DeferredRefreshableCredentials, ReadOnlyCredentials

from .exceptions import REENTRANT_CALL_MESSAGE, STUCK_WAIT_MESSAGE, GitLabOIDCError
from .exchange import IssuedCredentials
from .refresh import Refresher

_HAS_ACCOUNT_ID = "account_id" in ReadOnlyCredentials._fields
REGISTRY_WAIT_SECONDS = 60.0
"""Making credentials takes milliseconds (an STS client, the request started): a thread
waiting this long for another to do it raises instead of hanging."""


class GitLabOIDCCredentials(DeferredRefreshableCredentials):  # type: ignore[misc]
    """botocore credentials of a role assumed with a GitLab ID token.

    Their first use waits for the first fetch (which the provider starts in the
    background) and they refresh ahead of expiry without stalling callers (see
    :mod:`gitlab_botocore.refresh`). A subclass of botocore's deferred refreshable
    credentials, so code that checks for those (and aiobotocore's wrapper) accepts them.
    """

    def __init__(self, refresher: Refresher, method: str, description: str = "") -> None:
        # botocore's constructor sets its private fields to "nothing fetched"; its methods
        # that read them are all overridden below, so they are never updated.
        super().__init__(refresh_using=self._metadata, method=method)
        self._refresher = refresher
        self._description = description
        self._frozen: tuple[IssuedCredentials, ReadOnlyCredentials] | None = None

    def get_issued_credentials(self) -> IssuedCredentials:
        """The current keys with their expiry, as one consistent value.

        Fetches or refreshes first, as reading any attribute does, so it may wait for STS.
        """
        return self._refresher.current()

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        issued = self._refresher.current()
        frozen = self._frozen
        if frozen is None or frozen[0] is not issued:
            values: list[str | None] = [issued.access_key, issued.secret_key, issued.token]
            if _HAS_ACCOUNT_ID:
                values.append(issued.account_id)
            frozen = self._frozen = (issued, ReadOnlyCredentials(*values))
        return frozen[1]

    # botocore's deprecated single-value reads: each is consistent on its own only.
    @property
    def access_key(self) -> str:
        return self._refresher.current().access_key

    @property
    def secret_key(self) -> str:
        return self._refresher.current().secret_key

    @property
    def token(self) -> str:
        return self._refresher.current().token

    @property
    def account_id(self) -> str | None:
        return self._refresher.current().account_id

    @property
    def expiration(self) -> datetime.datetime | None:
        """When the credentials held now expire (``None`` before the first fetch); does
        not refresh. For keys and expiry together use :meth:`get_issued_credentials`."""
        issued = self._refresher.peek()
        return issued.expiration if issued else None

    def refresh_needed(self, refresh_in: int | None = None) -> bool:
        return self._refresher.refresh_needed(refresh_in)

    def _refresh(self) -> None:
        self._refresher.current()

    def _metadata(self) -> dict[str, Any]:
        """What botocore's own refresh path would load, should anything call it."""
        return self._refresher.current().as_metadata()

    def __repr__(self) -> str:
        issued = self._refresher.peek()
        state = f"expires={issued.expiration.isoformat()}" if issued else "not fetched"
        return f"<GitLabOIDCCredentials method={self.method!r} {self._description} {state}>"


class CredentialsRegistry:
    """One :class:`GitLabOIDCCredentials` per key (role settings and token) for the whole
    process, so that every session and thread shares one refresh.

    Credentials are created one at a time. A call made from within a creation, in the
    thread creating (a log handler calling AWS on a record logged meanwhile), cannot wait
    for it: it raises :class:`~gitlab_botocore.GitLabOIDCError` unless the credentials it
    asks for already exist. So does a call that waited ``wait_seconds`` for another
    thread's creation.
    """

    def __init__(self, *, wait_seconds: float = REGISTRY_WAIT_SECONDS) -> None:
        self._entries: dict[Hashable, GitLabOIDCCredentials] = {}
        self._lock = threading.Lock()
        self._creating_thread: int | None = None
        self._wait_seconds = wait_seconds
        _REGISTRIES.add(self)

    def get_or_create(
        self, key: Hashable, create: Callable[[], GitLabOIDCCredentials]
    ) -> GitLabOIDCCredentials:
        credentials = self._entries.get(key)
        if credentials is not None:
            return credentials
        if self._creating_thread == threading.get_ident():
            raise GitLabOIDCError(REENTRANT_CALL_MESSAGE)
        if not self._lock.acquire(timeout=self._wait_seconds):
            work = "to make AWS credentials"
            raise GitLabOIDCError(STUCK_WAIT_MESSAGE.format(seconds=self._wait_seconds, work=work))
        try:
            credentials = self._entries.get(key)
            if credentials is None:
                self._creating_thread = threading.get_ident()
                try:
                    credentials = self._entries[key] = create()
                finally:
                    self._creating_thread = None
            return credentials
        finally:
            self._lock.release()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_REGISTRIES: weakref.WeakSet[CredentialsRegistry] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Another thread of the parent may have been creating credentials, lock held.
    for registry in list(_REGISTRIES):
        registry._lock = threading.Lock()
        registry._creating_thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
