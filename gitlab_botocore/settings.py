"""What to do: every setting, resolved and validated in one place.

Precedence, highest first: keyword overrides given to ``register()``; the
environment (skipped when code selects a profile explicitly, as botocore does);
the selected profile of the AWS config file. No other module reads the
environment for configuration.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

from .exceptions import ConfigurationError

logger = logging.getLogger(__name__)

METHOD = "gitlab-oidc"
"""What ``session.get_credentials().method`` reports for our credentials."""
MIN_DURATION_SECONDS = 900
MAX_DURATION_SECONDS = 43200
DEFAULT_DURATION_SECONDS = 3600
MAX_POLICY_LENGTH = 2048
MAX_POLICY_ARNS = 10
DEFAULT_RETRY_BUDGET_SECONDS = 60.0
MAX_RETRY_BUDGET_SECONDS = 3600.0
SESSION_NAME_PREFIX = "GitLabRunner"
STS_AUDIENCE = "sts.amazonaws.com"
"""The audience AWS's own documentation uses for web identity tokens."""
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class EnvVar:
    """Names of every environment variable the library reads."""

    DISABLE = "GITLAB_BOTOCORE_DISABLE"
    REQUIRE = "GITLAB_BOTOCORE_REQUIRE"
    ALLOWED_ACCOUNT_IDS = "GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS"
    AUDIENCES = "GITLAB_BOTOCORE_AUDIENCES"
    ROLE_ARN = "AWS_ROLE_ARN"
    TUTORIAL_ROLE_ARN = "ROLE_ARN"
    TOKEN_VARIABLE = "GITLAB_BOTOCORE_TOKEN_VARIABLE"
    ROLE_SESSION_NAME = "AWS_ROLE_SESSION_NAME"
    DURATION_SECONDS = "GITLAB_BOTOCORE_DURATION_SECONDS"
    POLICY = "GITLAB_BOTOCORE_POLICY"
    POLICY_ARNS = "GITLAB_BOTOCORE_POLICY_ARNS"
    RETRY_BUDGET_SECONDS = "GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS"
    CHAIN_ROLE_ARNS = "GITLAB_BOTOCORE_CHAIN_ROLE_ARNS"
    CACHE = "GITLAB_BOTOCORE_CACHE"
    XDG_CACHE_HOME = "XDG_CACHE_HOME"
    REGION = "AWS_REGION"
    DEFAULT_REGION = "AWS_DEFAULT_REGION"  # the one botocore reads
    PROFILE = "AWS_PROFILE"
    ENDPOINT_URL_STS = "AWS_ENDPOINT_URL_STS"
    ENDPOINT_URL = "AWS_ENDPOINT_URL"
    IGNORE_CONFIGURED_ENDPOINT_URLS = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
    WEB_IDENTITY_TOKEN_FILE = "AWS_WEB_IDENTITY_TOKEN_FILE"
    # Set by GitLab in every job.
    GITLAB_CI = "GITLAB_CI"
    CI_SERVER_URL = "CI_SERVER_URL"
    CI_PROJECT_ID = "CI_PROJECT_ID"
    CI_PIPELINE_ID = "CI_PIPELINE_ID"
    CI_JOB_ID = "CI_JOB_ID"
    # Where GitLab ID tokens are looked for, in order, when no variable is named.
    AWS_ID_TOKEN = "AWS_ID_TOKEN"  # GitLab's AWS integration
    GITLAB_OIDC_TOKEN = "GITLAB_OIDC_TOKEN"  # GitLab's AWS tutorial
    LEGACY_JOB_JWT = "CI_JOB_JWT_V2"  # GitLab < 17, deprecated
    LEGACY_JOB_JWT_V1 = "CI_JOB_JWT"


class ProfileKey:
    """Keys read from a profile of the AWS config file."""

    ROLE_ARN = "gitlab_role_arn"
    TOKEN_VARIABLE = "gitlab_token_variable"
    ROLE_SESSION_NAME = "role_session_name"
    DURATION_SECONDS = "duration_seconds"
    POLICY = "gitlab_policy"
    POLICY_ARNS = "gitlab_policy_arns"
    RETRY_BUDGET_SECONDS = "gitlab_retry_budget_seconds"
    CHAIN_ROLE_ARNS = "gitlab_chain_role_arns"
    ALLOWED_ACCOUNT_IDS = "gitlab_allowed_account_ids"
    AUDIENCES = "gitlab_audiences"
    ENDPOINT_URL = "endpoint_url"
    SERVICES = "services"


