"""What each ``gitlab-botocore`` command does, given the parsed command line.

:mod:`gitlab_botocore.tools.cli` parses the arguments and handles failures; each ``cmd_*``
function here gets a :class:`Context` and the output stream and returns the exit code:
0 success, 1 the operation failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import botocore.session

from gitlab_botocore.exceptions import ConfigurationError, GitLabOIDCError, TokenNotFoundError
from gitlab_botocore.exchange import IssuedCredentials
from gitlab_botocore.id_token import IdToken
from gitlab_botocore.settings import (
    ROLE_ARN_ROW,
    SETTINGS,
    EnvVar,
    Settings,
    settings_for_session,
)
from gitlab_botocore.token_source import EnvironmentTokenSource

EXIT_OK, EXIT_FAILED = 0, 1
CLI_SETTINGS = tuple(row for row in SETTINGS if row.cli)
"""The settings every command takes as an option (``--role-arn``...)."""
# Values python-dotenv, docker and GitLab's dotenv reports all read literally, unquoted.
_DOTENV_PLAIN = re.compile(r"[A-Za-z0-9_+/=.:,@%-]*")


class Context:
    """What every command needs: a botocore session, its settings and the token source."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args = args
        self.environ = environ
        self.session = botocore.session.Session(profile=args.profile)
        self.overrides = {
            row.keyword: getattr(args, row.keyword)
            for row in CLI_SETTINGS
            if row.keyword and getattr(args, row.keyword) is not None
        }
        self.settings_error: GitLabOIDCError | None = None
        try:
            self.settings: Settings | None = settings_for_session(
                self.session, self.overrides, environ
            )
        except ConfigurationError as error:
            self.settings, self.settings_error = None, error
        token_variable = self.settings.token_variable if self.settings else args.token_variable
        self.source = EnvironmentTokenSource(
            token_variable,
            environ.get(EnvVar.CI_SERVER_URL),
            environ,
            audiences=self.settings.audiences if self.settings else (),
        )

    def token(self) -> IdToken:
        return self.source.get_token()

    def credentials(self) -> IssuedCredentials:
        """The library's credentials, fetched: keys and expiry as one value, so that no
        command can mix two generations; raises GitLabOIDCError with the reason."""
        if self.settings_error is not None:
            raise self.settings_error
        if self.settings is None:
            raise ConfigurationError(
                f"No role configured: pass {ROLE_ARN_ROW.cli}, set {EnvVar.ROLE_ARN}, or put "
                f"{ROLE_ARN_ROW.profile_key} in the AWS config profile.",
                setting=EnvVar.ROLE_ARN,
            )
        self.token().ensure_not_expired()  # the precise error if the token is missing or bad
        from gitlab_botocore.provider import GitLabOIDCProvider

        credentials = GitLabOIDCProvider(self.session, self.overrides, self.environ).load()
        if credentials is None:  # only if the environment changed under us
            raise TokenNotFoundError("No GitLab ID token found.")
        return credentials.get_issued_credentials()

    def signed_client(self, service: str, credentials: IssuedCredentials) -> Any:
        settings = self.settings
        return self.session.create_client(
            service,
            region_name=settings.region if settings else None,
            endpoint_url=settings.endpoint_url if settings and service == "sts" else None,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.token,
        )


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _aligned(rows: Sequence[tuple[str, str]], out: TextIO) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out.write(f"{label.ljust(width)}  {value}\n")


def _use_colour(out: TextIO, environ: Mapping[str, str]) -> bool:
    return "NO_COLOR" not in environ and hasattr(out, "isatty") and out.isatty()


# -- commands ---------------------------------------------------------------------------


def cmd_credential_process(context: Context, out: TextIO) -> int:
    credentials = context.credentials()
    document = {
        "Version": 1,
        "AccessKeyId": credentials.access_key,
        "SecretAccessKey": credentials.secret_key,
        "SessionToken": credentials.token,
        "Expiration": _iso(credentials.expiration),
    }
    if credentials.account_id:
        document["AccountId"] = credentials.account_id
    json.dump(document, out)
    out.write("\n")
    return EXIT_OK


def cmd_env(context: Context, out: TextIO) -> int:
    credentials = context.credentials()
    variables = {
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        "AWS_SESSION_TOKEN": credentials.token,
        "AWS_CREDENTIAL_EXPIRATION": _iso(credentials.expiration),
    }
    fmt = context.args.format
    if fmt == "json":
        json.dump(variables, out, indent=2)
        out.write("\n")
    elif fmt == "dotenv":  # built whole first: a value it refuses leaves no partial output
        out.write("".join(f"{name}={dotenv_quote(value)}\n" for name, value in variables.items()))
    else:
        for name, value in variables.items():
            out.write(f"export {name}={shlex.quote(value)}\n")
    return EXIT_OK


