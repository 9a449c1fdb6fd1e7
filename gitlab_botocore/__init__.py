"""AWS credentials for boto3 and botocore from a GitLab CI/CD job's OIDC ID token.

``import gitlab_botocore`` adds a credential provider to every botocore session
created afterwards (unless ``GITLAB_BOTOCORE_DISABLE=1``). In a job that declares
``id_tokens:`` and sets ``AWS_ROLE_ARN``, ``boto3.Session()`` then assumes that role
with the job's ID token, and keeps the credentials fresh.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

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
from .settings import METHOD, install_disabled

if TYPE_CHECKING:
    from .provider import GitLabOIDCProvider

__all__ = [
    "METHOD",
    "AccessDeniedError",
    "AmbiguousTokenError",
    "ConfigurationError",
    "GitLabOIDCError",
    "GitLabOIDCProvider",
    "InvalidIdentityTokenError",
    "LegacyTokenWarning",
    "STSError",
    "STSRequestError",
    "STSUnavailableError",
    "TokenError",
    "TokenExpiredError",
    "TokenNotFoundError",
    "__version__",
    "install",
    "is_installed",
    "register",
    "uninstall",
]

# __all__ is the documented API (tests/test_public_api.py checks it against README and docs/).
# The provider module (and the exchange and credentials behind it) loads on first use, so
# importing the package next to boto3 stays cheap.
_LAZY = {
    "GitLabOIDCProvider": "provider",
}

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{module}"), name)


if not install_disabled(os.environ):
    install()
