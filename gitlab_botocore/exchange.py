"""The STS exchange: one ``AssumeRoleWithWebIdentity`` call, turned into credentials.

The call is unsigned (the ID token is the proof of identity) and goes through a
client made by the caller's botocore session, so proxies, CA bundles and endpoint
settings apply exactly as they do to the user's own clients.

botocore sessions are not thread-safe, and the exchange runs in whichever thread
refreshes. So the caller's session is used only while the exchange is built, in the
caller's thread: it makes the unsigned STS client there (botocore clients are
thread-safe), and what code set on the session is copied for a private session that
makes any later client (the signed ones of role chaining).
"""

from __future__ import annotations

import datetime
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ._version import __version__
from .exceptions import ConfigurationError
from .explanations import (
    VERIFICATION_KEY_PHRASE,
    chained_refusal,
    sts_refusal,
    sts_unreachable,
)
from .id_token import IdToken
from .redaction import redact_in_logs
from .settings import EnvVar, Settings, default_session_name
from .sts_client import PrivateSession, warn_if_plain_http

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 20  # STS may wait several seconds for the issuer's keys
MAX_CHAINED_SECONDS = 3600
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 5.0
THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
)

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


def is_transient(code: str, message: str, status: int) -> bool:
    """Whether an STS error is worth retrying: throttling, server errors, and the two
    identity-provider failures AWS documents as transient."""
    if code in THROTTLING_CODES or code == "IDPCommunicationError":
        return True
    if status == 429 or status >= 500:
        return True
    return code == "InvalidIdentityToken" and VERIFICATION_KEY_PHRASE in message.lower()


def backoff_seconds(attempt: int) -> float:
    """Exponential back-off with jitter: half fixed, half random, so waits still grow."""
    ceiling = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class STSExchange:
    """Exchanges an ID token for credentials of ``settings.role_arn``.

    Build it in the thread that uses ``session``: the constructor is the only place that
    touches the session. With ``use_session_clients`` (botocore sessions) it makes the
    unsigned STS client from ``session`` at once, as botocore's own provider would on
    first use, reusing the models the session has loaded. Otherwise (aiobotocore
    sessions, whose clients are asynchronous) a private botocore session configured
    like ``session`` makes it on first use.
    """

    def __init__(
        self, settings: Settings, session: Any, *, use_session_clients: bool = True
    ) -> None:
        self.settings = settings
        self._private = PrivateSession(session)
        self._client: Any = (
            self._make_client(session.create_client, signed=False) if use_session_clients else None
        )

    def session_name_for(self, token: IdToken) -> str:
        """The configured session name, else one naming the token's project, pipeline and job."""
        return self.settings.role_session_name or default_session_name(
            token.project_id, token.pipeline_id, token.job_id
        )

    def assume_role(self, token: IdToken, *, retry: bool = True) -> IssuedCredentials:
        """Call STS, retrying transient failures; raise :class:`STSError` explaining a refusal.

        Retries use jittered exponential back-off within ``settings.retry_budget_seconds``
        and never past the token's expiry. With ``retry=False`` each call is attempted
        once and its failure raised at once: the caller decides when to try again. With
        ``settings.chain_role_arns``, each of those roles is then assumed in turn with the
        previous role's credentials.
        """
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
        budget = min(settings.retry_budget_seconds, max(token.seconds_left(), 0.0))
        deadline = time.monotonic() + (budget if retry else 0.0)
        client = self._sts_client()
        response = _call_with_retries(
            lambda: client.assume_role_with_web_identity(**params),
            "AssumeRoleWithWebIdentity",
            lambda code, message, attempts: sts_refusal(code, message, token, settings, attempts),
            lambda reason, attempts: sts_unreachable(
                reason, client.meta.endpoint_url, settings, attempts
            ),
            deadline,
        )
        credentials = _issued(response, settings.role_arn, session_name)
        for role_arn in settings.chain_role_arns:
            credentials = self._assume_chained_role(credentials, role_arn, session_name, deadline)
        logger.info(
            "Assumed %s as session %s with the GitLab ID token from %s; expires at %s.",
            credentials.assumed_role_arn,
            session_name,
            token.variable,
            credentials.expiration.isoformat(),
        )
        return credentials

    def _assume_chained_role(
        self, source: IssuedCredentials, role_arn: str, session_name: str, deadline: float
    ) -> IssuedCredentials:
        """``AssumeRole`` of the next role in the chain, signed with ``source``."""
        client = self._make_client(
            self._private.create_client,
            signed=True,
            aws_access_key_id=source.access_key,
            aws_secret_access_key=source.secret_key,
            aws_session_token=source.token,
        )
        response = _call_with_retries(
            lambda: client.assume_role(
                RoleArn=role_arn,
                RoleSessionName=session_name,
                # AWS caps sessions of chained roles at one hour.
                DurationSeconds=min(self.settings.duration_seconds, MAX_CHAINED_SECONDS),
            ),
            "AssumeRole",
            lambda code, message, attempts: chained_refusal(
                code, message, source.assumed_role_arn, role_arn, attempts
            ),
            lambda reason, attempts: sts_unreachable(
                reason, client.meta.endpoint_url, self.settings, attempts
            ),
            deadline,
        )
        return _issued(response, role_arn, session_name)

    def _sts_client(self) -> Any:
        client = self._client
        if client is None:
            # Only aiobotocore's path gets here. Fetches are single-flight, and a second
            # client made by a race would merely be wasted.
            client = self._client = self._make_client(self._private.create_client, signed=False)
        warn_if_plain_http(client.meta.endpoint_url)
        return client

    def _make_client(
        self, create_client: ClientFactory, *, signed: bool, **credentials: str
    ) -> Any:
        try:
            return create_client(
                "sts",
                region_name=self.settings.region,
                endpoint_url=self.settings.endpoint_url,
                config=Config(
                    signature_version=None if signed else UNSIGNED,
                    user_agent_extra=f"gitlab-botocore/{__version__}",
                    # We retry, with our own policy (see is_transient).
                    retries={"total_max_attempts": 1},
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    read_timeout=READ_TIMEOUT_SECONDS,
                ),
                **credentials,
            )
        except (BotoCoreError, ValueError) as error:
            raise ConfigurationError(
                f"Cannot make an STS client for region {self.settings.region!r} and "
                f"endpoint {self.settings.endpoint_url!r}: {error}. Check the region "
                f"({EnvVar.REGION}, AWS_DEFAULT_REGION) and {EnvVar.ENDPOINT_URL_STS}.",
                setting="region",
            ) from error