@dataclass(frozen=True)
class Settings:
    """Everything needed to exchange a GitLab ID token for AWS credentials.

    Equal settings (plus the same token) share one set of credentials per process.
    """

    role_arn: str
    token_variable: str | None = None
    """Variable holding the ID token; ``None`` means look in the usual places."""
    role_session_name: str | None = None
    """Already valid for STS; ``None`` means derive it from the token's job ids."""
    duration_seconds: int = DEFAULT_DURATION_SECONDS
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    region: str | None = None
    endpoint_url: str | None = None
    ci_server_url: str | None = None
    retry_budget_seconds: float = DEFAULT_RETRY_BUDGET_SECONDS
    """How long transient STS failures are retried (never past the token's expiry)."""
    chain_role_arns: tuple[str, ...] = ()
    """Roles assumed in order with the previous role's credentials (role chaining)."""
    cache_dir: str | None = None
    """Directory of the opt-in cross-process credentials cache; ``None`` means off."""
    audiences: tuple[str, ...] = ()
    """Audiences, besides ``ci_server_url`` and ``sts.amazonaws.com``, that make an
    auto-detected ID token one meant for AWS (``GITLAB_BOTOCORE_AUDIENCES``)."""
    allowed_account_ids: tuple[str, ...] = ()
    """Accounts the role and chained roles must belong to; empty means any."""
    require: bool = False
    """Fail instead of stepping aside when the role has no token (``GITLAB_BOTOCORE_REQUIRE``)."""
    # What follows describes the job rather than the exchange: not part of equality.
    role_source: str = field(default="", compare=False)
    """Where the role came from (``AWS_ROLE_ARN``, a profile key...), for messages."""
    defer_to_web_identity_file: str | None = field(default=None, compare=False)
    """``AWS_WEB_IDENTITY_TOKEN_FILE`` when botocore's own web identity provider, not
    this one, should use the role."""
    in_gitlab_ci: bool = field(default=False, compare=False)
    """``GITLAB_CI=true``: stepping aside deserves a warning, not a debug line."""


def install_disabled(environ: Mapping[str, str]) -> bool:
    """True when ``GITLAB_BOTOCORE_DISABLE`` asks ``import gitlab_botocore`` to do nothing."""
    return environ.get(EnvVar.DISABLE, "").strip().lower() in _TRUE


def settings_for_session(
    session: Any, overrides: Mapping[str, Any], environ: Mapping[str, str]
) -> Settings | None:
    """The settings this provider acts on for one botocore session, or ``None`` when it
    does not apply: no role, or the role belongs to botocore's ``AWS_WEB_IDENTITY_TOKEN_FILE``."""
    settings = resolve_for_session(session, overrides, environ)
    if settings is None or settings.defer_to_web_identity_file:
        return None
    return settings


def resolve_for_session(
    session: Any, overrides: Mapping[str, Any], environ: Mapping[str, str]
) -> Settings | None:
    """Resolve the settings for one botocore session, or ``None`` if no role is configured.

    Unlike :func:`settings_for_session`, settings that defer to botocore's own web
    identity provider are returned too, so that the provider can say so.
    """
    # boto3.Session(profile_name=...) sets the profile as an instance variable; botocore
    # then ignores credential settings from the environment, and so do we.
    profile_is_explicit = session.instance_variables().get("profile") is not None
    return resolve_settings(
        overrides=overrides,
        environ=environ,
        profile_config=session.get_scoped_config(),
        full_config=session.full_config,
        use_environment=not profile_is_explicit,
        session_region=session.get_config_variable("region"),
        ignore_configured_endpoints=bool(
            session.get_config_variable("ignore_configured_endpoint_urls")
        ),
    )


