"""What to do: every setting, declared once in a table, resolved and validated here.

:data:`SETTINGS` has one row per setting (like botocore's ``configprovider.py``):
its :class:`Settings` field, environment variables, AWS config profile key,
``register()`` keyword, converter and help. Precedence, highest first: keyword
overrides given to ``register()``; the environment (skipped when code selects a
profile explicitly, as botocore does, except for rows marked ``always_env``); the
selected profile of the AWS config file. No other module reads the environment for
configuration.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable

from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

from .exceptions import ConfigurationError
from .values import ReadOnlyValue

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


# Patterns, compiled on first use (re caches them) rather than at import: most are only
# needed to reject a bad value. Matched whole with re.fullmatch (a "$" would let a trailing
# newline through, as in a register() keyword read from a file).
_ROLE_ARN = r"(?a)arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}"
_POLICY_ARN = r"(?a)arn:aws[a-z-]*:iam::(\d{12}|aws):policy/[\w+=,.@/-]+"
_ACCOUNT_ID = r"(?a)\d{12}"
_VARIABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REGION = r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?"
_SESSION_NAME_INVALID = r"(?a)[^\w+=,.@-]"
_MAX_SESSION_NAME = 64


def sanitize_session_name(name: str) -> str:
    """Make ``name`` acceptable to STS: ``[\\w+=,.@-]``, 2 to 64 characters."""
    cleaned = re.sub(_SESSION_NAME_INVALID, "-", name.strip())[:_MAX_SESSION_NAME]
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
    if not re.fullmatch(_ROLE_ARN, value):
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
    if not isinstance(value, str) or not re.fullmatch(_VARIABLE_NAME, value):
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
    if value is not None and not ids:
        # An allow-list that names nobody would silently allow every account (say, a
        # group variable built from unset variables: "$STAGING_ID,$PROD_ID").
        raise ConfigurationError(
            f"{source} is set but names no account id ({value!r}). List the 12-digit "
            "account ids whose roles this job may assume, or unset it.",
            setting=source,
        )
    bad = [account for account in ids if not re.fullmatch(_ACCOUNT_ID, account)]
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


def _cache_dir(value: Any, source: str, environ: Mapping[str, str]) -> str | None:
    """Off by default; ``1`` for the user's cache directory, or a directory path."""
    text = str(value if value is not None else "").strip()
    if "\0" in text:  # no file system takes it: os.mkdir would raise ValueError later
        raise ConfigurationError(
            f"{source} must be 1, 0 or a directory path; got {text!r}, which contains a NUL "
            "character.",
            setting=source,
        )
    if text.lower() in _FALSE:
        return None
    if text.lower() in _TRUE:
        # The XDG base directory spec: a relative XDG_CACHE_HOME is invalid, ignore it.
        base = environ.get(EnvVar.XDG_CACHE_HOME, "")
        if not os.path.isabs(base):
            base = os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "gitlab-botocore")
    return os.path.abspath(os.path.expanduser(text))


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
    bad = [arn for arn in arns if not re.fullmatch(_POLICY_ARN, arn)]
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


def _valid_region(value: Any, source: str) -> str | None:
    if not value:
        return None
    if not isinstance(value, str) or not re.fullmatch(_REGION, value):
        raise ConfigurationError(
            f"The AWS region {value!r} ({source}) is not a region name such as 'eu-west-1'. "
            f"Check {EnvVar.DEFAULT_REGION}, {EnvVar.REGION} or the profile's 'region'.",
            setting=source,
        )
    return value


def _valid_endpoint_url(value: Any, source: str) -> str | None:
    if not value:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith(("https://", "http://"))
        or any(character.isspace() for character in value)
        or not (is_valid_endpoint_url(value) or is_valid_ipv6_endpoint_url(value))
    ):
        raise ConfigurationError(
            f"{source} must be an http(s) URL, such as 'https://sts.eu-west-1.amazonaws.com'; "
            f"got {value!r}.",
            setting=source,
        )
    return value


