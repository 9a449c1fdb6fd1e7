"""The ``gitlab-botocore`` command: credentials for tools that are not Python, and diagnosis.

Exit codes: 0 success; 1 the operation failed (no credentials, a failed doctor check,
a trust policy that would not admit the job); 2 bad usage. A failure prints one message,
never a traceback, unless ``GITLAB_BOTOCORE_DEBUG=1`` asks for it.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, Callable, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from gitlab_botocore import __version__
from gitlab_botocore.exceptions import GitLabOIDCError
from gitlab_botocore.redaction import redact
from gitlab_botocore.tools.commands import (
    CLI_SETTINGS,
    EXIT_FAILED,
    Context,
    cmd_credential_process,
    cmd_doctor,
    cmd_env,
    cmd_trust_policy,
    cmd_whoami,
)

EXIT_USAGE = 2  # argparse's own exit code for bad usage
EXIT_INTERRUPTED = 130
DEBUG_VARIABLE = "GITLAB_BOTOCORE_DEBUG"
"""Set to 1 to print the traceback of a failure."""
ISSUES_URL = "https://gitlab.com/gitlab-botocore/gitlab-botocore/-/issues"


# -- parsing ------------------------------------------------------------------------------


def _add_common_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """The settings overrides every command takes, on ``parser``.

    They are added to the main parser (default ``None``) and to each subcommand (default
    ``SUPPRESS``: absent there, they leave the main parser's value alone), so that they work
    before and after the command name.
    """
    group = parser.add_argument_group("configuration (otherwise: environment and AWS profile)")
    for row in CLI_SETTINGS:
        names = " or ".join(f"${name}" for name in row.env)
        group.add_argument(
            row.cli or "",
            dest=row.keyword,
            type=row.cli_type,
            default=default,
            help=f"{row.help} (otherwise {names})" if names else row.help,
        )
    group.add_argument(
        "--profile", default=default, help="AWS config profile to read settings from"
    )


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
        handler: Callable[[Context, TextIO], int],
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
    environ = os.environ if environ is None else environ
    if args.secrets_hint:
        _warn_secrets_on_terminal(args.command, args.secrets_hint, sys.stdout)
    try:
        context = Context(args, environ)
        code: int = args.handler(context, sys.stdout)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (``... | head``): nothing left to say
        _discard_stdout()
        return EXIT_FAILED
    except Exception as error:
        sys.stderr.write(failure_message(args.command, error, environ))
        return EXIT_FAILED
    return code


def failure_message(command: str, error: BaseException, environ: Mapping[str, str]) -> str:
    """What to print when ``command`` failed with ``error``: one paragraph, secrets
    redacted; the traceback too when :data:`DEBUG_VARIABLE` is set."""
    if isinstance(error, (GitLabOIDCError, BotoCoreError, ClientError)):
        text = str(error)
    else:  # a bug: say so, briefly, and how to see where it is
        detail = " ".join(str(error).split())
        detail = detail[:300] + "..." if len(detail) > 300 else detail
        text = (
            f"unexpected error, {type(error).__name__}: {detail or 'no detail'}. This is a bug "
            f"in gitlab-botocore; please report it at {ISSUES_URL}"
        )
        if not _debugging(environ):
            text += f" with the traceback ({DEBUG_VARIABLE}=1 prints it)"
        text += "."
    message = f"gitlab-botocore {command}: {text}\n"
    if _debugging(environ):
        message = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        message += f"\ngitlab-botocore {command}: {text}\n"
    return redact(message)


def _debugging(environ: Mapping[str, str]) -> bool:
    return environ.get(DEBUG_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}


def _discard_stdout() -> None:
    # Python flushes stdout again at exit and would report the broken pipe there.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (tests): nothing to flush later
        pass
    finally:
        os.close(devnull)
