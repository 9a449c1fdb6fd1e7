"""The link in botocore's credential provider chain.

The provider decides *whether* it applies to a session; the STS exchange knows
*how* to get credentials; the refreshing credentials decide *when*.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from botocore.credentials import CredentialProvider

from .cache import CredentialCache, cache_key
from .credentials import RefreshingCredentials, SharedCredentials
from .exceptions import TokenNotFoundError
from .exchange import IssuedCredentials, STSExchange
from .id_token import EnvironmentTokenSource, TokenSource
from .settings import METHOD, Settings, settings_for_session

logger = logging.getLogger(__name__)

shared_credentials = SharedCredentials()
"""Every session and thread asking for the same role and token gets the same credentials."""


class GitLabOIDCProvider(CredentialProvider):  # type: ignore[misc]
    """Assumes an IAM role with the GitLab CI job's ID token.

    ``load()`` returns ``None`` when no role or no token is configured, so the chain
    moves on (a job's ID token may be meant for Vault, not AWS); it raises a
    :class:`~gitlab_botocore.GitLabOIDCError` when the configuration is broken.
    No STS call happens until the credentials are first used.
    """

    METHOD = METHOD
    CANONICAL_NAME = "custom-gitlab-oidc"

    def __init__(
        self,
        session: Any,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        use_session_clients: bool = True,
    ) -> None:
        """``use_session_clients=False`` (aiobotocore sessions, whose clients are
        asynchronous) makes the STS client from a private botocore session instead."""
        super().__init__()
        self._session = session
        self._overrides = dict(overrides or {})
        self._environ = os.environ if environ is None else environ
        self._use_session_clients = use_session_clients

    def load(self) -> RefreshingCredentials | None:
        settings = settings_for_session(self._session, self._overrides, self._environ)
        if settings is None:
            return None
        source = EnvironmentTokenSource(
            settings.token_variable, settings.ci_server_url, self._environ
        )
        try:
            token = source.get_token()
        except TokenNotFoundError:
            if settings.token_variable:
                raise  # a variable was named explicitly: its absence is a mistake
            logger.debug("Role %s configured but no GitLab ID token found.", settings.role_arn)
            return None
        token.ensure_not_expired()
        # The token is part of the key (hashed): a different token is a different identity.
        key = (settings, hashlib.sha256(token.raw.encode()).hexdigest())
        return shared_credentials.get_or_create(
            key, lambda: self._new_credentials(settings, source)
        )

    def _new_credentials(self, settings: Settings, source: TokenSource) -> RefreshingCredentials:
        # Once per role and token, in the thread using this session: the only moment the
        # session may be used, since the credentials refresh from any thread.
        exchange = STSExchange(
            settings, self._session, use_session_clients=self._use_session_clients
        )
        return RefreshingCredentials(
            fetch=lambda retry: _fetch(source, exchange, retry),
            method=METHOD,
            description=f"role={settings.role_arn}",
        )


def _fetch(source: TokenSource, exchange: STSExchange, retry: bool) -> IssuedCredentials:
    """Read the token afresh (it may have changed) and exchange it, through the
    cross-process cache when ``GITLAB_BOTOCORE_CACHE`` turns it on."""
    token = source.get_token()
    token.ensure_not_expired()
    settings = exchange.settings
    if settings.cache_dir is None:
        return exchange.assume_role(token, retry=retry)
    cache = CredentialCache(settings.cache_dir)
    key = cache_key(settings, token)
    if retry:
        return cache.get_or_fetch(key, lambda: exchange.assume_role(token))
    # A single attempt is made for a caller whose credentials still work: it must not
    # wait for the cache's lock, which another process may hold through a retry loop.
    cached = cache.load(key)
    if cached is not None:
        return cached
    issued = exchange.assume_role(token, retry=False)
    cache.store(key, issued)
    return issued
