"""A local STS that verifies web identity tokens like AWS does, backed by a moto server.

moto's own STS accepts any token and ignores trust policies. :class:`VerifyingSTS` sits in
front of moto: it checks ``AssumeRoleWithWebIdentity`` requests against the OIDC providers
and roles stored in moto's IAM, answers failures in STS's XML error format
(:mod:`~gitlab_botocore.testing.sts_wire`), plays scripted
:class:`~gitlab_botocore.testing.faults.Fault` values, and forwards everything else (and
every request it accepts) to moto unchanged. :class:`~gitlab_botocore.testing.aws.FakeAWS`
starts moto and this server together.
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import jwt

from gitlab_botocore.testing._server import LocalServer
from gitlab_botocore.testing.faults import Fault
from gitlab_botocore.testing.sts_wire import (
    ACTION,
    MSG_AUDIENCE,
    MSG_BAD_SIGNATURE,
    MSG_MAX_SESSION,
    MSG_NO_PROVIDER,
    MSG_NOT_A_JWT,
    MSG_NOT_AUTHORIZED,
    MSG_VERIFICATION_KEY,
    ReplyError,
    error_body,
    validation_problems,
)
from gitlab_botocore.tools.trust_policy import (
    claim_values,
    condition_context,
    trust_policy_allows,
)

__all__ = [
    "DUMMY_ACCESS_KEY",
    "DUMMY_SECRET_KEY",
    "REGION",
    "AssumeRoleCall",
    "VerifyingSTS",
]

logger = logging.getLogger(__name__)

DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"  # noqa: S105 - moto accepts any key; this one is public
REGION = "us-east-1"

_SUPPORTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
_ERROR_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_DEFAULT_MAX_SESSION = 3600
_HOP_BY_HOP = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}
)


@dataclasses.dataclass(frozen=True)
class AssumeRoleCall:
    """What one ``AssumeRoleWithWebIdentity`` request asked for, and how it ended.

    ``claims`` come from an unverified decode; the token itself is not kept. ``outcome`` is
    ``"ok"``, an error code, ``"dropped"``, or ``"HTTP <status> reply"`` for a ``Fault.reply``.
    """

    role_arn: str
    session_name: str
    duration_seconds: int | None
    claims: Mapping[str, object]
    outcome: str
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sts: VerifyingSTS) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.sts = sts


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.sts._handle(self)

    def do_GET(self) -> None:
        self.server.sts._handle(self)

    def send_bytes(
        self, status: int, body: bytes, content_type: str, request_id: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if request_id:
            self.send_header("x-amzn-RequestId", request_id)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean; VerifyingSTS.calls records the interesting traffic."""


