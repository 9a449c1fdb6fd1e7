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
import re
import ssl
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, SSLError
from botocore.exceptions import ConnectionError as BotoConnectionError

from . import __version__
from .backoff import Backoff
from .exceptions import ConfigurationError
from .id_token import IdToken
from .redaction import Secret, redact, redact_in_logs
from .settings import EnvVar, Settings, default_session_name
from .sts_client import PrivateSession, warn_if_plain_http
from .values import ReadOnlyValue

if TYPE_CHECKING:
    from .explanations import UnexpectedReplyError

# The explanations of refusals and failures (.explanations) are imported where a call
# fails: an exchange that succeeds does not load them.

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 20  # STS may wait several seconds for the issuer's keys
MAX_CHAINED_SECONDS = 3600
RETRY_BACKOFF = Backoff(first=0.2, ceiling=5.0)
"""Between STS attempts within the retry budget: 0.1-0.2 s after the first, up to 2.5-5 s."""
THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
)
# A refused connection or an unknown host name is rarely fixed by waiting: a few quick
# attempts, then fail (botocore's own provider fails at once). Throttling, 5xx and the
# identity provider's hiccups keep the whole retry budget.
CONNECTION_ATTEMPTS = 3
MAX_SESSION_SECONDS = 12 * 3600  # STS's longest session
MAX_CLOCK_SKEW_SECONDS = 300  # AWS rejects signatures from clocks further off than this
# accessKeyIdType in botocore's STS model: 16 to 128 word characters. No prefix check:
# AWS issues ASIA... keys, but local STS stand-ins (moto, LocalStack) use others.
# Compiled on first use (re caches them): they check the answer, which comes after the request.
_ACCESS_KEY_ID = r"(?a)\w{16,128}"
_PRINTABLE = r"[\x21-\x7e]+"  # no spaces, newlines or control characters
_EXCERPT_CHARS = 120

if TYPE_CHECKING:  # type aliases cost a fresh process time at import; annotations are strings
    T = TypeVar("T")
    ClientFactory = Callable[..., Any]
    """``botocore.session.Session.create_client`` or anything with its signature."""


class IssuedCredentials(ReadOnlyValue):
    """What STS returned: immutable, compared and hashed by value. ``repr`` shows the role
    and expiry, never the secrets.

    ``secret_key`` and ``token`` are held as :class:`~gitlab_botocore.redaction.Secret`, so
    they stay hidden wherever they travel (botocore's credentials, a traceback's locals).
    A :class:`~gitlab_botocore.values.ReadOnlyValue` rather than a frozen dataclass, whose
    generated methods a job's fresh process would compile at import (~0.5 ms).
    """

    __slots__ = (
        "access_key",
        "assumed_role_arn",
        "expiration",
        "secret_key",
        "session_name",
        "token",
    )
    access_key: str
    secret_key: str
    token: str
    expiration: datetime.datetime
    assumed_role_arn: str
    session_name: str

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        token: str,
        expiration: datetime.datetime,
        assumed_role_arn: str,
        session_name: str,
    ) -> None:
        self._set(
            access_key=access_key,
            secret_key=Secret(secret_key),
            token=Secret(token),
            expiration=expiration,
            assumed_role_arn=assumed_role_arn,
            session_name=session_name,
        )

    @property
    def account_id(self) -> str | None:
        parts = self.assumed_role_arn.split(":")
        return parts[4] if len(parts) > 4 and parts[4] else None

    def as_metadata(self) -> dict[str, Any]:
        """These credentials in the shape botocore's refreshable credentials load."""
        return {
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "token": self.token,
            "expiry_time": self.expiration.isoformat(),
            "account_id": self.account_id,
        }

    def __repr__(self) -> str:
        return (
            f"IssuedCredentials(assumed_role_arn={self.assumed_role_arn!r}, "
            f"expiration={self.expiration.isoformat()!r})"
        )


def longest_exchange_seconds(settings: Settings, *, retry: bool = True) -> float:
    """How long :meth:`STSExchange.assume_role` can take at most: with ``retry``, the retry
    budget, then one last attempt per role that may run to its timeouts; without, one
    attempt per role."""
    attempt = CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS
    budget = settings.retry_budget_seconds if retry else 0.0
    return budget + attempt * (1 + len(settings.chain_role_arns))


