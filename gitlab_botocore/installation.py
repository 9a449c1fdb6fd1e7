"""Putting the provider into botocore sessions: for all of them, or for one.

botocore calls initializers at the end of ``Session.__init__``, before boto3 sets
the profile and without any error handling. So the initializer only swaps the
lazily built ``credential_provider`` component for one that, when first needed,
builds botocore's own resolver and inserts our provider; any failure is logged
and leaves the session as botocore made it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import botocore
import botocore.credentials

from .settings import METHOD, check_keywords, require_in_effect

if TYPE_CHECKING:  # typing_extensions is not a runtime dependency (Python 3.9)
    from typing_extensions import Unpack

    from .settings import Overrides

logger = logging.getLogger(__name__)

# Ours goes before this provider, and so before every provider after it: shared
# credentials and config files, container and instance metadata.
INSERT_BEFORE = "assume-role-with-web-identity"

_lock = threading.Lock()
_installed = False


def install() -> None:
    """Give every botocore session created from now on the GitLab OIDC provider.

    boto3's default session (``boto3.client(...)``), if it already exists, gets the
    provider too unless it has already found credentials elsewhere: the order of
    ``import boto3`` and ``import gitlab_botocore`` does not matter.

    Idempotent. ``import gitlab_botocore`` calls it unless ``GITLAB_BOTOCORE_DISABLE=1``.
    """
    global _installed
    with _lock:
        if _installed:
            return
        botocore.register_initializer(_initialize_session)
        _installed = True
    try:
        _adopt_boto3_default_session()
    except Exception:  # never let this break the import
        logger.warning(
            "gitlab-botocore could not add its provider to boto3's default session.",
            exc_info=True,
        )


def uninstall() -> None:
    """Stop adding the provider to new sessions and forget shared credentials.

    Sessions created before keep the provider they have.
    """
    global _installed
    with _lock:
        if _installed:
            botocore.unregister_initializer(_initialize_session)
            _installed = False
    from .provider import credentials_registry, forget_warnings

    credentials_registry.clear()
    forget_warnings()


def is_installed() -> bool:
    """Whether new botocore sessions get the provider."""
    return _installed


def register(session: Any, **overrides: Unpack[Overrides]) -> None:
    """Add the provider to one session (botocore or boto3), with overrides that win over
    the environment and the config file.

    Each keyword overrides one setting (see ``gitlab_botocore.settings.SETTINGS`` and
    docs/configuration.md); ``None`` is the same as leaving it out. Call it before the
    session first resolves credentials. An unknown keyword raises ``TypeError`` here;
    invalid values raise :class:`~gitlab_botocore.ConfigurationError` when credentials
    are resolved.
    """
    checked = check_keywords(overrides)
    botocore_session = getattr(session, "_session", session)  # boto3.Session wraps one
    _wrap_credential_provider(botocore_session, checked)


def _adopt_boto3_default_session() -> None:
    """Add the provider to boto3's default session if boto3 made one before we were
    installed and it has no credentials yet (boto3 itself is not imported here)."""
    boto3 = sys.modules.get("boto3")
    default = getattr(boto3, "DEFAULT_SESSION", None)
    session = getattr(default, "_session", None)  # the botocore session it wraps
    if session is None:
        return
    # botocore keeps resolved credentials; None means "not resolved yet, or nothing found",
    # and then it asks the resolver again next time.
    resolved = getattr(session, "_credentials", None)
    if resolved is not None:
        logger.debug(
            "boto3's default session already has credentials (%s): leaving it as it is.",
            getattr(resolved, "method", "unknown"),
        )
        return
    resolver = session.get_component("credential_provider")
    if METHOD in [provider.METHOD for provider in resolver.providers]:
        return
    _add_provider(resolver, session, {})
    logger.debug("Added the provider to boto3's existing default session.")


def _initialize_session(session: Any) -> None:
    try:
        _wrap_credential_provider(session, {})
    except Exception:  # botocore would let this break every session
        logger.warning("gitlab-botocore could not install its provider.", exc_info=True)


def _wrap_credential_provider(session: Any, overrides: dict[str, Any]) -> None:
    build_default = getattr(session, "_create_credential_resolver", None)

    def build_resolver() -> Any:
        resolver = (
            build_default()
            if build_default is not None
            else botocore.credentials.create_credential_resolver(session)
        )
        try:
            _add_provider(resolver, session, overrides)
        except Exception:
            logger.warning("gitlab-botocore could not add its provider.", exc_info=True)
        return resolver

    session.lazy_register_component("credential_provider", build_resolver)


def _add_provider(resolver: Any, session: Any, overrides: dict[str, Any]) -> None:
    """Our provider for ``session``, in its place in ``resolver`` (first when required)."""
    _insert(
        resolver,
        _provider_for(session, overrides),
        first=require_in_effect(overrides, os.environ),
    )


def _provider_for(session: Any, overrides: dict[str, Any]) -> Any:
    if _is_aiobotocore(session):
        # aiobotocore awaits provider.load(): it needs the asynchronous provider.
        from .aio import GitLabOIDCAioProvider

        return GitLabOIDCAioProvider(session, overrides)
    from .provider import GitLabOIDCProvider

    return GitLabOIDCProvider(session, overrides)


def _is_aiobotocore(session: Any) -> bool:
    return any(cls.__module__.startswith("aiobotocore.") for cls in type(session).__mro__)


def _insert(resolver: Any, provider: Any, *, first: bool = False) -> None:
    """Put ``provider`` before ``assume-role-with-web-identity``, else right after ``env``;
    with ``first`` (GitLab credentials required), ahead of every provider, so that neither
    static keys nor a profile's role can stand in for the job's role.

    A chain with neither anchor is one that code narrowed on purpose (say, to a single
    provider): it is left exactly as it is.
    """
    methods = [p.METHOD for p in resolver.providers]
    anchors = (INSERT_BEFORE, "env")
    if not any(anchor in methods for anchor in anchors):
        logger.debug(
            "gitlab-botocore leaves this credential chain alone: it has neither %s nor %s "
            "(providers: %s).",
            *anchors,
            ", ".join(methods) or "none",
        )
        return
    if provider.METHOD in methods:
        resolver.remove(provider.METHOD)
        methods.remove(provider.METHOD)
    if first:
        resolver.providers.insert(0, provider)
    elif INSERT_BEFORE in methods:
        resolver.insert_before(INSERT_BEFORE, provider)
    else:
        resolver.insert_after("env", provider)