class VerifyingSTS(LocalServer):
    """An STS endpoint on 127.0.0.1 that verifies web identity tokens and delegates to moto.

    ``moto_url`` is a running moto server; its IAM holds the OIDC providers and roles.
    Use as a context manager or call ``start()``/``stop()``.
    """

    def __init__(self, moto_url: str, *, fetch_timeout: float = 5.0) -> None:
        import boto3

        super().__init__()
        self.moto_url = moto_url.rstrip("/")
        self.fetch_timeout = fetch_timeout
        # Explicit keys keep every credential chain (ours included) out of the picture.
        self._iam: Any = boto3.session.Session(
            aws_access_key_id=DUMMY_ACCESS_KEY,
            aws_secret_access_key=DUMMY_SECRET_KEY,
            region_name=REGION,
        ).client("iam", endpoint_url=self.moto_url, region_name=REGION)
        self._lock = threading.Lock()
        self._faults: collections.deque[Fault] = collections.deque()
        self._latency = 0.0
        self._calls: list[AssumeRoleCall] = []

    def _make_server(self) -> ThreadingHTTPServer:
        return _Server(self)

    @property
    def url(self) -> str:
        """The endpoint URL to give STS clients."""
        return f"http://127.0.0.1:{self.port}"

    # -- observation and faults ------------------------------------------------------------

    @property
    def calls(self) -> list[AssumeRoleCall]:
        """A snapshot of the ``AssumeRoleWithWebIdentity`` requests answered so far."""
        with self._lock:
            return list(self._calls)

    @property
    def assume_role_calls(self) -> int:
        with self._lock:
            return len(self._calls)

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each ``AssumeRoleWithWebIdentity`` request consumes one."""
        with self._lock:
            self._faults.extend(faults)

    def set_latency(self, seconds: float) -> None:
        """Delay every ``AssumeRoleWithWebIdentity`` answer by ``seconds``."""
        if seconds < 0:
            raise ValueError("latency must not be negative")
        with self._lock:
            self._latency = seconds

    def reset(self) -> None:
        """Forget recorded calls, pending faults and latency."""
        with self._lock:
            self._calls.clear()
            self._faults.clear()
            self._latency = 0.0

    # -- request handling ------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        params = {
            k: v[0]
            for k, v in parse_qs(urlsplit(handler.path).query, keep_blank_values=True).items()
        }
        if body:
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            params.update({k: v[0] for k, v in form.items()})
        try:
            if params.get("Action") == ACTION:
                self._assume_role_with_web_identity(handler, body, params)
            else:
                self._forward(handler, body)
        except Exception:
            logger.exception("VerifyingSTS failed to handle a request")
            request_id = str(uuid.uuid4())
            payload = error_body("InternalFailure", "An internal error occurred.", 500, request_id)
            try:
                handler.send_bytes(500, payload, "text/xml", request_id)
            except OSError:
                handler.close_connection = True

    def _assume_role_with_web_identity(
        self, handler: _Handler, body: bytes, params: dict[str, str]
    ) -> None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            latency = self._latency
        delay = latency + (fault.delay if fault else 0.0)
        if delay > 0:
            time.sleep(delay)

        record = self._recorder(params)
        if fault is not None and fault.drop:
            record("dropped")
            handler.close_connection = True
            return
        request_id = str(uuid.uuid4())
        if fault is not None and fault.body is not None:
            record(f"HTTP {fault.status} reply")
            handler.send_bytes(fault.status, fault.body, fault.content_type, request_id)
            return
        try:
            if fault is not None and fault.code:
                raise ReplyError(fault.code, fault.message, fault.status)
            self._verify(params)
        except ReplyError as error:
            logger.debug("AssumeRoleWithWebIdentity refused: %s", error)
            record(error.code)
            payload = error_body(error.code, error.message, error.status, request_id)
            handler.send_bytes(error.status, payload, "text/xml", request_id)
            return
        status, content_type, answer = self._relay(handler, body)
        match = _ERROR_CODE.search(answer)
        record("ok" if status == 200 else match.group(1).decode() if match else f"HTTP {status}")
        handler.send_bytes(status, answer, content_type)

    def _recorder(self, params: Mapping[str, str]) -> Callable[[str], None]:
        duration = params.get("DurationSeconds")
        try:
            claims: dict[str, object] = jwt.decode(
                params.get("WebIdentityToken", ""), options={"verify_signature": False}
            )
        except jwt.PyJWTError:
            claims = {}

        def record(outcome: str) -> None:
            call = AssumeRoleCall(
                role_arn=params.get("RoleArn", ""),
                session_name=params.get("RoleSessionName", ""),
                duration_seconds=int(duration) if duration and duration.isdigit() else None,
                claims=claims,
                outcome=outcome,
                policy=params.get("Policy"),
                policy_arns=tuple(
                    value
                    for key, value in sorted(params.items())
                    if key.startswith("PolicyArns.member.") and key.endswith(".arn")
                ),
            )
            with self._lock:
                self._calls.append(call)

        return record

    def _forward(self, handler: _Handler, body: bytes) -> None:
        status, content_type, answer = self._relay(handler, body)
        handler.send_bytes(status, answer, content_type)

    def _relay(self, handler: _Handler, body: bytes) -> tuple[int, str, bytes]:
        """Send the request on to moto as it came and return moto's answer."""
        target = urlsplit(self.moto_url)
        connection = http.client.HTTPConnection(
            target.hostname or "127.0.0.1", target.port, timeout=30
        )
        headers = {
            name: value
            for name, value in handler.headers.items()
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
        }
        try:
            connection.request(handler.command, handler.path, body=body or None, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            content_type = response.getheader("Content-Type") or "text/xml"
            return response.status, content_type, answer
        finally:
            connection.close()

    # -- verification ----------------------------------------------------------------------

    def _verify(self, params: Mapping[str, str]) -> None:
        """Raise :class:`ReplyError` unless AWS would accept this request."""
        problems = validation_problems(params)
        if problems:
            count = len(problems)
            noun = "error" if count == 1 else "errors"
            raise ReplyError(
                "ValidationError", f"{count} validation {noun} detected: " + "; ".join(problems)
            )
        token = params["WebIdentityToken"]
        try:
            header = jwt.get_unverified_header(token)
            unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise ReplyError("InvalidIdentityToken", MSG_NOT_A_JWT) from None

        issuer = str(unverified.get("iss", ""))
        provider_arn, provider_url, client_ids = self._find_provider(issuer)
        claims = self._verified_claims(token, header, issuer)
        self._check_lifetime(claims)
        audiences = claim_values(claims.get("aud", []))
        if not any(a in client_ids for a in audiences):
            raise ReplyError("InvalidIdentityToken", MSG_AUDIENCE)

        role = self._find_role(params["RoleArn"])
        policy = role.get("AssumeRolePolicyDocument") or {}
        if isinstance(policy, str):
            policy = json.loads(unquote(policy))
        # Like AWS: of a GitLab token, only sub and aud become condition keys.
        context = condition_context(claims, provider_url)
        if not trust_policy_allows(policy, provider_arn, context):
            raise ReplyError("AccessDenied", MSG_NOT_AUTHORIZED, 403)
        duration = params.get("DurationSeconds")
        maximum = int(role.get("MaxSessionDuration") or _DEFAULT_MAX_SESSION)
        if duration is not None and int(duration) > maximum:
            raise ReplyError("ValidationError", MSG_MAX_SESSION)

    def _find_provider(self, issuer: str) -> tuple[str, str, list[str]]:
        """Return the ARN, URL and client IDs of the IAM OIDC provider for ``issuer``."""
        parts = urlsplit(issuer)
        wanted = (parts.netloc + parts.path if parts.netloc else issuer).rstrip("/")
        listing = self._iam.list_open_id_connect_providers()
        for entry in listing.get("OpenIDConnectProviderList", []):
            arn = entry["Arn"]
            provider = self._iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
            url = str(provider.get("Url", "")).rstrip("/")
            if wanted and url == wanted:
                return arn, url, list(provider.get("ClientIDList", []))
        raise ReplyError("InvalidIdentityToken", MSG_NO_PROVIDER.format(issuer))

    def _fetch_json(self, url: str) -> dict[str, Any]:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ReplyError("InvalidIdentityToken", MSG_VERIFICATION_KEY)
        try:
            # A new opener per fetch: from Python 3.13 an HTTPS handler loads the trusted CAs
            # (SSL_CERT_FILE, ...) when it is built, and tests change them as they go.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(url, timeout=self.fetch_timeout) as response:
                document = json.load(response)
        except (OSError, ValueError, urllib.error.URLError) as error:
            logger.debug("Fetching %s failed: %s", url, error)
            raise ReplyError("InvalidIdentityToken", MSG_VERIFICATION_KEY) from None
        if not isinstance(document, dict):
            raise ReplyError("InvalidIdentityToken", MSG_VERIFICATION_KEY)
        return cast("dict[str, Any]", document)

    def _verified_claims(
        self, token: str, header: Mapping[str, Any], issuer: str
    ) -> dict[str, Any]:
        algorithm = header.get("alg")
        if algorithm not in _SUPPORTED_ALGORITHMS:
            raise ReplyError("InvalidIdentityToken", MSG_BAD_SIGNATURE)
        discovery = self._fetch_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ReplyError("InvalidIdentityToken", MSG_VERIFICATION_KEY)
        keys = [k for k in self._fetch_json(jwks_uri).get("keys", []) if isinstance(k, dict)]
        kid = header.get("kid")
        candidates = [k for k in keys if k.get("kid") == kid] if kid else keys[:1]
        if not candidates or (not kid and len(keys) != 1):
            raise ReplyError("InvalidIdentityToken", MSG_VERIFICATION_KEY)
        try:
            key = jwt.PyJWK(candidates[0], algorithm=str(algorithm)).key
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.PyJWKError:
            raise ReplyError("InvalidIdentityToken", MSG_VERIFICATION_KEY) from None
        except jwt.PyJWTError:
            raise ReplyError("InvalidIdentityToken", MSG_BAD_SIGNATURE) from None
        return claims

    @staticmethod
    def _check_lifetime(claims: Mapping[str, Any]) -> None:
        now = int(time.time())
        try:
            expires = int(claims["exp"])
        except (KeyError, TypeError, ValueError):
            raise ReplyError("InvalidIdentityToken", "Missing or invalid exp claim") from None
        if now >= expires:
            raise ReplyError(
                "ExpiredTokenException",
                f"Token expired: current date/time {now} must be before the expiration "
                f"date/time {expires}",
            )
        not_before = claims.get("nbf")
        if isinstance(not_before, (int, float)) and now < not_before:
            raise ReplyError(
                "InvalidIdentityToken",
                f"Token is not yet valid: current date/time {now} must be after the "
                f"not-before date/time {int(not_before)}",
            )

    def _find_role(self, role_arn: str) -> dict[str, Any]:
        name = role_arn.rsplit("/", 1)[-1]
        if ":role/" not in role_arn or not name:
            raise ReplyError("AccessDenied", MSG_NOT_AUTHORIZED, 403)
        try:
            role: dict[str, Any] = self._iam.get_role(RoleName=name)["Role"]
        except self._iam.exceptions.NoSuchEntityException:
            raise ReplyError("AccessDenied", MSG_NOT_AUTHORIZED, 403) from None
        if role.get("Arn") != role_arn:
            raise ReplyError("AccessDenied", MSG_NOT_AUTHORIZED, 403)
        return role