def is_transient(code: str, message: str, status: int) -> bool:
    """Whether an STS error is worth retrying: throttling, server errors, and the two
    identity-provider failures AWS documents as transient."""
    if code in THROTTLING_CODES or code == "IDPCommunicationError":
        return True
    if status == 429 or status >= 500:
        return True
    from .explanations import VERIFICATION_KEY_PHRASE

    return code == "InvalidIdentityToken" and VERIFICATION_KEY_PHRASE in message.lower()


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
        self.request_sent = threading.Event()
        """Set once a request of this exchange has been handed to the network (botocore's
        ``before-send``): the work of building it is done."""
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
            "WebIdentityToken": Secret(token.raw),  # botocore sends the value, shows no repr
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
        credentials = _call_with_retries(
            lambda: _issued(
                client.assume_role_with_web_identity(**params), settings.role_arn, session_name
            ),
            "AssumeRoleWithWebIdentity",
            lambda code, message, attempts: _explain().sts_refusal(
                code, message, token, settings, attempts
            ),
            lambda problem, attempts: _explain().sts_unreachable(
                problem, client.meta.endpoint_url, settings, attempts
            ),
            deadline,
        )
        for role_arn in settings.chain_role_arns:
            credentials = self._assume_chained_role(credentials, role_arn, session_name, deadline)
        logger.debug(
            "Assumed %s as session %s with the GitLab ID token from %s.",
            credentials.assumed_role_arn,
            session_name,
            token.variable,
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
        return _call_with_retries(
            lambda: _issued(
                client.assume_role(
                    RoleArn=role_arn,
                    RoleSessionName=session_name,
                    # AWS caps sessions of chained roles at one hour.
                    DurationSeconds=min(self.settings.duration_seconds, MAX_CHAINED_SECONDS),
                ),
                role_arn,
                session_name,
            ),
            "AssumeRole",
            lambda code, message, attempts: _explain().chained_refusal(
                code, message, source.assumed_role_arn, role_arn, attempts
            ),
            lambda problem, attempts: _explain().sts_unreachable(
                problem, client.meta.endpoint_url, self.settings, attempts
            ),
            deadline,
        )

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
            client = create_client(
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
            endpoint = (
                f"the 'endpoint_url' argument ({self.settings.endpoint_url!r})"
                if self.settings.endpoint_url
                else f"{EnvVar.ENDPOINT_URL_STS}, {EnvVar.ENDPOINT_URL} or the profile's "
                "'endpoint_url' and 'services'"
            )
            raise ConfigurationError(
                f"Cannot make an STS client for region {self.settings.region!r}: {error}. "
                f"Check the region ({EnvVar.DEFAULT_REGION}, {EnvVar.REGION}) and the "
                f"endpoint: {endpoint}.",
                setting="endpoint_url" if self.settings.endpoint_url else "region",
            ) from error
        client.meta.events.register("before-send.sts", self._on_send)
        return client

    def _on_send(self, **_: Any) -> None:
        self.request_sent.set()  # returns None: botocore goes on and sends the request


def _call_with_retries(
    call: Callable[[], T],
    operation: str,
    refusal: Callable[[str, str, int], Exception],
    unreachable: Callable[[Exception, int], Exception],
    deadline: float,
) -> T:
    """Run ``call``; retry transient failures until ``deadline`` (a monotonic time).

    Every failure ends as the exception ``refusal`` (an STS error answer) or
    ``unreachable`` (no answer, or one that is not STS's) makes. botocore's own exception
    is not chained to it: its frames hold the request, which a traceback printing local
    variables would show.
    """
    attempt = connection_failures = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as error:
            verdict = _verdict(error, attempt, refusal, unreachable)
            if verdict is None:
                raise  # no failure of STS or the network: a bug, keep its traceback
            failure, kind, reason = verdict
        if kind == _CONNECTION:
            connection_failures += 1
            if connection_failures >= CONNECTION_ATTEMPTS:
                kind = _FINAL
        wait = RETRY_BACKOFF.seconds(attempt)
        if kind == _FINAL or time.monotonic() + wait > deadline:
            raise failure from None
        logger.info(
            "STS %s attempt %d failed (%s); retrying in %.1f s.", operation, attempt, reason, wait
        )
        time.sleep(wait)


_FINAL, _CONNECTION, _RETRY = "final", "connection", "retry"


def _unexpected_reply(message: str, **details: Any) -> UnexpectedReplyError:
    from .explanations import UnexpectedReplyError

    return UnexpectedReplyError(message, **details)


def _explain() -> Any:
    """The explanations module, loaded on the first failure."""
    from . import explanations

    return explanations


def _verdict(
    error: Exception,
    attempt: int,
    refusal: Callable[[str, str, int], Exception],
    unreachable: Callable[[Exception, int], Exception],
) -> tuple[Exception, str, str] | None:
    """The exception ``error`` becomes, whether to retry (``_FINAL``, ``_CONNECTION``:
    a few quick attempts, ``_RETRY``: the whole budget) and the reason to log; ``None``
    when ``error`` is neither an STS answer nor a network failure."""
    if isinstance(error, ClientError):
        code, message, status = _error_details(error)
        kind = _RETRY if is_transient(code or "", message, status) else _FINAL
        if code is None:  # an error page, not an STS error document
            page = _unexpected_error_page(error, status)
            return unreachable(page, attempt), kind, f"HTTP {status}"
        return refusal(code, redact(message), attempt), kind, code
    if isinstance(error, (HTTPClientError, BotoConnectionError)):
        if is_certificate_failure(error):
            kind = _FINAL
        else:
            kind = _CONNECTION if isinstance(error, BotoConnectionError) else _RETRY
        return unreachable(error, attempt), kind, type(error).__name__
    from .explanations import UnexpectedReplyError

    reply = error if isinstance(error, UnexpectedReplyError) else _unparsable_reply(error)
    if reply is None:
        return None
    return unreachable(reply, attempt), _RETRY if reply.transient else _FINAL, "unexpected reply"


def is_certificate_failure(error: BaseException) -> bool:
    """Whether ``error`` is a failed TLS certificate verification (never transient)."""
    if not isinstance(error, SSLError):
        return False
    seen: BaseException | None = error
    for _ in range(10):  # botocore wraps urllib3's error, which wraps the ssl module's
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        wrapped = getattr(seen, "kwargs", {}).get("error")
        seen = wrapped if isinstance(wrapped, BaseException) else seen.__cause__ or seen.__context__
    return "certificate verify failed" in str(error).lower()


def _error_details(error: ClientError) -> tuple[str | None, str, int]:
    """Code, message and HTTP status of an STS error; ``None`` as the code when the body
    was no STS error document (botocore then makes up ``Unknown`` or the status)."""
    response = error.response
    details = response.get("Error") or {}
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code = details.get("Code")
    if not code or code == "Unknown" or code == str(status):
        return None, "", status
    return str(code), str(details.get("Message") or ""), status


def _unexpected_error_page(error: ClientError, status: int) -> UnexpectedReplyError:
    from .explanations import UnexpectedReplyError

    metadata = error.response.get("ResponseMetadata", {})
    content_type = (metadata.get("HTTPHeaders") or {}).get("content-type") or "no content type"
    details = error.response.get("Error") or {}
    text = str(error.response.get("body") or details.get("Message") or "")
    return UnexpectedReplyError(
        f"HTTP {status} ({_printable(content_type)}), an error page that is not an STS error"
        + (f": {_excerpt(text)}" if text.strip() else ""),
        transient=is_transient("", "", status),
    )


def _unparsable_reply(error: BaseException) -> UnexpectedReplyError | None:
    """The reply botocore failed to parse, if ``error`` came from botocore's parser.

    botocore's ``ResponseParserError`` (and the ``KeyError`` or ``ValueError`` some bodies
    cause) carry no HTTP status, and botocore 1.27 emits no event between receiving and
    parsing a reply, so the reply is read from the parser's frame in the traceback.
    """
    from .explanations import UnexpectedReplyError

    response: Any = None
    traceback = error.__traceback__
    while traceback is not None and response is None:
        frame = traceback.tb_frame
        if frame.f_code.co_name == "parse" and frame.f_globals.get("__name__") == (
            "botocore.parsers"
        ):
            response = frame.f_locals.get("response")
        traceback = traceback.tb_next
    del traceback
    if not isinstance(response, dict) or "status_code" not in response:
        return None
    status = int(response["status_code"])
    headers = response.get("headers") or {}
    body = response.get("body") or b""
    body = body if isinstance(body, bytes) else str(body).encode()
    content_type = _printable(str(headers.get("content-type") or "no content type"))
    announced = str(headers.get("content-length") or "")
    size = f"{len(body)} bytes"
    if announced.isdigit() and len(body) < int(announced):
        size += f" of {announced} announced"
        cut_short = True
    else:  # STS's own answer, cut off on the way (a proxy may fix up the length)
        cut_short = _looks_like_sts(body) and not body.rstrip().endswith(b"Response>")
    if cut_short:
        what = f"an STS document cut short: {_excerpt(body)}"
    elif _looks_like_sts(body):
        what = f"a malformed STS document: {_excerpt(body)}"
    elif body.strip():
        what = f"a body STS would not send: {_excerpt(body)}"
    else:
        what = "an empty body"
    return UnexpectedReplyError(
        f"HTTP {status} ({content_type}, {size}), {what}",
        transient=is_transient("", "", status) or cut_short,
    )


def _looks_like_sts(body: bytes) -> bool:
    return re.search(rb"<(AssumeRole\w*Response|ErrorResponse)\b", body[:512]) is not None


def _excerpt(body: bytes | str) -> str:
    """The start of a reply, safe to show: secrets blanked, one line, bounded."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(redact(_printable(text[: _EXCERPT_CHARS * 4])).split())
    if len(text) > _EXCERPT_CHARS:
        text = text[:_EXCERPT_CHARS] + "..."
    return repr(text)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


def _issued(response: Mapping[str, Any], role_arn: str, session_name: str) -> IssuedCredentials:
    """Credentials from a parsed STS reply, checked; :class:`UnexpectedReplyError` if unusable."""
    issued = response.get("Credentials")
    if isinstance(issued, dict):
        for name in ("SecretAccessKey", "SessionToken"):
            if isinstance(issued.get(name), str):
                issued[name] = Secret(issued[name])  # before anything below can raise
                redact_in_logs(issued[name])
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
    if not isinstance(issued, dict):
        raise _unexpected_reply(f"HTTP {status} without <Credentials>")
    missing = [
        name
        for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
        if not issued.get(name)
    ]
    if missing:
        raise _unexpected_reply(f"HTTP {status}, credentials without {', '.join(missing)}")
    access_key = issued["AccessKeyId"]
    if not isinstance(access_key, str) or not re.fullmatch(_ACCESS_KEY_ID, access_key):
        shown = _excerpt(str(access_key)[:40])
        raise _unexpected_reply(
            f"an AccessKeyId that is not 16 to 128 letters, digits or underscores ({shown})"
        )
    for name in ("SecretAccessKey", "SessionToken"):
        if not re.fullmatch(_PRINTABLE, issued[name]):
            raise _unexpected_reply(
                f"a {name} that holds spaces, line breaks or control characters "
                "(the value is not shown)"
            )
    arn = response.get("AssumedRoleUser", {}).get("Arn") or role_arn
    if not isinstance(arn, str) or not arn.isprintable():
        raise _unexpected_reply(
            f"an AssumedRoleUser ARN with control characters ({_excerpt(str(arn))})"
        )
    try:
        expiration = _as_utc(issued["Expiration"])
    except (TypeError, ValueError, AttributeError):
        raise _unexpected_reply(
            f"an Expiration that is no time ({_excerpt(str(issued['Expiration']))})"
        ) from None
    _check_expiration(expiration)
    return IssuedCredentials(
        access_key=access_key,
        secret_key=issued["SecretAccessKey"],
        token=issued["SessionToken"],
        expiration=expiration,
        assumed_role_arn=arn,
        session_name=session_name,
    )


def _check_expiration(expiration: datetime.datetime) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    latest = now + datetime.timedelta(seconds=MAX_SESSION_SECONDS + MAX_CLOCK_SKEW_SECONDS)
    if now < expiration <= latest:
        return
    when = "already expired" if expiration <= now else "expire more than 12 hours from now"
    raise _unexpected_reply(
        f"credentials that {when} (Expiration {expiration:%Y-%m-%dT%H:%M:%SZ}; this machine's "
        f"clock says {now:%Y-%m-%dT%H:%M:%SZ})",
        hint=(
            "Either the job's clock is wrong (check it against an NTP server) or something "
            f"other than AWS STS answered (check {EnvVar.ENDPOINT_URL_STS} and any proxy)."
        ),
    )


def _as_utc(value: Any) -> datetime.datetime:
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime.datetime):
        raise TypeError(f"not a time: {type(value).__name__}")
    moment: datetime.datetime = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)
