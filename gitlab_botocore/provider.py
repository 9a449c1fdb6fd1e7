"""The link in botocore's credential provider chain.

The provider decides *whether* it applies to a session; the STS exchange knows
*how* to get credentials; the refreshing credentials decide *when*.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from botocore.credentials import CredentialProvider

from .credentials import CredentialsRegistry, GitLabOIDCCredentials
from .exceptions import GitLabOIDCError, TokenNotFoundError
from .exchange import IssuedCredentials, STSExchange, longest_exchange_seconds
from .once import Once
from .refresh import Refresher
from .settings import METHOD, EnvVar, Settings, resolve_for_session
from .token_source import EnvironmentTokenSource, TokenSource

logger = logging.getLogger(__name__)

PREFETCH_HEAD_START_SECONDS = 0.25
"""At most this long, the first resolution waits for its STS request to be built (a few
milliseconds of CPU, normally)."""
NETWORK_HEAD_START_SECONDS = 0.002
"""Then this long for it to be on the network (urllib3 takes ~1.6 ms to open a connection
and write a request on the benchmark's machine; see docs/performance.md)."""

FETCH_OVERHEAD_SECONDS = 60.0
"""Added to the longest exchange for everything else a fetch does (DNS included)."""

credentials_registry = CredentialsRegistry()
"""Every session and thread asking for the same role and token gets the same credentials."""


class GitLabOIDCProvider(CredentialProvider):  # type: ignore[misc]
    """Assumes an IAM role with the GitLab CI job's ID token.

    ``load()`` returns ``None`` when the provider steps aside, so the chain moves on:
    no role configured; a role but no ID token meant for AWS (a WARNING in a GitLab job,
    once per process; :class:`~gitlab_botocore.TokenNotFoundError` with
    ``GITLAB_BOTOCORE_REQUIRE=1``); or ``AWS_WEB_IDENTITY_TOKEN_FILE`` giving the role to
    botocore's own web identity provider (a WARNING when a GitLab ID token is present
    too). It raises a :class:`~gitlab_botocore.GitLabOIDCError` when the configuration
    is broken. Otherwise the one STS call for the role and token starts in the
    background, and the credentials' first use waits for its answer (or raises its error).
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

    def load(self) -> GitLabOIDCCredentials | None:
        settings = resolve_for_session(self._session, self._overrides, self._environ)
        if settings is None:
            return None
        source = EnvironmentTokenSource(
            settings.token_variable, settings.ci_server_url, self._environ, settings.audiences
        )
        if settings.defer_to_web_identity_file:
            _step_aside_for_web_identity_file(settings, source)
            return None
        try:
            token = source.get_token()
        except TokenNotFoundError as error:
            if settings.token_variable:
                raise  # a variable was named explicitly: its absence is a mistake
            if settings.require:
                raise TokenNotFoundError(
                    f"{error} {EnvVar.REQUIRE} is set, so the job does not fall back to another "
                    f"identity (the role is {settings.role_arn}, from {settings.role_source})."
                ) from None
            _step_aside_without_token(settings, error)
            return None
        token.ensure_not_expired()
        # The token is part of the key (hashed): a different token is a different identity.
        key = (settings, hashlib.sha256(token.raw.encode()).hexdigest())
        return credentials_registry.get_or_create(
            key, lambda: self._new_credentials(settings, source)
        )

    def _new_credentials(self, settings: Settings, source: TokenSource) -> GitLabOIDCCredentials:
        # Once per role and token, in the thread using this session: the only moment the
        # session may be used, since the credentials refresh from any thread.
        exchange = STSExchange(
            settings, self._session, use_session_clients=self._use_session_clients
        )
        refresher = Refresher(
            lambda retry: _fetch(source, exchange, retry),
            announce=_announce,
            wait_limit=_longest_fetch_seconds(settings),
        )
        # Not for aiobotocore (its path fetches on first use, off the event loop), nor with
        # the cross-process cache: its file lock, held through the request, would pass to a
        # process forked meanwhile and keep that child waiting.
        if self._use_session_clients and settings.cache_dir is None:
            _prefetch(refresher, exchange)
        return GitLabOIDCCredentials(
            refresher, method=METHOD, description=f"role={settings.role_arn}"
        )


def _prefetch(refresher: Refresher, exchange: STSExchange) -> None:
    """Send the STS request now, from a background thread, so that its round trip
    overlaps with what the caller does next (building its own client, say).

    Under the GIL, a new thread only runs when the caller stops computing: left alone,
    the request would be built and sent after the caller built its client, and nothing
    would overlap. So the caller waits until botocore hands the request to its HTTP
    layer (or the fetch ends), then pauses briefly while the thread opens the connection
    and writes the request, which botocore signals no more.
    """
    if not refresher.prefetch():
        return  # no thread: the first use fetches
    exchange.request_sent.wait(PREFETCH_HEAD_START_SECONDS)
    if refresher.fetching:
        time.sleep(NETWORK_HEAD_START_SECONDS)


def _longest_fetch_seconds(settings: Settings) -> float:
    """Longer than a caller with nothing usable can have to wait: a single refresh
    attempt already under way, then a retrying fetch (the exchanges, the cache's lock,
    reading the token, a private session for chained roles). Waiting longer is waiting for
    a stuck thread."""
    seconds = (
        longest_exchange_seconds(settings, retry=False)
        + longest_exchange_seconds(settings)
        + FETCH_OVERHEAD_SECONDS
    )
    if settings.cache_dir is not None:
        from .cache import LOCK_WAIT_SECONDS

        seconds += LOCK_WAIT_SECONDS
    return seconds


def _announce(issued: IssuedCredentials) -> None:
    # Logged once the credentials are served, not from inside the fetch: a log handler
    # that calls AWS with them must not wait for the fetch that logs.
    logger.info(
        "Assumed %s as session %s; the credentials expire at %s.",
        issued.assumed_role_arn,
        issued.session_name,
        issued.expiration.isoformat(),
    )


def _fetch(source: TokenSource, exchange: STSExchange, retry: bool) -> IssuedCredentials:
    """Read the token afresh (it may have changed) and exchange it, through the
    cross-process cache when ``GITLAB_BOTOCORE_CACHE`` turns it on."""
    try:
        return _fetch_through_cache(source, exchange, retry)
    finally:
        exchange.request_sent.set()  # no request, or no more: nobody waits for one


def _fetch_through_cache(
    source: TokenSource, exchange: STSExchange, retry: bool
) -> IssuedCredentials:
    token = source.get_token()
    token.ensure_not_expired()
    settings = exchange.settings
    if settings.cache_dir is None:
        return exchange.assume_role(token, retry=retry)
    # Imported here: a job without the cache does not pay for loading it.
    from .cache import CredentialCache, cache_key

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


_warned = Once()


def _warn_once(kind: str, settings: Settings, message: str, *args: object) -> None:
    """Log a WARNING the first time this process steps aside this way for this role.

    Our loggers have no handler of their own, so in a script that configured no logging
    Python's last-resort handler still prints it to stderr.
    """
    first = _warned.first((kind, settings.role_arn))
    logger.log(logging.WARNING if first else logging.DEBUG, message, *args)


def forget_warnings() -> None:
    """Warn again, as if in a new process (``uninstall()`` calls it)."""
    _warned.forget()


def _step_aside_without_token(settings: Settings, error: TokenNotFoundError) -> None:
    message = (
        "gitlab-botocore: the role %s (from %s) is configured, but there is no GitLab ID "
        "token for it. %s So botocore's credential chain moves on to its next provider: "
        "this process gets whatever identity that finds (keys in ~/.aws, the runner's role) "
        "or none. Set %s=1 to fail instead."
    )
    args = (settings.role_arn, settings.role_source, error, EnvVar.REQUIRE)
    if settings.in_gitlab_ci:
        _warn_once("no-token", settings, message, *args)
    else:  # not a GitLab job: a role in the environment may well be for something else
        logger.debug(message, *args)


def _step_aside_for_web_identity_file(settings: Settings, source: TokenSource) -> None:
    try:
        token = source.get_token()
    except GitLabOIDCError:
        token = None
    if token is None:
        logger.debug(
            "%s is set: leaving %s to botocore's web identity provider.",
            EnvVar.WEB_IDENTITY_TOKEN_FILE,
            settings.role_arn,
        )
        return
    _warn_once(
        "web-identity-file",
        settings,
        "gitlab-botocore: %s is set, so botocore's own web identity provider assumes %s with "
        "the token in %s; the GitLab ID token in %s is not used. To use the GitLab ID token "
        "instead, unset %s (or set %s=1).",
        EnvVar.WEB_IDENTITY_TOKEN_FILE,
        settings.role_arn,
        settings.defer_to_web_identity_file,
        token.variable,
        EnvVar.WEB_IDENTITY_TOKEN_FILE,
        EnvVar.REQUIRE,
    )
