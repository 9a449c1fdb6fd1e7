"""Every error gitlab-botocore raises.

All of them derive from :class:`GitLabOIDCError`, itself a
:class:`botocore.exceptions.BotoCoreError`, so ``except BotoCoreError`` handlers
written for botocore keep catching them. Messages name the setting at fault and
what to change; they never contain the ID token or any credential.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError

TROUBLESHOOTING_URL = "https://gitlab.com/gitlab-botocore/gitlab-botocore#troubleshooting"


class GitLabOIDCError(BotoCoreError):  # type: ignore[misc]
    """Base class of every gitlab-botocore error."""

    fmt = "{message}"

    def __init__(self, message: str, **details: Any) -> None:
        # botocore rebuilds exceptions from their keyword arguments when pickling.
        super().__init__(message=message, **details)
        self.message = message


REENTRANT_CALL_MESSAGE = (
    "AWS credentials were asked for from within gitlab-botocore's own work on them, in the "
    "same thread (creating them, or calling STS for them): by a log handler or a botocore "
    "event hook that calls AWS, say, handling a record or event of that work. That call "
    "cannot wait for the work it is part of, so it fails. Make the handler skip records of "
    "the 'gitlab_botocore' and 'botocore' loggers, or ship records from another thread "
    "(logging.handlers.QueueHandler)."
)
"""The message of the error raised instead of waiting forever for oneself."""

STUCK_WAIT_MESSAGE = (
    "Waited {seconds:g} s for another thread {work}, longer than that can take: that "
    "thread is stuck. The usual cause is a log handler that calls AWS: this thread called "
    "AWS from inside it, holding its lock, while the other thread's work logged through "
    "it. Put such a handler behind a logging.handlers.QueueHandler, so that it ships "
    "records from a thread of its own."
)
"""The message of the error raised when a wait for another thread outlasts its work."""


class ConfigurationError(GitLabOIDCError):
    """A setting has an invalid value; ``setting`` names the variable or option."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message, setting=setting)
        self.setting = setting


class TokenError(GitLabOIDCError):
    """The GitLab ID token is missing, ambiguous, malformed or expired.

    ``variable`` names the environment variable that held (or should hold) it.
    """

    def __init__(self, message: str, variable: str | None = None) -> None:
        super().__init__(message, variable=variable)
        self.variable = variable


class TokenNotFoundError(TokenError):
    """No ID token where one was looked for."""


class AmbiguousTokenError(TokenError):
    """Several variables hold different GitLab ID tokens and none was chosen."""


class TokenExpiredError(TokenError):
    """The ID token expired; GitLab cannot issue a new one inside the same job."""


class STSError(GitLabOIDCError):
    """AWS STS refused ``AssumeRoleWithWebIdentity`` or could not be reached.

    ``code`` is the STS error code (``"AccessDenied"``, ``"InvalidIdentityToken"``...)
    or ``None`` for a connection failure; ``role_arn`` is the role that was asked for.
    """

    def __init__(self, message: str, code: str | None = None, role_arn: str | None = None) -> None:
        super().__init__(message, code=code, role_arn=role_arn)
        self.code = code
        self.role_arn = role_arn


class AccessDeniedError(STSError):
    """The role's trust policy does not admit this job (``AccessDenied``, ``IDPRejectedClaim``)."""


class InvalidIdentityTokenError(STSError):
    """AWS did not accept the token: audience, provider, signature, keys or expiry."""


class STSRequestError(STSError):
    """STS rejected the request for this role or account: duration, policies, region."""


class STSUnavailableError(STSError):
    """STS stayed unreachable, throttled or failing for the whole retry budget."""


class LegacyTokenWarning(FutureWarning):
    """The job uses the deprecated ``CI_JOB_JWT_V2`` instead of ``id_tokens:``."""
