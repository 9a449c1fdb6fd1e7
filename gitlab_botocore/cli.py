"""The ``gitlab-botocore`` command: credentials for tools that are not Python, and diagnosis.

Exit codes: 0 success; 1 the operation failed (no credentials, a failed doctor check,
a trust policy that would not admit the job); 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, TextIO

import botocore.session
from botocore.exceptions import BotoCoreError

from ._version import __version__
from .exceptions import ConfigurationError, GitLabOIDCError, TokenNotFoundError
from .id_token import EnvironmentTokenSource, IdToken
from .settings import EnvVar, Settings, settings_for_session

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Context:
    """What every command needs: a botocore session, its settings and the token source."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args = args
        self.environ = environ
        self.session = botocore.session.Session(profile=args.profile)
        self.overrides = {
            key: value
            for key, value in {
                "role_arn": args.role_arn,
                "token_variable": args.token_variable,
                "duration_seconds": args.duration_seconds,
                "region": args.region,
                "role_session_name": args.session_name,
            }.items()
            if value is not None
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

    def credentials(self) -> Any:
        """The library's credentials, fetched; raises GitLabOIDCError with the reason."""
        if self.settings_error is not None:
            raise self.settings_error
        if self.settings is None:
            raise ConfigurationError(
                f"No role configured: pass --role-arn, set {EnvVar.ROLE_ARN}, or put "
                "gitlab_role_arn in the AWS config profile.",
                setting=EnvVar.ROLE_ARN,
            )
        self.token().ensure_not_expired()  # the precise error if the token is missing or bad
        from .provider import GitLabOIDCProvider

        credentials = GitLabOIDCProvider(self.session, self.overrides, self.environ).load()
        if credentials is None:  # only if the environment changed under us
            raise TokenNotFoundError("No GitLab ID token found.")
        credentials.get_frozen_credentials()
        return credentials

    def signed_client(self, service: str, credentials: Any) -> Any:
        frozen = credentials.get_frozen_credentials()
        settings = self.settings
        return self.session.create_client(
            service,
            region_name=settings.region if settings else None,
            endpoint_url=settings.endpoint_url if settings and service == "sts" else None,
            aws_access_key_id=frozen.access_key,
            aws_secret_access_key=frozen.secret_key,
            aws_session_token=frozen.token,
        )


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _aligned(rows: Sequence[tuple[str, str]], out: TextIO) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out.write(f"{label.ljust(width)}  {value}\n")


# -- commands ---------------------------------------------------------------------------


def cmd_credential_process(context: _Context, out: TextIO) -> int:
    credentials = context.credentials()
    frozen = credentials.get_frozen_credentials()
    document = {
        "Version": 1,
        "AccessKeyId": frozen.access_key,
        "SecretAccessKey": frozen.secret_key,
        "SessionToken": frozen.token,
        "Expiration": _iso(credentials.expiration),
    }
    if credentials.account_id:
        document["AccountId"] = credentials.account_id
    json.dump(document, out)
    out.write("\n")
    return EXIT_OK


def cmd_env(context: _Context, out: TextIO) -> int:
    credentials = context.credentials()
    frozen = credentials.get_frozen_credentials()
    variables = {
        "AWS_ACCESS_KEY_ID": frozen.access_key,
        "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
        "AWS_SESSION_TOKEN": frozen.token,
        "AWS_CREDENTIAL_EXPIRATION": _iso(credentials.expiration),
    }
    fmt = context.args.format
    if fmt == "json":
        json.dump(variables, out, indent=2)
        out.write("\n")
    else:
        prefix = "export " if fmt == "sh" else ""
        for name, value in variables.items():
            out.write(f"{prefix}{name}={shlex.quote(value)}\n")
    return EXIT_OK


def cmd_whoami(context: _Context, out: TextIO) -> int:
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


def cmd_doctor(context: _Context, out: TextIO) -> int:
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


def cmd_trust_policy(context: _Context, out: TextIO) -> int:
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


def _use_colour(out: TextIO, environ: Mapping[str, str]) -> bool:
    return "NO_COLOR" not in environ and hasattr(out, "isatty") and out.isatty()


# -- parsing ------------------------------------------------------------------------------


def _add_common_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """The settings overrides every command takes, on ``parser``.

    They are added to the main parser (default ``None``) and to each subcommand (default
    ``SUPPRESS``: absent there, they leave the main parser's value alone), so that they work
    before and after the command name.
    """
    group = parser.add_argument_group("configuration (otherwise: environment and AWS profile)")
    group.add_argument(
        "--role-arn", default=default, help="role to assume (default: $AWS_ROLE_ARN, $ROLE_ARN)"
    )
    group.add_argument("--token-variable", default=default, help="variable holding the ID token")
    group.add_argument(
        "--profile", default=default, help="AWS config profile to read settings from"
    )
    group.add_argument(
        "--duration-seconds", type=int, default=default, help="900 to 43200 (default 3600)"
    )
    group.add_argument("--region", default=default, help="STS region")
    group.add_argument("--session-name", default=default, help="role session name")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="gitlab-botocore",
        description="AWS credentials from a GitLab CI/CD job's OIDC ID token.",
        epilog="Exit codes: 0 success, 1 failure, 2 bad usage. The configuration options "
        "go before or after COMMAND.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common_options(parser, None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        handler: Callable[[_Context, TextIO], int],
        help_text: str,
        *,
        secrets_hint: str | None = None,
    ) -> Any:
        """``secrets_hint``: the command prints credentials; how to use them unseen."""
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler, secrets_hint=secrets_hint)
        return sub

    add(
        "credential-process",
        cmd_credential_process,
        "print credentials as AWS credential_process JSON (for the AWS config file)",
        secrets_hint="name this command in credential_process of an AWS config profile",
    )
    env = add(
        "env",
        cmd_env,
        'print credentials as environment variables: eval "$(gitlab-botocore env)"',
        secrets_hint='capture them instead: eval "$(gitlab-botocore env)"',
    )
    env.add_argument(
        "--format",
        choices=["sh", "json", "dotenv"],
        default="sh",
        help="sh: export lines for eval (default); json: one object; dotenv: NAME=value lines "
        "for a .env file (every reader of that file gets the credentials)",
    )
    whoami = add("whoami", cmd_whoami, "show the identity the job gets (GetCallerIdentity)")
    whoami.add_argument("--json", action="store_true", help="machine-readable output")
    doctor = add("doctor", cmd_doctor, "check everything the exchange needs, step by step")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    trust = add(
        "trust-policy", cmd_trust_policy, "print, or --check, an IAM trust policy for this job"
    )
    trust.add_argument(
        "--account-id", help="account of the IAM OIDC provider (default: the role's)"
    )
    trust.add_argument("--ref", help="admit this ref instead of the job's")
    trust.add_argument("--ref-type", choices=["branch", "tag"], help="admit this ref type")
    trust.add_argument("--any-branch", action="store_true", help="admit every branch")
    trust.add_argument(
        "--protected-only",
        action="store_true",
        help="explains why AWS cannot restrict a role to protected refs, and what to do",
    )
    trust.add_argument("--check", metavar="FILE", help="explain whether FILE admits this job")
    trust.add_argument("--json", action="store_true", help="machine-readable --check output")
    return parser


def _warn_secrets_on_terminal(command: str, hint: str, out: TextIO) -> None:
    """Credentials are meant for a pipe, ``eval`` or a file; say so when they would be shown."""
    if hasattr(out, "isatty") and out.isatty():
        sys.stderr.write(
            f"gitlab-botocore {command}: warning: this prints live AWS credentials (secrets) "
            f"to the terminal; {hint}.\n"
        )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.secrets_hint:
        _warn_secrets_on_terminal(args.command, args.secrets_hint, sys.stdout)
    try:
        context = _Context(args, os.environ if environ is None else environ)
        code: int = args.handler(context, sys.stdout)
    except (GitLabOIDCError, BotoCoreError) as error:
        sys.stderr.write(f"gitlab-botocore {args.command}: {error}\n")
        return EXIT_FAILED
    return code