def resolve_settings(
    *,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str],
    profile_config: Mapping[str, Any],
    full_config: Mapping[str, Any] | None = None,
    use_environment: bool = True,
    session_region: str | None = None,
    ignore_configured_endpoints: bool = False,
) -> Settings | None:
    """Build validated :class:`Settings`; ``None`` means "no role configured here".

    The guards (``GITLAB_BOTOCORE_REQUIRE``, ``GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS``) are
    read from the environment even when code selects a profile: they protect the job,
    whichever profile its code picks.
    """
    config_env = environ if use_environment else {}

    def pick(
        override: str,
        env_names: tuple[str, ...],
        profile_key: str | None,
        env: Mapping[str, str] = config_env,
    ) -> tuple[Any, str]:
        """The first value found and where it came from, for error messages."""
        if overrides.get(override) is not None:
            return overrides[override], f"the {override!r} argument"
        for name in env_names:
            if env.get(name, "").strip():
                return env[name].strip(), name
        value = profile_config.get(profile_key) if profile_key else None
        if value is not None and str(value).strip():
            return str(value).strip(), f"{profile_key!r} in the AWS config profile"
        return None, ""

    require_value, require_source = pick("require", (EnvVar.REQUIRE,), None, environ)
    require = _valid_flag(require_value, require_source)
    role_arn, role_source = pick(
        "role_arn", (EnvVar.ROLE_ARN, EnvVar.TUTORIAL_ROLE_ARN), ProfileKey.ROLE_ARN
    )
    if role_arn is None:
        if require:
            raise ConfigurationError(
                f"{require_source} requires GitLab OIDC credentials, but no role is configured: "
                f"set {EnvVar.ROLE_ARN} (or {ProfileKey.ROLE_ARN!r} in the AWS config profile) "
                "to the IAM role the job should assume.",
                setting=EnvVar.ROLE_ARN,
            )
        logger.debug(
            "No role configured (%s, %s): not providing credentials.",
            EnvVar.ROLE_ARN,
            ProfileKey.ROLE_ARN,
        )
        return None
    role_arn = _valid_role_arn(str(role_arn), role_source)
    chain_role_arns, chain_source = pick(
        "chain_role_arns", (EnvVar.CHAIN_ROLE_ARNS,), ProfileKey.CHAIN_ROLE_ARNS
    )
    chain = _valid_chain(chain_role_arns, chain_source)
    allowed_value, allowed_source = pick(
        "allowed_account_ids",
        (EnvVar.ALLOWED_ACCOUNT_IDS,),
        ProfileKey.ALLOWED_ACCOUNT_IDS,
        environ,
    )
    allowed = _valid_account_ids(allowed_value, allowed_source)
    for arn, source in [(role_arn, role_source)] + [(arn, chain_source) for arn in chain]:
        _ensure_allowed_account(arn, source, allowed, allowed_source)

    # botocore's web identity provider (after ours in the chain) reads the same
    # AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE: that pair is botocore's, unless code
    # passed the role to register() or the job requires GitLab credentials.
    token_file = environ.get(EnvVar.WEB_IDENTITY_TOKEN_FILE, "").strip()
    defer = bool(token_file and role_source == EnvVar.ROLE_ARN and not require)

    token_variable, token_source = pick(
        "token_variable", (EnvVar.TOKEN_VARIABLE,), ProfileKey.TOKEN_VARIABLE
    )
    session_name, _ = pick(
        "role_session_name", (EnvVar.ROLE_SESSION_NAME,), ProfileKey.ROLE_SESSION_NAME
    )
    duration, duration_source = pick(
        "duration_seconds", (EnvVar.DURATION_SECONDS,), ProfileKey.DURATION_SECONDS
    )
    policy, policy_source = pick("policy", (EnvVar.POLICY,), ProfileKey.POLICY)
    policy_arns, policy_arns_source = pick(
        "policy_arns", (EnvVar.POLICY_ARNS,), ProfileKey.POLICY_ARNS
    )
    retry_budget, retry_budget_source = pick(
        "retry_budget_seconds", (EnvVar.RETRY_BUDGET_SECONDS,), ProfileKey.RETRY_BUDGET_SECONDS
    )
    audiences, _ = pick("audiences", (EnvVar.AUDIENCES,), ProfileKey.AUDIENCES)
    # The region and endpoint are not credential settings: like botocore's clients, they
    # follow the environment even when a profile is explicit.
    region = overrides.get("region") or session_region or environ.get(EnvVar.REGION)
    endpoint_url = overrides.get("endpoint_url") or (
        None
        if ignore_configured_endpoints
        else _configured_sts_endpoint(environ, profile_config, full_config or {})
    )

    return Settings(
        role_arn=role_arn,
        token_variable=_valid_variable_name(token_variable, token_source),
        role_session_name=(
            sanitize_session_name(str(session_name))
            if session_name is not None
            else _session_name_from_job(environ)
        ),
        duration_seconds=_valid_duration(duration, duration_source),
        policy=_valid_policy(policy, policy_source),
        policy_arns=_valid_policy_arns(policy_arns, policy_arns_source),
        region=_valid_region(region),
        endpoint_url=_valid_endpoint_url(endpoint_url),
        ci_server_url=environ.get(EnvVar.CI_SERVER_URL) or None,
        retry_budget_seconds=_valid_retry_budget(retry_budget, retry_budget_source),
        chain_role_arns=chain,
        cache_dir=_cache_dir(overrides.get("cache"), environ),
        audiences=_items(audiences),
        allowed_account_ids=allowed,
        require=require,
        role_source=role_source,
        defer_to_web_identity_file=token_file if defer else None,
        in_gitlab_ci=environ.get(EnvVar.GITLAB_CI, "").strip().lower() == "true",
    )


