"""The STS exchange: one ``AssumeRoleWithWebIdentity`` call, turned into credentials.

The call is unsigned (the ID token is the proof of identity) and goes through a
client made by the caller's botocore session, so proxies, CA bundles and endpoint
settings apply exactly as they do to the user's own clients.
"""

from __future__ import annotations

import datetime
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ._version import __version__
from .exceptions import TROUBLESHOOTING_URL, STSError
from .id_token import IdToken
from .redaction import redact_in_logs
from .settings import Settings, default_session_name

logger = logging.getLogger(__name__)

ClientFactory = Callable[..., Any]
"""``botocore.session.Session.create_client`` or anything with its signature."""


@dataclass(frozen=True, repr=False)
class IssuedCredentials:
    """What STS returned. ``repr`` shows the role and expiry, never the secrets."""

    access_key: str
    secret_key: str
    token: str
    expiration: datetime.datetime
    assumed_role_arn: str
    session_name: str

    @property
    def account_id(self) -> str | None:
        parts = self.assumed_role_arn.split(":")
        return parts[4] if len(parts) > 4 and parts[4] else None

    def __repr__(self) -> str:
        return (
            f"IssuedCredentials(assumed_role_arn={self.assumed_role_arn!r}, "
            f"expiration={self.expiration.isoformat()!r})"
        )


class STSExchange:
    """Exchanges an ID token for credentials of ``settings.role_arn``."""

    def __init__(self, settings: Settings, create_client: ClientFactory) -> None:
        self.settings = settings
        self._create_client = create_client
        self._client: Any = None
        self._client_lock = threading.Lock()

    def session_name_for(self, token: IdToken) -> str:
        """The configured session name, else one naming the token's project, pipeline and job."""
        return self.settings.role_session_name or default_session_name(
            token.project_id, token.pipeline_id, token.job_id
        )

    def assume_role(self, token: IdToken) -> IssuedCredentials:
        """Call STS once; raise :class:`STSError` explaining any refusal."""
        settings = self.settings
        session_name = self.session_name_for(token)
        params: dict[str, Any] = {
            "RoleArn": settings.role_arn,
            "RoleSessionName": session_name,
            "WebIdentityToken": token.raw,
            "DurationSeconds": settings.duration_seconds,
        }
        if settings.policy:
            params["Policy"] = settings.policy
        if settings.policy_arns:
            params["PolicyArns"] = [{"arn": arn} for arn in settings.policy_arns]
        redact_in_logs(token.raw)
        client = self._sts_client()
        try:
            response = client.assume_role_with_web_identity(**params)
        except ClientError as error:
            details = error.response.get("Error", {})
            code = str(details.get("Code", "Unknown"))
            raise STSError(
                _explain(code, str(details.get("Message", "")), token, settings),
                code=code,
                role_arn=settings.role_arn,
            ) from error
        except BotoCoreError as error:
            raise STSError(
                f"Could not reach AWS STS at {client.meta.endpoint_url} to assume "
                f"{settings.role_arn}: {error}. Check the job's network access to AWS and the "
                "AWS_ENDPOINT_URL_STS / region settings.",
                role_arn=settings.role_arn,
            ) from error
        issued = response["Credentials"]
        redact_in_logs(issued["SecretAccessKey"], issued["SessionToken"])
        credentials = IssuedCredentials(
            access_key=issued["AccessKeyId"],
            secret_key=issued["SecretAccessKey"],
            token=issued["SessionToken"],
            expiration=_as_utc(issued["Expiration"]),
            assumed_role_arn=response.get("AssumedRoleUser", {}).get("Arn", settings.role_arn),
            session_name=session_name,
        )
        logger.info(
            "Assumed %s as session %s with the GitLab ID token from %s; expires at %s.",
            settings.role_arn,
            session_name,
            token.variable,
            credentials.expiration.isoformat(),
        )
        return credentials

    def _sts_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._create_client(
                    "sts",
                    region_name=self.settings.region,
                    endpoint_url=self.settings.endpoint_url,
                    config=Config(
                        signature_version=UNSIGNED,
                        user_agent_extra=f"gitlab-botocore/{__version__}",
                    ),
                )
            return self._client


def _as_utc(value: Any) -> datetime.datetime:
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)  # type: ignore[no-any-return]


def _explain(code: str, message: str, token: IdToken, settings: Settings) -> str:
    return (
        f"AWS STS refused to let this job assume {settings.role_arn}: {code}: {message} "
        f"The GitLab ID token from {token.variable or 'the token source'} has {token.describe()}. "
        f"See {TROUBLESHOOTING_URL}"
    )
