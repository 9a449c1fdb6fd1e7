"""AWS credentials for boto3 and botocore from a GitLab CI/CD job's OIDC ID token.

``import gitlab_botocore`` adds a credential provider to every botocore session
created afterwards (unless ``GITLAB_BOTOCORE_DISABLE=1``). In a job that declares
``id_tokens:`` and sets ``AWS_ROLE_ARN``, ``boto3.Session()`` then assumes that role
with the job's ID token, and keeps the credentials fresh.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .exceptions import (
    AccessDeniedError,
    AmbiguousTokenError,
    ConfigurationError,
    GitLabOIDCError,
    InvalidIdentityTokenError,
    LegacyTokenWarning,
    STSError,
    STSRequestError,
    STSUnavailableError,
    TokenError,
    TokenExpiredError,
    TokenNotFoundError,
)
from .installation import install, is_installed, register, uninstall
from .settings import METHOD, EnvVar, Settings, install_disabled

if TYPE_CHECKING:
    from .id_token import EnvironmentTokenSource, IdToken, TokenSource
    from .provider import GitLabOIDCProvider

__all__ = [
    "METHOD",
    "AccessDeniedError",
    "AmbiguousTokenError",
    "ConfigurationError",
    "EnvVar",
    "EnvironmentTokenSource",
    "GitLabOIDCError",
    "GitLabOIDCProvider",
    "IdToken",
    "InvalidIdentityTokenError",
    "LegacyTokenWarning",
    "STSError",
    "STSRequestError",
    "STSUnavailableError",
    "Settings",
    "TokenError",
    "TokenExpiredError",
    "TokenNotFoundError",
    "TokenSource",
    "__version__",
    "install",
    "is_installed",
    "register",
    "uninstall",
]

# PyJWT (and the cryptography it may pull in) loads only when credentials are first
# resolved, so importing the package next to boto3 stays cheap.
_LAZY = {
    "EnvironmentTokenSource": "id_token",
    "IdToken": "id_token",
    "TokenSource": "id_token",
    "GitLabOIDCProvider": "provider",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


if not install_disabled(os.environ):
    install()