def _configured_sts_endpoint(
    environ: Mapping[str, str], profile_config: Mapping[str, Any], full_config: Mapping[str, Any]
) -> str | None:
    """The STS endpoint botocore's clients would use from the environment or config file."""
    if environ.get(EnvVar.IGNORE_CONFIGURED_ENDPOINT_URLS, "").lower() == "true":
        return None  # botocore then ignores both the environment and the config file
    for name in (EnvVar.ENDPOINT_URL_STS, EnvVar.ENDPOINT_URL):
        if environ.get(name):
            return environ[name]
    services_name = profile_config.get(ProfileKey.SERVICES)
    if services_name:
        services = full_config.get("services", {}).get(services_name, {})
        sts_section = services.get("sts", {})
        if isinstance(sts_section, Mapping) and sts_section.get(ProfileKey.ENDPOINT_URL):
            return str(sts_section[ProfileKey.ENDPOINT_URL])
    value = profile_config.get(ProfileKey.ENDPOINT_URL)
    return str(value) if value else None


_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$", re.ASCII)
_POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/[\w+=,.@/-]+$", re.ASCII)
_ACCOUNT_ID = re.compile(r"^\d{12}$", re.ASCII)
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REGION = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_SESSION_NAME_INVALID = re.compile(r"[^\w+=,.@-]", re.ASCII)
_MAX_SESSION_NAME = 64


def sanitize_session_name(name: str) -> str:
    """Make ``name`` acceptable to STS: ``[\\w+=,.@-]``, 2 to 64 characters."""
    cleaned = _SESSION_NAME_INVALID.sub("-", name.strip())[:_MAX_SESSION_NAME]
    if len(cleaned) < 2:
        cleaned = f"{SESSION_NAME_PREFIX}-{cleaned}" if cleaned else SESSION_NAME_PREFIX
    return cleaned


def default_session_name(
    project_id: str | None, pipeline_id: str | None, job_id: str | None
) -> str:
    """``GitLabRunner-<project>-<pipeline>-<job>``, so CloudTrail shows which job acted."""
    parts = [SESSION_NAME_PREFIX] + [p for p in (project_id, pipeline_id, job_id) if p]
    return sanitize_session_name("-".join(parts))


def _session_name_from_job(environ: Mapping[str, str]) -> str | None:
    ids = [
        environ.get(name)
        for name in (EnvVar.CI_PROJECT_ID, EnvVar.CI_PIPELINE_ID, EnvVar.CI_JOB_ID)
    ]
    if not all(ids):
        return None  # derived from the token's claims instead
    return default_session_name(*ids)


def _valid_role_arn(value: str, source: str) -> str:
    if not _ROLE_ARN.match(value):
        raise ConfigurationError(
            f"{source} is not an IAM role ARN: {value!r}. Expected "
            "'arn:aws:iam::<12-digit account id>:role/<role name>', as shown on the role's "
            "page in the IAM console.",
            setting=source,
        )
    return value