def _call_with_retries(
    call: Callable[[], Any],
    operation: str,
    refusal: Callable[[str, str, int], Exception],
    unreachable: Callable[[str, int], Exception],
    deadline: float,
) -> Any:
    """Run ``call``; retry transient failures until ``deadline`` (a monotonic time)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except ClientError as error:
            details = error.response.get("Error", {})
            code = str(details.get("Code", "Unknown"))
            message = str(details.get("Message", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            failure = refusal(code, message, attempt)
            if not is_transient(code, message, status):
                raise failure from error
            reason = code
        except (HTTPClientError, BotoConnectionError) as error:
            failure = unreachable(str(error), attempt)
            reason = type(error).__name__
        wait = backoff_seconds(attempt)
        if time.monotonic() + wait > deadline:
            raise failure
        logger.info(
            "STS %s attempt %d failed (%s); retrying in %.1f s.", operation, attempt, reason, wait
        )
        time.sleep(wait)


def _issued(response: Mapping[str, Any], role_arn: str, session_name: str) -> IssuedCredentials:
    issued = response["Credentials"]
    redact_in_logs(issued["SecretAccessKey"], issued["SessionToken"])
    return IssuedCredentials(
        access_key=issued["AccessKeyId"],
        secret_key=issued["SecretAccessKey"],
        token=issued["SessionToken"],
        expiration=_as_utc(issued["Expiration"]),
        assumed_role_arn=response.get("AssumedRoleUser", {}).get("Arn", role_arn),
        session_name=session_name,
    )


def _as_utc(value: Any) -> datetime.datetime:
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)  # type: ignore[no-any-return]