class Setting:
    """One row of :data:`SETTINGS`: where one setting comes from and how it is checked.

    ``field`` is the :class:`Settings` field; ``keyword`` the ``register()`` keyword and
    ``cli`` the command line's option, if any; ``env`` the environment variables, first
    found wins; ``profile_key`` the key of the AWS config profile. ``convert(value,
    source, environ)`` validates a raw value (``None`` when nothing set it) and returns
    the field's value; ``source`` names where the value came from, for error messages.
    """

    __slots__ = (
        "always_env",
        "cli",
        "cli_type",
        "convert",
        "env",
        "field",
        "help",
        "keyword",
        "profile_key",
        "sts_input",
    )

    def __init__(
        self,
        field: str,
        *,
        env: tuple[str, ...] = (),
        profile_key: str | None = None,
        keyword: str | None = "",
        convert: Converter,
        help: str,
        cli: str | None = None,
        cli_type: Callable[[str], Any] = str,
        always_env: bool = False,
        sts_input: bool = False,
    ) -> None:
        self.field = field
        self.env = env
        self.profile_key = profile_key
        self.keyword = field if keyword == "" else keyword
        """``None``: not a ``register()`` keyword."""
        self.convert = convert
        self.help = help
        self.cli = cli
        self.cli_type = cli_type
        self.always_env = always_env
        """Read from the environment even when code selects a profile: a guard that
        protects the job whichever profile its code picks, or a fact about the job."""
        self.sts_input = sts_input
        """Changes what STS returns: part of the cache key."""

    def __repr__(self) -> str:
        return f"Setting({self.field!r})"

    @property
    def env_name(self) -> str:
        """The setting's (first) environment variable."""
        return self.env[0]


if TYPE_CHECKING:  # a type alias costs a fresh process time at import; annotations are strings
    Converter = Callable[[Any, str, Mapping[str, str]], Any]


def _ignoring_environ(check: Callable[[Any, str], Any]) -> Converter:
    return lambda value, source, _environ: check(value, source)


def _convert_session_name(value: Any, _source: str, environ: Mapping[str, str]) -> str | None:
    if value is None:
        return _session_name_from_job(environ)
    return sanitize_session_name(str(value))


def _convert_text(value: Any, _source: str, _environ: Mapping[str, str]) -> str | None:
    return str(value) if value else None