def _valid_variable_name(value: Any, source: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _VARIABLE_NAME.match(value):
        raise ConfigurationError(
            f"{source} must name the environment variable that holds the ID token (the key "
            f"under 'id_tokens:' in .gitlab-ci.yml), such as GITLAB_OIDC_TOKEN; got {value!r}.",
            setting=source,
        )
    return value


def _valid_duration(value: Any, source: str) -> int:
    if value is None:
        return DEFAULT_DURATION_SECONDS
    try:
        seconds = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        seconds = -1
    if isinstance(value, bool) or not MIN_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS:
        raise ConfigurationError(
            f"{source} must be a whole number of seconds from {MIN_DURATION_SECONDS} to "
            f"{MAX_DURATION_SECONDS} (the range STS accepts; the role's maximum session "
            f"duration may be lower); got {value!r}.",
            setting=source,
        )
    return seconds


def _items(value: Any) -> tuple[str, ...]:
    """A comma-separated string (or a list) as its non-empty, stripped items."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def _valid_chain(value: Any, source: str) -> tuple[str, ...]:
    return tuple(_valid_role_arn(arn, source) for arn in _items(value))


def _valid_flag(value: Any, source: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{source} must be 1 (on) or 0 (off); got {value!r}.", setting=source)


def _valid_account_ids(value: Any, source: str) -> tuple[str, ...]:
    ids = _items(value)
    bad = [account for account in ids if not _ACCOUNT_ID.match(account)]
    if bad:
        raise ConfigurationError(
            f"{source} must be a comma-separated list of 12-digit AWS account ids, such as "
            f"'111111111111,222222222222'; not account ids: {', '.join(map(repr, bad))}.",
            setting=source,
        )
    return ids


def role_account(role_arn: str) -> str:
    """The account id in a validated role ARN."""
    return role_arn.split(":")[4]


def _ensure_allowed_account(
    role_arn: str, source: str, allowed: tuple[str, ...], allowed_source: str
) -> None:
    account = role_account(role_arn)
    if not allowed or account in allowed:
        return
    raise ConfigurationError(
        f"{source} names the role {role_arn} in account {account}, but {allowed_source} "
        f"allows only {', '.join(allowed)}: no credentials were requested. If the role is "
        f"right, add its account to {allowed_source}; otherwise fix {source} (a group-level "
        "CI/CD variable is inherited by every project and environment below it).",
        setting=source,
    )


def _cache_dir(override: Any, environ: Mapping[str, str]) -> str | None:
    """``GITLAB_BOTOCORE_CACHE``: off by default; ``1`` for the user's cache directory,
    or a directory path. The keyword override ``cache`` takes the same values."""
    value = str(override if override is not None else environ.get(EnvVar.CACHE, "")).strip()
    if value.lower() in {"", "0", "false", "no", "off"}:
        return None
    if value.lower() in {"1", "true", "yes", "on"}:
        base = environ.get(EnvVar.XDG_CACHE_HOME) or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "gitlab-botocore")
    return os.path.abspath(os.path.expanduser(value))


def _valid_retry_budget(value: Any, source: str) -> float:
    if value is None:
        return DEFAULT_RETRY_BUDGET_SECONDS
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not 0 <= seconds <= MAX_RETRY_BUDGET_SECONDS:
        raise ConfigurationError(
            f"{source} must be a number of seconds from 0 (no retries) to "
            f"{MAX_RETRY_BUDGET_SECONDS:g}; got {value!r}.",
            setting=source,
        )
    return seconds


def _valid_policy(value: Any, source: str) -> str | None:
    if value is None:
        return None
    try:
        document = json.loads(value) if isinstance(value, str) else value
        if not isinstance(document, Mapping):
            raise TypeError
        compact = json.dumps(document, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ConfigurationError(
            f"{source} must be an IAM policy document as a JSON object, such as "
            '{"Version": "2012-10-17", "Statement": [...]}; it is not valid JSON '
            f"({type(error).__name__}).",
            setting=source,
        ) from None
    if len(compact) > MAX_POLICY_LENGTH:
        raise ConfigurationError(
            f"{source} is {len(compact)} characters long without spaces; STS accepts at most "
            f"{MAX_POLICY_LENGTH}. Move statements into managed policies and list them in "
            f"{EnvVar.POLICY_ARNS}.",
            setting=source,
        )
    return compact


def _valid_policy_arns(value: Any, source: str) -> tuple[str, ...]:
    arns = _items(value)
    bad = [arn for arn in arns if not _POLICY_ARN.match(arn)]
    if bad:
        raise ConfigurationError(
            f"{source} must be a comma-separated list of IAM policy ARNs "
            "('arn:aws:iam::aws:policy/ReadOnlyAccess' or "
            f"'arn:aws:iam::<account id>:policy/<name>'); not ARNs: {', '.join(map(repr, bad))}.",
            setting=source,
        )
    if len(arns) > MAX_POLICY_ARNS:
        raise ConfigurationError(
            f"{source} lists {len(arns)} policy ARNs; STS accepts at most {MAX_POLICY_ARNS}.",
            setting=source,
        )
    return arns


def _valid_region(value: Any) -> str | None:
    if not value:
        return None
    if not isinstance(value, str) or not _REGION.match(value):
        raise ConfigurationError(
            f"The AWS region {value!r} is not a region name such as 'eu-west-1'. Check "
            f"{EnvVar.REGION}, AWS_DEFAULT_REGION or the profile's 'region'.",
            setting="region",
        )
    return value


def _valid_endpoint_url(value: Any) -> str | None:
    if not value:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith(("https://", "http://"))
        or not (is_valid_endpoint_url(value) or is_valid_ipv6_endpoint_url(value))
    ):
        raise ConfigurationError(
            f"The STS endpoint {value!r} is not an http(s) URL. Check "
            f"{EnvVar.ENDPOINT_URL_STS}, {EnvVar.ENDPOINT_URL} or the profile's 'endpoint_url'.",
            setting="endpoint_url",
        )
    return value