def dotenv_quote(value: str) -> str:
    """``value`` as a dotenv value: plain when that is unambiguous, else single-quoted
    with backslash escapes, as python-dotenv reads them.

    Raises :class:`GitLabOIDCError` for what no dotenv quoting protects: a line break,
    or ``${`` (python-dotenv expands ``${NAME}`` even inside single quotes).
    """
    if "\n" in value or "\r" in value or "${" in value:
        raise GitLabOIDCError(
            "A credential holds a line break or '${', which a dotenv file cannot carry "
            "unchanged; use --format json or --format sh."
        )
    if _DOTENV_PLAIN.fullmatch(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cmd_whoami(context: Context, out: TextIO) -> int:
    credentials = context.credentials()
    identity = context.signed_client("sts", credentials).get_caller_identity()
    arn = identity["Arn"]
    expires = credentials.expiration
    left = int((expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds() // 60)
    result = {
        "Account": identity["Account"],
        "Arn": arn,
        "SessionName": arn.rsplit("/", 1)[-1] if ":assumed-role/" in arn else None,
        "Expiration": _iso(expires),
    }
    if context.args.json:
        json.dump(result, out, indent=2)
        out.write("\n")
    else:
        _aligned(
            [
                ("Account", result["Account"]),
                ("ARN", arn),
                ("Session", result["SessionName"] or "-"),
                ("Expires", f"{result['Expiration']} (in {left} min)"),
            ],
            out,
        )
    return EXIT_OK


def cmd_doctor(context: Context, out: TextIO) -> int:
    from .doctor import run_checks

    def exchange() -> str:
        credentials = context.credentials()
        account = credentials.account_id or "?"
        return f"credentials for account {account}, expire {_iso(credentials.expiration)}"

    checks = list(
        run_checks(
            context.settings,
            context.settings_error,
            context.source,
            exchange,
            context.environ,
            session=context.session,
        )
    )
    healthy = all(check.ok is not False for check in checks)
    if context.args.json:
        json.dump(
            {
                "ok": healthy,
                "checks": [
                    {"name": c.name, "ok": c.ok, "detail": c.detail, "warning": c.warning}
                    for c in checks
                ],
            },
            out,
            indent=2,
        )
        out.write("\n")
        return EXIT_OK if healthy else EXIT_FAILED
    colour = _use_colour(out, context.environ)
    marks = {True: ("ok", "32"), False: ("FAIL", "31"), None: ("skip", "33")}
    width = max(len(check.name) for check in checks)
    for check in checks:
        mark, code = ("warn", "33") if check.warning else marks[check.ok]
        shown = f"\033[{code}m{mark:<4}\033[0m" if colour else f"{mark:<4}"
        first, *rest = check.detail.splitlines() or [""]
        out.write(f"{shown}  {check.name.ljust(width)}  {first}\n")
        for line in rest:
            out.write(f"{'':4}  {'':{width}}  {line}\n")
    out.write("All checks passed.\n" if healthy else "Some checks failed.\n")
    return EXIT_OK if healthy else EXIT_FAILED


def cmd_trust_policy(context: Context, out: TextIO) -> int:
    from .trust_policy import (
        check_trust_policy,
        policy_for_token,
        provider_arn_for,
        provider_arn_in,
    )

    args = context.args
    token = context.token()
    role_arn = context.settings.role_arn if context.settings else None
    account = args.account_id or (role_arn.split(":")[4] if role_arn else None)
    if not account:
        raise ConfigurationError(
            f"Which account? Pass --account-id, or configure the role ({EnvVar.ROLE_ARN}).",
            setting="--account-id",
        )
    # The partition (aws, aws-us-gov, aws-cn) is the role's: a provider lives beside its role.
    partition = role_arn.split(":")[1] if role_arn else None
    if args.check is None:
        try:
            policy = policy_for_token(
                token.claims,
                account_id=account,
                ref=args.ref,
                ref_type=args.ref_type,
                any_branch=args.any_branch,
                protected_only=args.protected_only,
                partition=partition or "aws",
            )
        except ValueError as error:  # also UnenforceableConditionError
            setting = "--protected-only" if args.protected_only else "--ref"
            raise ConfigurationError(str(error), setting=setting) from None
        json.dump(policy, out, indent=2)
        out.write("\n")
        return EXIT_OK
    try:
        policy_document = json.loads(Path(args.check).read_text())
        if not isinstance(policy_document, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"Cannot read the trust policy {args.check}: {error}", setting="--check"
        ) from None
    except RecursionError:  # nested deeper than any IAM policy can be
        raise ConfigurationError(
            f"Cannot read the trust policy {args.check}: it is nested too deeply to be a "
            "policy document.",
            setting="--check",
        ) from None
    issuer = token.issuer or ""
    named = provider_arn_in(policy_document, issuer)
    if (
        named is not None
        and named.split(":")[4] == account
        and partition in (None, named.split(":")[1])
    ):
        provider_arn = named
    else:
        provider_arn = provider_arn_for(
            issuer, account, partition=partition or (named.split(":")[1] if named else "aws")
        )
    report = check_trust_policy(policy_document, token.claims, provider_arn=provider_arn)
    if args.json:
        json.dump(
            {
                "admits": report.admits,
                "passed": report.passed,
                "findings": [
                    {"severity": f.severity, "message": f.message} for f in report.findings
                ],
            },
            out,
            indent=2,
        )
        out.write("\n")
    else:
        out.write(
            f"{'Admits' if report.admits else 'Does NOT admit'} this job (sub {token.subject!r}).\n"
        )
        for finding in report.findings:
            out.write(f"  {finding.severity:<8}  {finding.message}\n")
    return EXIT_OK if report.passed else EXIT_FAILED