ROLE_ARN_ROW = Setting(
    "role_arn",
    env=("AWS_ROLE_ARN", "ROLE_ARN"),
    profile_key="gitlab_role_arn",
    convert=_ignoring_environ(lambda value, source: _valid_role_arn(str(value), source)),
    help="role to assume (required)",
    cli="--role-arn",
    sts_input=True,
)
TOKEN_VARIABLE_ROW = Setting(
    "token_variable",
    env=("GITLAB_BOTOCORE_TOKEN_VARIABLE",),
    profile_key="gitlab_token_variable",
    convert=_ignoring_environ(_valid_variable_name),
    help="variable holding the ID token",
    cli="--token-variable",
)
ROLE_SESSION_NAME_ROW = Setting(
    "role_session_name",
    env=("AWS_ROLE_SESSION_NAME",),
    profile_key="role_session_name",
    convert=_convert_session_name,
    help="role session name",
    cli="--session-name",
    sts_input=True,
)
DURATION_SECONDS_ROW = Setting(
    "duration_seconds",
    env=("GITLAB_BOTOCORE_DURATION_SECONDS",),
    profile_key="duration_seconds",
    convert=_ignoring_environ(_valid_duration),
    help=f"{MIN_DURATION_SECONDS} to {MAX_DURATION_SECONDS} (default {DEFAULT_DURATION_SECONDS})",
    cli="--duration-seconds",
    cli_type=int,
    sts_input=True,
)
POLICY_ROW = Setting(
    "policy",
    env=("GITLAB_BOTOCORE_POLICY",),
    profile_key="gitlab_policy",
    convert=_ignoring_environ(_valid_policy),
    help="inline session policy (JSON)",
    sts_input=True,
)
POLICY_ARNS_ROW = Setting(
    "policy_arns",
    env=("GITLAB_BOTOCORE_POLICY_ARNS",),
    profile_key="gitlab_policy_arns",
    convert=_ignoring_environ(_valid_policy_arns),
    help="managed session policy ARNs",
    sts_input=True,
)
RETRY_BUDGET_SECONDS_ROW = Setting(
    "retry_budget_seconds",
    env=("GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS",),
    profile_key="gitlab_retry_budget_seconds",
    convert=_ignoring_environ(_valid_retry_budget),
    help="how long transient STS failures are retried, seconds",
)
CHAIN_ROLE_ARNS_ROW = Setting(
    "chain_role_arns",
    env=("GITLAB_BOTOCORE_CHAIN_ROLE_ARNS",),
    profile_key="gitlab_chain_role_arns",
    convert=_ignoring_environ(_valid_chain),
    help="roles to assume next, in order (role chaining)",
    sts_input=True,
)
ALLOWED_ACCOUNT_IDS_ROW = Setting(
    "allowed_account_ids",
    env=("GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS",),
    profile_key="gitlab_allowed_account_ids",
    convert=_ignoring_environ(_valid_account_ids),
    help="accounts whose roles may be assumed",
    always_env=True,
)
AUDIENCES_ROW = Setting(
    "audiences",
    env=("GITLAB_BOTOCORE_AUDIENCES",),
    profile_key="gitlab_audiences",
    convert=_ignoring_environ(lambda value, _source: _items(value)),
    help="extra audiences that mark an auto-detected ID token as meant for AWS",
)
REQUIRE_ROW = Setting(
    "require",
    env=("GITLAB_BOTOCORE_REQUIRE",),
    convert=_ignoring_environ(_valid_flag),
    help="fail instead of stepping aside when there is no role or no token",
    always_env=True,
)
CACHE_ROW = Setting(
    "cache_dir",
    env=("GITLAB_BOTOCORE_CACHE",),
    keyword="cache",
    convert=_cache_dir,
    help="credentials cache shared by the job's processes: 1, or a directory",
    always_env=True,
)
REGION_ROW = Setting(
    "region",
    env=("AWS_REGION",),
    convert=_ignoring_environ(_valid_region),
    help="STS region",
    cli="--region",
    # Not a credential setting: like botocore's clients, it follows the environment even
    # when a profile is explicit. The session's own region comes first (see resolve_settings).
    always_env=True,
    sts_input=True,
)
ENDPOINT_URL_ROW = Setting(
    "endpoint_url",
    # Only as a keyword: the session's STS client honours AWS_ENDPOINT_URL(_STS) and the
    # config file's endpoint settings itself.
    convert=_ignoring_environ(_valid_endpoint_url),
    help="STS endpoint, instead of the one the session's clients would use",
    sts_input=True,
)
CI_SERVER_URL_ROW = Setting(
    "ci_server_url",
    env=("CI_SERVER_URL",),  # set by GitLab in every job
    keyword=None,
    convert=_convert_text,
    help="the GitLab instance, an expected issuer and audience of the ID token",
    always_env=True,
)

SETTINGS: tuple[Setting, ...] = (
    ROLE_ARN_ROW,
    TOKEN_VARIABLE_ROW,
    ROLE_SESSION_NAME_ROW,
    DURATION_SECONDS_ROW,
    POLICY_ROW,
    POLICY_ARNS_ROW,
    RETRY_BUDGET_SECONDS_ROW,
    CHAIN_ROLE_ARNS_ROW,
    ALLOWED_ACCOUNT_IDS_ROW,
    AUDIENCES_ROW,
    REQUIRE_ROW,
    CACHE_ROW,
    REGION_ROW,
    ENDPOINT_URL_ROW,
    CI_SERVER_URL_ROW,
)
"""Every setting, once: the environment names, profile keys, ``register()`` keywords,
command line options and cache key derive from these rows."""
KEYWORDS: dict[str, Setting] = {row.keyword: row for row in SETTINGS if row.keyword}
"""``register()``'s keywords and the setting each one overrides."""


if TYPE_CHECKING:  # for type checkers only: defining a TypedDict costs a fresh process ~0.2 ms
    from typing import TypedDict

    class Overrides(TypedDict, total=False):
        """``register()``'s keywords (one per row of :data:`SETTINGS` that has one); ``None``
        is the same as leaving a keyword out."""

        role_arn: str | None
        token_variable: str | None
        role_session_name: str | None
        duration_seconds: int | None
        policy: str | None
        policy_arns: Sequence[str] | None
        retry_budget_seconds: float | None
        chain_role_arns: Sequence[str] | None
        allowed_account_ids: Sequence[str] | None
        audiences: Sequence[str] | None
        require: bool | None
        cache: str | None
        region: str | None
        endpoint_url: str | None


