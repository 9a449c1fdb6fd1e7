"""EXPERIMENT (issue 13, goal 2): what overlapping the STS round trip with start-up buys.

Not part of the library and not adopted: a prototype that patches gitlab_botocore at run
time, for the fresh-process benchmark (``run.py --fresh-only --overlap MODE``). Modes:

``resolve``
    When a session first resolves credentials (the user's first ``client()``, or
    ``get_credentials()``), build the STS client in the caller's thread with the caller's
    session, as today, then send ``AssumeRoleWithWebIdentity`` from a background thread
    and return. The caller goes on building its own client while the request is in
    flight; the first use of the credentials waits for that answer.

``import``
    At import, when the environment alone decides the settings (role and token in the
    environment, no profile, no config file, no static keys, no cache), a background
    thread builds its own botocore session and STS client and sends the request.
    ``load()`` waits for that thread to register the credentials, so there is one call.

Either way the prefetched answer is the credentials' *first fetch*: the refreshing
credentials call it under their fetch lock, so every session and thread waits for the
one request (single flight); an error is re-raised in the caller's thread as the same
exception, with the same message; later refreshes fetch as usual. A child forked while
the request is in flight forgets it and fetches for itself.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from gitlab_botocore import provider as provider_module
from gitlab_botocore.credentials import RefreshingCredentials
from gitlab_botocore.exceptions import TokenNotFoundError
from gitlab_botocore.exchange import IssuedCredentials, STSExchange
from gitlab_botocore.id_token import EnvironmentTokenSource
from gitlab_botocore.settings import METHOD, EnvVar, Settings, settings_for_session

MODES = ("resolve", "import")
REGISTRATION_WAIT_SECONDS = 30.0


class FirstFetch:
    """A fetch whose first call returns the answer of a request started earlier."""

    def __init__(self, fetch: Callable[[], IssuedCredentials]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._pending = False
        self._result: IssuedCredentials | None = None
        self._error: BaseException | None = None
        _LIVE.append(self)

    def mark_pending(self) -> None:
        """From now on, the first call waits for :meth:`run` instead of fetching."""
        with self._lock:
            self._pending = True

    def start(self) -> None:
        """Send the request now, from a daemon thread."""
        self.mark_pending()
        threading.Thread(target=self.run, name="gitlab-botocore-prefetch", daemon=True).start()

    def run(self) -> None:
        """Send the request in this thread; the first call gets its answer."""
        try:
            self._result = self._fetch()
        except BaseException as error:  # re-raised in the caller's thread
            self._error = error
        finally:
            self._done.set()

    def __call__(self) -> IssuedCredentials:
        with self._lock:
            pending, self._pending = self._pending, False
        if not pending:
            return self._fetch()
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def _forget_after_fork(self) -> None:
        # The thread sending the request does not exist in the child.
        self._lock = threading.Lock()
        if not self._done.is_set():
            self._pending = False


_LIVE: list[FirstFetch] = []


def _after_fork_in_child() -> None:
    for first in _LIVE:
        first._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _key(settings: Settings, raw_token: str) -> tuple[Settings, str]:
    return (settings, hashlib.sha256(raw_token.encode()).hexdigest())


# -- mode "resolve" ------------------------------------------------------------------------


def _load_and_send(self: Any) -> RefreshingCredentials | None:
    """``GitLabOIDCProvider.load`` that also sends the first request (mode ``resolve``)."""
    _registered.wait(REGISTRATION_WAIT_SECONDS)  # an import-time prefetch, if any
    settings = settings_for_session(self._session, self._overrides, self._environ)
    if settings is None:
        return None
    source = EnvironmentTokenSource(settings.token_variable, settings.ci_server_url, self._environ)
    try:
        token = source.get_token()
    except TokenNotFoundError:
        if settings.token_variable:
            raise
        return None
    token.ensure_not_expired()
    exchange = STSExchange(settings, self._create_client)
    created: list[FirstFetch] = []

    def create() -> RefreshingCredentials:
        first = FirstFetch(lambda: provider_module._fetch(source, exchange))
        created.append(first)
        return RefreshingCredentials(
            fetch=first, method=METHOD, description=f"role={settings.role_arn}"
        )

    credentials = provider_module.shared_credentials.get_or_create(
        _key(settings, token.raw), create
    )
    if created and _sending_at_resolve and settings.cache_dir is None:
        exchange._sts_client()  # in the caller's thread, with the caller's session
        created[0].start()
    return credentials


# -- mode "import" -------------------------------------------------------------------------

_registered = threading.Event()
_registered.set()  # nothing to wait for unless an import-time prefetch starts
_sending_at_resolve = False


def environment_decides(environ: Mapping[str, str]) -> bool:
    """Whether the environment alone decides the settings, cheaply (no file parsing)."""
    if environ.get(EnvVar.DISABLE) or environ.get(EnvVar.CACHE):
        return False
    if not (environ.get(EnvVar.ROLE_ARN) or environ.get(EnvVar.TUTORIAL_ROLE_ARN)):
        return False
    named = environ.get(EnvVar.TOKEN_VARIABLE)
    names = (named,) if named else (EnvVar.AWS_ID_TOKEN, EnvVar.GITLAB_OIDC_TOKEN)
    if not any(environ.get(name) for name in names):
        return False  # custom token names need the issuer scan: leave them to load()
    if any(
        environ.get(name)
        for name in (
            "AWS_ACCESS_KEY_ID",  # the env provider comes first: ours would not apply
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            EnvVar.WEB_IDENTITY_TOKEN_FILE,
        )
    ):
        return False
    config = Path(environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")
    try:
        return config.expanduser().stat().st_size == 0
    except OSError:
        return True  # no config file


def _prefetch_in_background(environ: Mapping[str, str]) -> None:
    first: FirstFetch | None = None
    try:
        import botocore.session

        session = botocore.session.Session()
        settings = settings_for_session(session, {}, environ)
        if settings is None:
            return
        source = EnvironmentTokenSource(settings.token_variable, settings.ci_server_url, environ)
        token = source.get_token()
        token.ensure_not_expired()
        exchange = STSExchange(settings, session.create_client)
        candidate = FirstFetch(lambda: provider_module._fetch(source, exchange))
        candidate.mark_pending()  # before load() can see the credentials

        def create() -> RefreshingCredentials:
            nonlocal first
            first = candidate
            return RefreshingCredentials(
                fetch=candidate, method=METHOD, description=f"role={settings.role_arn}"
            )

        provider_module.shared_credentials.get_or_create(_key(settings, token.raw), create)
    except Exception:  # load() will meet the problem again and report it
        return
    finally:
        _registered.set()
    if first is not None:
        first.run()


def install(mode: str) -> None:
    """Patch the provider for ``mode`` (one of :data:`MODES`)."""
    global _sending_at_resolve
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    setattr(provider_module.GitLabOIDCProvider, "load", _load_and_send)  # noqa: B010
    if mode == "resolve":
        _sending_at_resolve = True
    elif environment_decides(os.environ):
        _registered.clear()
        threading.Thread(
            target=_prefetch_in_background,
            args=(dict(os.environ),),
            name="gitlab-botocore-prefetch",
            daemon=True,
        ).start()
