"""An offline, GitLab-shaped OIDC issuer: claim sets, signed ID tokens, discovery and JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from ._server import LocalServer

__all__ = ["FakeGitLab", "gitlab_claims"]

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/oauth/discovery/keys"

# GitLab backdates nbf slightly so that runners with a lagging clock accept fresh tokens.
_NBF_SKEW_SECONDS = 5
_REF_PATH_PREFIXES = {"branch": "refs/heads/", "tag": "refs/tags/"}


def _bool_claim(value: bool) -> str:
    return "true" if value else "false"


def gitlab_claims(
    *,
    issuer: str,
    audience: str | list[str],
    project_path: str = "mygroup/myproject",
    ref: str = "main",
    ref_type: str = "branch",
    ref_protected: bool = True,
    issued_at: int | None = None,
    lifetime_seconds: int = 3600,
    project_id: int = 42,
    namespace_id: int = 7,
    pipeline_id: int = 1001,
    job_id: int = 5001,
    user_login: str = "alice",
    environment: str | None = None,
    **extra: object,
) -> dict[str, object]:
    """Build a claim set shaped like a GitLab CI job's ID token.

    Like GitLab, identifiers and flags are strings; ``runner_id`` is the one integer.
    ``extra`` adds or overrides claims, and an ``extra`` value of ``None`` removes that claim.
    """
    try:
        ref_path = _REF_PATH_PREFIXES[ref_type] + ref
    except KeyError:
        raise ValueError(f"ref_type must be 'branch' or 'tag', not {ref_type!r}") from None
    iat = int(time.time()) if issued_at is None else issued_at
    namespace_path = project_path.rpartition("/")[0]
    host = urlsplit(issuer).netloc or issuer
    sha = secrets.token_hex(20)

    claims: dict[str, object] = {
        "namespace_id": str(namespace_id),
        "namespace_path": namespace_path,
        "project_id": str(project_id),
        "project_path": project_path,
        "user_id": "1",
        "user_login": user_login,
        "user_email": f"{user_login}@example.com",
        "user_access_level": "developer",
        "pipeline_id": str(pipeline_id),
        "pipeline_source": "push",
        "job_id": str(job_id),
        "ref": ref,
        "ref_type": ref_type,
        "ref_path": ref_path,
        "ref_protected": _bool_claim(ref_protected),
    }
    if environment is not None:
        claims["environment"] = environment
        claims["environment_protected"] = "false"
        claims["deployment_tier"] = "production" if environment == "production" else "other"
        claims["environment_action"] = "start"
    claims.update(
        {
            "runner_id": 1,
            "runner_environment": "gitlab-hosted",
            "sha": sha,
            "ci_config_ref_uri": f"{host}/{project_path}//.gitlab-ci.yml@{ref_path}",
            "ci_config_sha": sha,
            "project_visibility": "private",
            "jti": str(uuid.uuid4()),
            "iss": issuer,
            "iat": iat,
            "nbf": iat - _NBF_SKEW_SECONDS,
            "exp": iat + lifetime_seconds,
            "sub": f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}",
            "aud": audience,
        }
    )
    for name, value in extra.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _rfc7638_key_id(public_key: rsa.RSAPublicKey) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of an RSA public key, base64url-encoded."""
    numbers = public_key.public_numbers()
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _SigningKey:
    """An RSA private key together with its key id."""

    def __init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = _rfc7638_key_id(self.private_key.public_key())

    def public_jwk(self) -> dict[str, object]:
        jwk = cast(
            "dict[str, object]", RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        )
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return jwk


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gitlab: FakeGitLab) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.gitlab = gitlab


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        status, body = self.server.gitlab._respond(self.command, self.path)
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean; FakeGitLab.requests records the traffic instead."""


class FakeGitLab(LocalServer):
    """A local HTTP server that serves GitLab's OIDC discovery and JWKS and mints ID tokens.

    Use as a context manager or call ``start()``/``stop()``. The issuer defaults to the
    server's own URL, so tokens it mints can be verified against it over real HTTP.
    """

    def __init__(
        self, *, issuer: str | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._issuer = issuer
        self._ssl_context = ssl_context
        self._keys: list[_SigningKey] = [_SigningKey()]
        self._requests: list[str] = []
        self._down = False
        self._delay = 0.0

    def _make_server(self) -> ThreadingHTTPServer:
        server = _Server(self)
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        return server

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL being served, e.g. ``http://127.0.0.1:54321`` (https with TLS)."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        """The ``iss`` put in tokens and in the discovery document (default: ``url``)."""
        return self._issuer if self._issuer is not None else self.url

    @issuer.setter
    def issuer(self, value: str | None) -> None:
        self._issuer = value

    @property
    def jwks_uri(self) -> str:
        """Where the signing keys are published."""
        return self.url + JWKS_PATH

    @property
    def requests(self) -> list[str]:
        """A snapshot of the paths requested so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    # -- behaviour switches ------------------------------------------------------------

    @property
    def down(self) -> bool:
        """Whether every request is answered with HTTP 503."""
        with self._lock:
            return self._down

    @down.setter
    def down(self, value: bool) -> None:
        self.set_down(value)

    def set_down(self, down: bool) -> None:
        """Answer every request with HTTP 503 while ``down`` is true."""
        with self._lock:
            self._down = down

    def set_delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each request."""
        if seconds < 0:
            raise ValueError("delay must not be negative")
        with self._lock:
            self._delay = seconds

    # -- keys and tokens ------------------------------------------------------------------

    @property
    def kid(self) -> str:
        """The key id of the current signing key."""
        with self._lock:
            return self._keys[-1].kid

    def jwks(self) -> dict[str, object]:
        """The JWKS document, newest key first."""
        with self._lock:
            keys = list(reversed(self._keys))
        return {"keys": [key.public_jwk() for key in keys]}

    def rotate_key(self, *, keep_old: bool = True) -> None:
        """Sign with a fresh key from now on; keep publishing the old ones only if ``keep_old``."""
        new_key = _SigningKey()
        with self._lock:
            if keep_old:
                self._keys.append(new_key)
            else:
                self._keys = [new_key]

    def mint_claims(self, claims: dict[str, object]) -> str:
        """Sign an arbitrary claim set with the current key (RS256)."""
        with self._lock:
            key = self._keys[-1]
        return jwt.encode(
            claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"}
        )

    def mint(self, *, audience: str | list[str] | None = None, **claim_options: Any) -> str:
        """Mint a GitLab-shaped ID token; options are those of :func:`gitlab_claims`.

        The audience defaults to the issuer URL, which is what GitLab's AWS guide configures.
        """
        issuer = claim_options.pop("issuer", None) or self.issuer
        claims = gitlab_claims(
            issuer=issuer,
            audience=issuer if audience is None else audience,
            **claim_options,
        )
        return self.mint_claims(claims)

    # -- HTTP ----------------------------------------------------------------------------

    def discovery_document(self) -> dict[str, object]:
        """The OpenID Provider metadata GitLab publishes."""
        base = self.url
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "introspection_endpoint": f"{base}/oauth/introspect",
            "userinfo_endpoint": f"{base}/oauth/userinfo",
            "jwks_uri": base + JWKS_PATH,
            "scopes_supported": ["openid", "profile", "email", "api", "read_api", "read_user"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["authorization_code", "password", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claim_types_supported": ["normal"],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "sub_legacy",
                "name",
                "nickname",
                "preferred_username",
                "email",
                "email_verified",
                "website",
                "profile",
                "picture",
                "groups",
                "groups_direct",
            ],
        }

    def _respond(self, method: str, path: str) -> tuple[int, dict[str, object]]:
        """Decide the status and JSON body for one request (runs on a server thread)."""
        with self._lock:
            self._requests.append(path)
            down, delay = self._down, self._delay
        if delay:
            time.sleep(delay)
        if down:
            return 503, {"message": "503 Service Unavailable"}
        route = urlsplit(path).path
        if method == "GET" and route == DISCOVERY_PATH:
            return 200, self.discovery_document()
        if method == "GET" and route == JWKS_PATH:
            return 200, self.jwks()
        return 404, {"error": "404 Not Found"}