def check_keywords(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` without ``None`` values; a ``TypeError`` for an unknown keyword, as
    Python raises for a function without ``**kwargs``."""
    unknown = sorted(set(overrides) - set(KEYWORDS))
    if unknown:
        raise TypeError(
            f"register() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(KEYWORDS)}."
        )
    return {key: value for key, value in overrides.items() if value is not None}


class EnvVar:
    """Names of every environment variable the library reads.

    The settings' names come from their rows of :data:`SETTINGS`.
    """

    ROLE_ARN = ROLE_ARN_ROW.env[0]
    TUTORIAL_ROLE_ARN = ROLE_ARN_ROW.env[1]
    TOKEN_VARIABLE = TOKEN_VARIABLE_ROW.env_name
    ROLE_SESSION_NAME = ROLE_SESSION_NAME_ROW.env_name
    DURATION_SECONDS = DURATION_SECONDS_ROW.env_name
    POLICY = POLICY_ROW.env_name
    POLICY_ARNS = POLICY_ARNS_ROW.env_name
    RETRY_BUDGET_SECONDS = RETRY_BUDGET_SECONDS_ROW.env_name
    CHAIN_ROLE_ARNS = CHAIN_ROLE_ARNS_ROW.env_name
    ALLOWED_ACCOUNT_IDS = ALLOWED_ACCOUNT_IDS_ROW.env_name
    AUDIENCES = AUDIENCES_ROW.env_name
    REQUIRE = REQUIRE_ROW.env_name
    CACHE = CACHE_ROW.env_name
    REGION = REGION_ROW.env_name
    CI_SERVER_URL = CI_SERVER_URL_ROW.env_name
    DISABLE = "GITLAB_BOTOCORE_DISABLE"
    XDG_CACHE_HOME = "XDG_CACHE_HOME"
    DEFAULT_REGION = "AWS_DEFAULT_REGION"  # the one botocore reads
    PROFILE = "AWS_PROFILE"
    # Read by botocore's clients, named in our messages.
    ENDPOINT_URL_STS = "AWS_ENDPOINT_URL_STS"
    ENDPOINT_URL = "AWS_ENDPOINT_URL"
    WEB_IDENTITY_TOKEN_FILE = "AWS_WEB_IDENTITY_TOKEN_FILE"
    # Set by GitLab in every job.
    GITLAB_CI = "GITLAB_CI"
    CI_PROJECT_ID = "CI_PROJECT_ID"
    CI_PIPELINE_ID = "CI_PIPELINE_ID"
    CI_JOB_ID = "CI_JOB_ID"
    # Where GitLab ID tokens are looked for, in order, when no variable is named.
    AWS_ID_TOKEN = "AWS_ID_TOKEN"  # GitLab's AWS integration
    GITLAB_OIDC_TOKEN = "GITLAB_OIDC_TOKEN"  # GitLab's AWS tutorial
    LEGACY_JOB_JWT = "CI_JOB_JWT_V2"  # GitLab < 17, deprecated
    LEGACY_JOB_JWT_V1 = "CI_JOB_JWT"


class Settings(ReadOnlyValue):
    """Everything needed to exchange a GitLab ID token for AWS credentials; read-only.

    Equal settings (plus the same token) share one set of credentials per process.
    Each field but the last three has its row in :data:`SETTINGS`; those three describe
    the job rather than the exchange and take no part in equality.

    A :class:`~gitlab_botocore.values.ReadOnlyValue` rather than a frozen dataclass, which
    compiles its generated methods when the module loads (~0.8 ms in every fresh process).
    """

    _COMPARED = tuple(row.field for row in SETTINGS)
    """The fields that make settings equal, one per row; the others describe the job."""
    __slots__ = (*_COMPARED, "role_source", "defer_to_web_identity_file", "in_gitlab_ci")

    role_arn: str
    token_variable: str | None
    """Variable holding the ID token; ``None`` means look in the usual places."""
    role_session_name: str | None
    """Already valid for STS; ``None`` means derive it from the token's job ids."""
    duration_seconds: int
    policy: str | None
    policy_arns: tuple[str, ...]
    region: str | None
    endpoint_url: str | None
    """The ``endpoint_url`` keyword only; ``None`` leaves the endpoint to the session."""
    ci_server_url: str | None
    retry_budget_seconds: float
    """How long transient STS failures are retried (never past the token's expiry)."""
    chain_role_arns: tuple[str, ...]
    """Roles assumed in order with the previous role's credentials (role chaining)."""
    cache_dir: str | None
    """Directory of the opt-in cross-process credentials cache; ``None`` means off."""
    audiences: tuple[str, ...]
    """Audiences, besides ``ci_server_url`` and ``sts.amazonaws.com``, that make an
    auto-detected ID token one meant for AWS."""
    allowed_account_ids: tuple[str, ...]
    """Accounts the role and chained roles must belong to; empty means any."""
    require: bool
    """Fail instead of stepping aside when the role has no token."""
    role_source: str
    """Where the role came from (an environment variable, a profile key...), for messages."""
    defer_to_web_identity_file: str | None
    """The web identity token file when botocore's own web identity provider, not
    this one, should use the role."""
    in_gitlab_ci: bool
    """``GITLAB_CI=true``: stepping aside deserves a warning, not a debug line."""

    def __init__(
        self,
        role_arn: str,
        *,
        token_variable: str | None = None,
        role_session_name: str | None = None,
        duration_seconds: int = DEFAULT_DURATION_SECONDS,
        policy: str | None = None,
        policy_arns: tuple[str, ...] = (),
        region: str | None = None,
        endpoint_url: str | None = None,
        ci_server_url: str | None = None,
        retry_budget_seconds: float = DEFAULT_RETRY_BUDGET_SECONDS,
        chain_role_arns: tuple[str, ...] = (),
        cache_dir: str | None = None,
        audiences: tuple[str, ...] = (),
        allowed_account_ids: tuple[str, ...] = (),
        require: bool = False,
        role_source: str = "",
        defer_to_web_identity_file: str | None = None,
        in_gitlab_ci: bool = False,
    ) -> None:
        arguments = locals()
        self._set(**{name: arguments[name] for name in self.__slots__})

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Settings({fields})"


def sts_inputs(settings: Settings) -> dict[str, Any]:
    """The settings that change what STS returns (rows marked ``sts_input``), by field."""
    return {
        row.field: list(value) if isinstance(value, tuple) else value
        for row in SETTINGS
        if row.sts_input
        for value in [getattr(settings, row.field)]
    }


def install_disabled(environ: Mapping[str, str]) -> bool:
    """True when ``GITLAB_BOTOCORE_DISABLE`` asks ``import gitlab_botocore`` to do nothing."""
    return environ.get(EnvVar.DISABLE, "").strip().lower() in _TRUE


def settings_for_session(
    session: Any, overrides: Mapping[str, Any], environ: Mapping[str, str]
) -> Settings | None:
    """The settings this provider acts on for one botocore session, or ``None`` when it
    does not apply: no role, or the role belongs to botocore's web identity token file."""
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
        use_environment=not profile_is_explicit,
        session_region=session.get_config_variable("region"),
    )


def lookup(
    row: Setting,
    *,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str],
    profile_config: Mapping[str, Any],
    use_environment: bool = True,
) -> tuple[Any, str]:
    """The raw value of one setting and where it came from (for error messages), or
    ``(None, "")``: the keyword, else the environment (unless a profile is explicit and
    the row is not ``always_env``), else the profile."""
    if row.keyword and overrides.get(row.keyword) is not None:
        return overrides[row.keyword], f"the {row.keyword!r} argument"
    if use_environment or row.always_env:
        for name in row.env:
            if environ.get(name, "").strip():
                return environ[name].strip(), name
    value = profile_config.get(row.profile_key) if row.profile_key else None
    if value is not None and str(value).strip():
        return str(value).strip(), f"{row.profile_key!r} in the AWS config profile"
    return None, ""


def _environment_guard(row: Setting, environ: Mapping[str, str]) -> tuple[Any, str]:
    """A guard's value from the environment alone (converted), and its variable."""
    for name in row.env:
        if environ.get(name, "").strip():
            return row.convert(environ[name].strip(), name, environ), name
    return row.convert(None, "", environ), ""


def require_in_effect(overrides: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """Whether GitLab OIDC credentials are required (``register(require=True)`` or
    ``GITLAB_BOTOCORE_REQUIRE``); an invalid value counts as required, so that the
    provider is consulted and reports it."""
    try:
        return bool(
            REQUIRE_ROW.convert(overrides.get(REQUIRE_ROW.field), "", environ)
            or _environment_guard(REQUIRE_ROW, environ)[0]
        )
    except ConfigurationError:
        return True


def resolve_settings(
    *,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str],
    profile_config: Mapping[str, Any],
    use_environment: bool = True,
    session_region: str | None = None,
) -> Settings | None:
    """Build validated :class:`Settings`; ``None`` means "no role configured here".

    The guards (``require``, ``allowed_account_ids``) are read from the environment even
    when code selects a profile: they protect the job, whichever profile its code picks.
    """
    found = {
        row.field: lookup(
            row,
            overrides=overrides,
            environ=environ,
            profile_config=profile_config,
            use_environment=use_environment,
        )
        for row in SETTINGS
    }
    if session_region and overrides.get(REGION_ROW.field) is None:
        # The session's region (AWS_DEFAULT_REGION, the profile's region) comes before
        # AWS_REGION, which botocore does not read.
        found[REGION_ROW.field] = (session_region, "the session's region")

    def convert(row: Setting) -> Any:
        value, source = found[row.field]
        return row.convert(value, source, environ)

    # The guards protect the job from its own code too: a keyword can tighten what the
    # environment asks for, never loosen it.
    require = convert(REQUIRE_ROW)
    required_by_environment, environment_source = _environment_guard(REQUIRE_ROW, environ)
    if required_by_environment and not require:
        require, found[REQUIRE_ROW.field] = True, (True, environment_source)
    role_arn, role_source = found[ROLE_ARN_ROW.field]
    if role_arn is None:
        if require:
            raise ConfigurationError(
                f"{found[REQUIRE_ROW.field][1]} requires GitLab OIDC credentials, but no role is "
                f"configured: set {EnvVar.ROLE_ARN} (or {ROLE_ARN_ROW.profile_key!r} in the AWS "
                "config profile) to the IAM role the job should assume.",
                setting=EnvVar.ROLE_ARN,
            )
        logger.debug(
            "No role configured (%s, %s): not providing credentials.",
            EnvVar.ROLE_ARN,
            ROLE_ARN_ROW.profile_key,
        )
        return None
    role_arn = convert(ROLE_ARN_ROW)
    chain = convert(CHAIN_ROLE_ARNS_ROW)
    allowed = convert(ALLOWED_ACCOUNT_IDS_ROW)
    allowed_source = found[ALLOWED_ACCOUNT_IDS_ROW.field][1]
    from_environment, environment_source = _environment_guard(ALLOWED_ACCOUNT_IDS_ROW, environ)
    if environment_source and environment_source != allowed_source:  # a keyword as well
        allowed_source = f"{allowed_source} together with {environment_source}"
        allowed = tuple(account for account in allowed if account in from_environment)
        if not allowed:
            raise ConfigurationError(
                f"{allowed_source} have no account in common: no role may be assumed. A "
                f"keyword can narrow {environment_source}, not widen it.",
                setting=environment_source,
            )
    chain_source = found[CHAIN_ROLE_ARNS_ROW.field][1]
    for arn, source in [(role_arn, role_source)] + [(arn, chain_source) for arn in chain]:
        _ensure_allowed_account(arn, source, allowed, allowed_source)

    # botocore's web identity provider (after ours in the chain) reads the same
    # AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE: that pair is botocore's, unless code
    # passed the role to register() or the job requires GitLab credentials.
    token_file = environ.get(EnvVar.WEB_IDENTITY_TOKEN_FILE, "").strip()
    defer = bool(token_file and role_source == EnvVar.ROLE_ARN and not require)

    checked = {
        REQUIRE_ROW.field: require,
        ROLE_ARN_ROW.field: role_arn,
        CHAIN_ROLE_ARNS_ROW.field: chain,
        ALLOWED_ACCOUNT_IDS_ROW.field: allowed,  # what was enforced, keyword and environment
    }
    values = {
        row.field: checked[row.field] if row.field in checked else convert(row) for row in SETTINGS
    }
    return Settings(
        **values,
        role_source=role_source,
        defer_to_web_identity_file=token_file if defer else None,
        in_gitlab_ci=environ.get(EnvVar.GITLAB_CI, "").strip().lower() == "true",
    )
