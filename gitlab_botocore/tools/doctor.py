"""``gitlab-botocore doctor``: check, step by step, what the exchange needs in this job.

Each check says what it looked at and, when it fails, what to change; warnings point
at settings that give the job an identity other than the one it may expect. Nothing
here prints or logs the token.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt

from gitlab_botocore.exceptions import GitLabOIDCError
from gitlab_botocore.id_token import IdToken
from gitlab_botocore.settings import ROLE_ARN_ROW, EnvVar, Settings, resolve_for_session
from gitlab_botocore.token_source import EnvironmentTokenSource

from .tls_chain import chain_problem, served_chain

HTTP_TIMEOUT_SECONDS = 5.0
DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class Check:
    """One line of the checklist. ``ok`` is ``None`` when the check could not run.

    A ``warning`` does not fail the checklist: the job works, maybe not as intended.
    """

    name: str
    ok: bool | None
    detail: str
    warning: bool = False


def how_found(token: IdToken, settings: Settings | None) -> str:
    """Why this variable was chosen, in the order the library looks."""
    if settings is not None and settings.token_variable == token.variable:
        return "named by the configuration"
    if token.variable in EnvironmentTokenSource.WELL_KNOWN:
        return "a default name"
    if token.variable == EnvVar.LEGACY_JOB_JWT:
        return "the deprecated CI_JOB_JWT_V2; declare id_tokens: instead"
    return f"its issuer is {EnvVar.CI_SERVER_URL}"


def run_checks(
    settings: Settings | None,
    settings_error: GitLabOIDCError | None,
    source: EnvironmentTokenSource,
    exchange: Any,
    environ: Mapping[str, str],
    *,
    session: Any = None,
) -> Iterator[Check]:
    """Yield checks in order; later checks are skipped when what they need is missing.

    ``exchange`` is a zero-argument callable performing the STS exchange (raising
    :class:`GitLabOIDCError` on failure) and returning a short description. ``session``
    is the botocore session whose profile the checks look at (default: a new one).
    """
    source = _as_the_provider_looks(source, settings, environ)
    token: IdToken | None = None
    try:
        found = source.get_token()
    except GitLabOIDCError as error:
        yield Check("ID token", False, str(error))
    else:
        token = found
        yield Check("ID token", True, f"{found.variable} ({how_found(found, settings)})")

    if token is not None:
        left = token.seconds_left()
        yield Check(
            "Claims",
            left > 0,
            f"{token.describe()}; "
            + (f"{int(left // 60)} min left" if left > 0 else "EXPIRED: " + _expired(token)),
        )
        server = (environ.get(EnvVar.CI_SERVER_URL) or "").rstrip("/")
        issuer = (token.issuer or "").rstrip("/")
        if not server:
            yield Check("Issuer", None, f"{EnvVar.CI_SERVER_URL} is not set (not in a GitLab job?)")
        else:
            yield Check(
                "Issuer",
                issuer == server,
                f"iss {issuer!r} {'matches' if issuer == server else 'differs from'} "
                f"{EnvVar.CI_SERVER_URL} {server!r}"
                + ("" if issuer == server else " (a custom issuer URL, or another instance)"),
            )

    yield _role_check(settings, settings_error, environ, session)
    yield from _identity_checks(settings, token, source, environ, session)

    if token is not None and token.issuer:
        yield from _issuer_checks(token)

    if token is None or settings is None or token.seconds_left() <= 0:
        yield Check("STS exchange", None, "skipped: needs a valid token and a role")
        return
    try:
        yield Check("STS exchange", True, exchange())
    except GitLabOIDCError as error:
        yield Check("STS exchange", False, str(error))


def _role_check(
    settings: Settings | None,
    settings_error: GitLabOIDCError | None,
    environ: Mapping[str, str],
    session: Any,
) -> Check:
    if settings_error is not None:
        return Check("Role", False, str(settings_error))
    if settings is not None:
        chain = "".join(f" -> {arn}" for arn in settings.chain_role_arns)
        return Check("Role", True, settings.role_arn + chain)
    deferred = _left_to_botocore(environ, session)
    if deferred is not None:
        return Check(
            "Role",
            True,
            f"{deferred.role_arn}, left to botocore: {EnvVar.WEB_IDENTITY_TOKEN_FILE} is set, so "
            "botocore's own web identity provider assumes it with the token in "
            f"{deferred.defer_to_web_identity_file}, not the GitLab ID token. Unset "
            f"{EnvVar.WEB_IDENTITY_TOKEN_FILE} (or set {EnvVar.REQUIRE}=1) to use the GitLab "
            "ID token.",
            warning=True,
        )
    return Check(
        "Role",
        False,
        f"no role configured: set {EnvVar.ROLE_ARN} (or pass {ROLE_ARN_ROW.cli}, or "
        f"{ROLE_ARN_ROW.profile_key} in the profile)",
    )


def _left_to_botocore(environ: Mapping[str, str], session: Any) -> Settings | None:
    """The settings the provider resolves but leaves to ``AWS_WEB_IDENTITY_TOKEN_FILE``."""
    if session is None or not environ.get(EnvVar.WEB_IDENTITY_TOKEN_FILE):
        return None
    try:
        settings = resolve_for_session(session, {}, environ)
    except GitLabOIDCError:
        return None
    return settings if settings is not None and settings.defer_to_web_identity_file else None


def _as_the_provider_looks(
    source: EnvironmentTokenSource, settings: Settings | None, environ: Mapping[str, str]
) -> EnvironmentTokenSource:
    """The token source with the configured audiences, as the provider builds it."""
    if settings is None or source.variable is not None:
        return source
    return EnvironmentTokenSource(None, settings.ci_server_url, environ, settings.audiences)


def _identity_checks(
    settings: Settings | None,
    token: IdToken | None,
    source: EnvironmentTokenSource,
    environ: Mapping[str, str],
    session: Any,
) -> Iterator[Check]:
    """Warnings about tokens, region and precedence: what the job runs as, and where."""
    if token is not None:
        yield from _skipped_tokens(source)
    yield from _region_check(environ)
    if settings is not None and token is not None:
        yield from _precedence_checks(settings, environ, session)


def _skipped_tokens(source: EnvironmentTokenSource) -> Iterator[Check]:
    """Tokens the library found but will not send to AWS (the others' audience)."""
    for name, token in sorted(source.skipped().items()):
        yield Check(
            "Skipped token",
            True,
            f"{name}: aud {', '.join(token.audience) or 'none'!r} is not an audience for AWS "
            f"({', '.join(source.audiences)}), so it is never sent to AWS. If it is meant for "
            f"AWS, list its audience in {EnvVar.AUDIENCES}.",
            warning=True,
        )


def _region_check(environ: Mapping[str, str]) -> Iterator[Check]:
    if environ.get(EnvVar.REGION) and not environ.get(EnvVar.DEFAULT_REGION):
        yield Check(
            "Region",
            True,
            f"only {EnvVar.REGION} is set ({environ[EnvVar.REGION]}): boto3 and botocore read "
            f"{EnvVar.DEFAULT_REGION} (or the profile's region), so regional clients raise "
            f"NoRegionError and S3 uses us-east-1. Set {EnvVar.DEFAULT_REGION} as well.",
            warning=True,
        )


def _precedence_checks(
    settings: Settings, environ: Mapping[str, str], session: Any
) -> Iterator[Check]:
    """Where another identity is configured too, say which one the job gets."""
    if environ.get("AWS_ACCESS_KEY_ID") and settings.role_source in (
        EnvVar.ROLE_ARN,
        EnvVar.TUTORIAL_ROLE_ARN,
    ):
        yield Check(
            "Precedence",
            True,
            "AWS_ACCESS_KEY_ID is set: static keys in the environment come first in botocore's "
            f"chain, so boto3.Session() uses them, not {settings.role_arn}. Unset "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to use the GitLab role.",
            warning=True,
        )
        return
    profile = environ.get(EnvVar.PROFILE)
    if profile and _has_static_keys(profile, session):
        yield Check(
            "Precedence",
            True,
            f"{EnvVar.PROFILE}={profile} has static keys, but the GitLab role "
            f"({settings.role_source}) comes first in botocore's chain: the job runs as "
            f"{settings.role_arn}. To use the profile's keys instead, unset "
            f"{settings.role_source}.",
            warning=True,
        )


def _has_static_keys(profile: str, session: Any) -> bool:
    """Whether ``profile`` holds access keys, in the config or the credentials file."""
    import botocore.configloader
    import botocore.session

    if session is None:
        session = botocore.session.Session()
    config = session.full_config.get("profiles", {}).get(profile, {})
    path = session.get_config_variable("credentials_file")
    try:
        credentials = botocore.configloader.raw_config_parse(os.path.expanduser(path))
    except Exception:  # unreadable file: botocore would ignore it too
        credentials = {}
    return any("aws_access_key_id" in section for section in (config, credentials.get(profile, {})))


def _expired(token: IdToken) -> str:
    try:
        token.ensure_not_expired()
    except GitLabOIDCError as error:
        return str(error)
    return ""


def is_local_test_issuer(issuer: str) -> bool:
    """Whether ``issuer`` is plain HTTP on a loopback address: a test issuer (such as the
    offline fakes of ``gitlab_botocore.testing``) that AWS never sees."""
    parts = urlsplit(issuer)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _issuer_checks(token: IdToken) -> Iterator[Check]:
    issuer = (token.issuer or "").rstrip("/")
    parts = urlsplit(issuer)
    if is_local_test_issuer(issuer):
        yield Check(
            "Discovery document",
            None,
            f"skipped: {issuer!r} is a local test issuer (HTTP on a loopback address); a real "
            "issuer must serve its discovery document and keys over HTTPS, reachable by AWS",
        )
        return
    if parts.scheme != "https":
        yield Check(
            "Discovery document",
            False,
            f"issuer {issuer!r} is not an https:// URL; AWS fetches the discovery document "
            "and keys over HTTPS only",
        )
        return
    try:
        discovery = _get_json(issuer + DISCOVERY_PATH)
    except OSError as error:
        yield Check(
            "Discovery document",
            False,
            f"{issuer}{DISCOVERY_PATH} unreachable from here ({_reason(error)}); AWS must reach "
            "it from the internet",
        )
        yield from _chain_check(parts.hostname or "", parts.port or 443)
        return
    yield Check("Discovery document", True, f"{issuer}{DISCOVERY_PATH}")
    jwks_uri = str(discovery.get("jwks_uri", ""))
    try:
        keys = _get_json(jwks_uri).get("keys", [])
    except (OSError, ValueError) as error:
        yield Check("Signing keys", False, f"jwks_uri {jwks_uri!r} unreachable ({_reason(error)})")
    else:
        kid = _kid(token)
        kids = [key.get("kid") for key in keys if isinstance(key, dict)]
        yield Check(
            "Signing keys",
            kid in kids,
            f"{jwks_uri}: {len(kids)} key(s); the token's kid {kid!r} "
            + ("is" if kid in kids else "is NOT")
            + " among them",
        )
    yield from _chain_check(parts.hostname or "", parts.port or 443)


def _kid(token: IdToken) -> str | None:
    try:
        kid = jwt.get_unverified_header(token.raw).get("kid")
    except jwt.PyJWTError:
        return None
    return None if kid is None else str(kid)


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _get_json(url: str) -> dict[str, Any]:
    if not url.startswith("https://"):
        raise ValueError(f"not an https:// URL: {url!r}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
        document = json.loads(response.read().decode("utf-8"))
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def _chain_check(host: str, port: int) -> Iterator[Check]:
    """The certificate chain as served: leaf first, each issued by the next, no repeats."""
    try:
        chain = served_chain(host, port, timeout=HTTP_TIMEOUT_SECONDS)
    except (OSError, ssl.SSLError) as error:
        yield Check("Certificate chain", False, f"TLS connection to {host}:{port} failed: {error}")
        return
    if chain is None:
        yield Check("Certificate chain", None, "not checked: needs Python 3.10+ and cryptography")
        return
    problem = chain_problem(chain)
    yield Check(
        "Certificate chain",
        problem is None,
        problem or f"{len(chain)} certificate(s), served in order",
    )
