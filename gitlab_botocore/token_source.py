"""Where the GitLab ID token comes from: the token sources and their discovery order.

Everything downstream of a :class:`TokenSource` only sees an
:class:`~gitlab_botocore.id_token.IdToken`. Today the token comes from the job's
environment (:class:`EnvironmentTokenSource`); a file or a callable would be another source.
"""

from __future__ import annotations

import abc
import logging
import os
import warnings
from collections.abc import Iterable, Mapping

from .exceptions import (
    AmbiguousTokenError,
    LegacyTokenWarning,
    TokenError,
    TokenNotFoundError,
)
from .id_token import IdToken
from .once import Once
from .settings import STS_AUDIENCE, EnvVar

logger = logging.getLogger(__name__)
_warned = Once()


class TokenSource(abc.ABC):
    """Produces the current GitLab ID token. Everything downstream only sees :class:`IdToken`.

    Sources are asked again on every refresh, so they must read the token fresh.
    """

    @abc.abstractmethod
    def get_token(self) -> IdToken:
        """Return the token; raise :class:`TokenNotFoundError` if there is none."""


def aws_audiences(ci_server_url: str | None, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The audiences that mark a GitLab ID token as meant for AWS: the instance URL
    (GitLab's AWS tutorial), ``sts.amazonaws.com`` and those the user listed
    (``GITLAB_BOTOCORE_AUDIENCES``)."""
    audiences = [ci_server_url.rstrip("/")] if ci_server_url else []
    audiences.append(STS_AUDIENCE)
    audiences.extend(a for a in extra if a not in audiences)
    return tuple(audiences)


class EnvironmentTokenSource(TokenSource):
    """Reads the token from the environment.

    With ``variable`` set, only that variable is read. Otherwise, in order:
    ``AWS_ID_TOKEN``, ``GITLAB_OIDC_TOKEN`` (both used as given), then tokens found by
    looking: any variable holding a JWT issued by ``CI_SERVER_URL`` (custom ``id_tokens``
    names), then the deprecated ``CI_JOB_JWT_V2``. A token found by looking is used only
    when its audience is one of :func:`aws_audiences`: a job's token for Vault is never
    sent to AWS. :meth:`skipped` names the others.
    """

    WELL_KNOWN = (EnvVar.AWS_ID_TOKEN, EnvVar.GITLAB_OIDC_TOKEN)
    LEGACY = (EnvVar.LEGACY_JOB_JWT, EnvVar.LEGACY_JOB_JWT_V1)

    def __init__(
        self,
        variable: str | None = None,
        ci_server_url: str | None = None,
        environ: Mapping[str, str] | None = None,
        audiences: Iterable[str] = (),
    ) -> None:
        self.variable = variable
        self.ci_server_url = ci_server_url.rstrip("/") if ci_server_url else None
        self._environ = os.environ if environ is None else environ
        self.audiences = aws_audiences(self.ci_server_url, audiences)
        """Audiences a token found by looking must have."""

    def get_token(self) -> IdToken:
        environ = self._environ
        if self.variable:
            if not environ.get(self.variable, "").strip():
                raise TokenNotFoundError(
                    f"{self.variable} is empty or not set, but the configuration names it as "
                    "the variable holding the GitLab ID token. Declare it under 'id_tokens:' "
                    "in the job's .gitlab-ci.yml.",
                    variable=self.variable,
                )
            return IdToken.parse(environ[self.variable], self.variable)
        for name in self.WELL_KNOWN:
            if environ.get(name, "").strip():
                token = IdToken.parse(environ[name], name)
                self._warn_if_meant_elsewhere(token)
                return token
        found, skipped = self._scan()
        for name, token in skipped.items():
            logger.debug(
                "Not using the GitLab ID token in %s: its audience (%s) is not one for AWS (%s).",
                name,
                ", ".join(token.audience) or "none",
                ", ".join(self.audiences),
            )
        if len({token.raw for token in found.values()}) > 1:
            raise AmbiguousTokenError(
                "Several variables hold different GitLab ID tokens meant for AWS: "
                f"{', '.join(sorted(found))}. Set {EnvVar.TOKEN_VARIABLE} to the one to use.",
                variable=EnvVar.TOKEN_VARIABLE,
            )
        if found:
            name = min(found)
            logger.debug(
                "Using the GitLab ID token in %s (issued by %s).", name, self.ci_server_url
            )
            return found[name]
        legacy = EnvVar.LEGACY_JOB_JWT
        legacy_token = self._parsed(legacy)
        if legacy_token is not None and legacy_token.has_audience_in(self.audiences):
            warnings.warn(
                f"Using the deprecated {legacy} (removed in GitLab 17.0). Declare an ID token "
                "under 'id_tokens:' in .gitlab-ci.yml instead.",
                LegacyTokenWarning,
                stacklevel=2,
            )
            return legacy_token
        if legacy_token is not None:
            skipped[legacy] = legacy_token
        raise TokenNotFoundError(self._not_found_message(skipped))

    def skipped(self) -> dict[str, IdToken]:
        """Tokens found by looking but not used, because their audience is not one for AWS."""
        if self.variable:
            return {}
        skipped = self._scan()[1]
        try:
            legacy = self._parsed(EnvVar.LEGACY_JOB_JWT)
        except TokenError:
            legacy = None
        if legacy is not None and not legacy.has_audience_in(self.audiences):
            skipped[EnvVar.LEGACY_JOB_JWT] = legacy
        return skipped

    def looked_at(self) -> str:
        """Where :meth:`get_token` looks, in words, for messages."""
        if self.variable:
            return self.variable
        return (
            f"{', '.join(self.WELL_KNOWN)}, any variable holding a token issued by "
            f"{EnvVar.CI_SERVER_URL} ({self.ci_server_url or 'not set'}) for the audience "
            f"{' or '.join(self.audiences)}, and {EnvVar.LEGACY_JOB_JWT}"
        )

    def _warn_if_meant_elsewhere(self, token: IdToken) -> None:
        """A token in a variable named for AWS is sent as given, but say so, once, when its
        audience is not one for AWS: GitLab's Google Cloud and Azure guides use the same
        name (``GITLAB_OIDC_TOKEN``) for tokens minted for them."""
        if not self.ci_server_url or token.has_audience_in(self.audiences):
            return
        if not _warned.first((token.variable, token.audience)):
            return
        logger.warning(
            "%s holds an ID token for the audience %s, not one of the audiences AWS accepts "
            "from a GitLab setup (%s); it is sent to STS because that variable is named for "
            "AWS. If the token is meant for another service (Google Cloud, Azure, Vault), "
            "declare a separate ID token for AWS under 'id_tokens:' in %s; if it is meant for "
            "AWS, list its audience in %s.",
            token.variable,
            ", ".join(token.audience) or "(none)",
            ", ".join(self.audiences),
            EnvVar.AWS_ID_TOKEN,
            EnvVar.AUDIENCES,
        )

    def _not_found_message(self, skipped: Mapping[str, IdToken]) -> str:
        message = (
            f"No GitLab ID token found: looked in {self.looked_at()}. Declare one under "
            f"'id_tokens:' in .gitlab-ci.yml, or name its variable in {EnvVar.TOKEN_VARIABLE}."
        )
        if skipped:
            names = "; ".join(
                f"{name} (aud {', '.join(token.audience) or 'none'})"
                for name, token in sorted(skipped.items())
            )
            message += (
                f" Not used, as meant for another audience: {names}. If one of them is meant "
                f"for AWS, name it in {EnvVar.TOKEN_VARIABLE} or list its audience in "
                f"{EnvVar.AUDIENCES}."
            )
        return message

    def _parsed(self, name: str) -> IdToken | None:
        value = self._environ.get(name, "")
        if not value.strip():
            return None
        return IdToken.parse(value, name)

    def _scan(self) -> tuple[dict[str, IdToken], dict[str, IdToken]]:
        """Tokens in custom-named variables, recognised by their issuer: those meant for
        AWS by their audience, and the others."""
        found: dict[str, IdToken] = {}
        skipped: dict[str, IdToken] = {}
        if not self.ci_server_url:
            return found, skipped
        for name, value in self._environ.items():
            if name in self.LEGACY or not value.startswith("eyJ") or value.count(".") != 2:
                continue
            try:
                token = IdToken.parse(value, name)
            except TokenError:
                continue
            if (token.issuer or "").rstrip("/") != self.ci_server_url:
                continue
            (found if token.has_audience_in(self.audiences) else skipped)[name] = token
        return found, skipped
