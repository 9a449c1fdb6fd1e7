"""The provider for aiobotocore sessions.

aiobotocore runs botocore's session initializers, so ``import gitlab_botocore`` reaches
its sessions too, but its resolver awaits ``provider.load()``. This provider decides
exactly as the synchronous one does (same settings, same token, same errors) and hands
out aiobotocore's refreshable credentials backed by the process-wide shared credentials:
the sync and async paths of a process make one STS call per credential lifetime.

Nothing loop-bound is shared. Each session gets its own aiobotocore credentials (with
aiobotocore's lock); they read the shared, thread-safe credentials inline while those
are fresh, and from a worker thread when reading them may wait for STS, so the event
loop never blocks. Any number of event loops, one after another or in several threads,
can use them. The STS client comes from a private plain botocore session configured like
the aiobotocore session (read in the loop's thread when credentials are first resolved), because
aiobotocore's clients cannot be used from a thread without a loop.

Loaded only when an aiobotocore session first resolves credentials; the core never
imports it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import Any, Callable

from aiobotocore.credentials import AioDeferredRefreshableCredentials
from botocore.credentials import CredentialProvider

from .credentials import GitLabOIDCCredentials
from .exceptions import GitLabOIDCError
from .provider import GitLabOIDCProvider
from .settings import METHOD

__all__ = ["GitLabOIDCAioProvider"]


class _OneMessage(logging.Filter):
    """Drops aiobotocore's "Refreshing temporary credentials failed during mandatory
    refresh period" record (with its full traceback) when the failure is ours: the same
    exception, with its explanation, reaches the caller anyway. Advisory-period failures,
    which aiobotocore swallows, are still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        ours = isinstance(error, GitLabOIDCError)
        return not (ours and isinstance(record.args, tuple) and "mandatory" in record.args)


logging.getLogger("aiobotocore.credentials").addFilter(_OneMessage())


class GitLabOIDCAioProvider(CredentialProvider):  # type: ignore[misc]
    """The asynchronous twin of :class:`~gitlab_botocore.provider.GitLabOIDCProvider`.

    ``await load()`` returns ``None`` when no role or no token is configured (the chain
    moves on), raises :class:`~gitlab_botocore.GitLabOIDCError` when the configuration is
    broken, and otherwise returns aiobotocore refreshable credentials whose first use
    calls STS. Installed by ``import gitlab_botocore`` or ``register(aio_session, ...)``.
    """

    METHOD = METHOD
    CANONICAL_NAME = "custom-gitlab-oidc"

    def __init__(
        self,
        session: Any,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._session = session
        self._decide = GitLabOIDCProvider(session, overrides, environ, use_session_clients=False)

    async def load(self) -> Any:
        # Nothing here waits on the network: settings, the token from the environment, and
        # the shared registry (the first fetch happens on first use, off the loop).
        shared = self._decide.load()
        if shared is None:
            return None
        credentials_class, run_in_thread = _async_flavour(self._session)

        async def refresh() -> dict[str, Any]:
            if shared.refresh_needed():
                # A first fetch, or a refresh that may wait for STS: not on the loop.
                metadata: dict[str, Any] = await run_in_thread(lambda: _as_metadata(shared))
                return metadata
            return _as_metadata(shared)

        return credentials_class(refresh_using=refresh, method=METHOD)


def _as_metadata(shared: GitLabOIDCCredentials) -> dict[str, Any]:
    """The shared credentials in the shape botocore's refreshable credentials load."""
    return shared.get_issued_credentials().as_metadata()


ThreadRunner = Callable[[Callable[[], Any]], Awaitable[Any]]


def _async_flavour(session: Any) -> tuple[Any, ThreadRunner]:
    """aiobotocore's credentials class and a way to run blocking code, for the session's
    async library: asyncio by default, anyio (and so trio) with the httpx backend."""
    primitives = getattr(session, "_async_primitives", None)
    if getattr(primitives, "value", None) == "anyio":
        import anyio.to_thread
        from aiobotocore.credentials import AnyioDeferredRefreshableCredentials

        return AnyioDeferredRefreshableCredentials, anyio.to_thread.run_sync
    return AioDeferredRefreshableCredentials, _asyncio_to_thread


async def _asyncio_to_thread(function: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, function)
