"""``manage.py gitlab_aws_whoami``: who AWS thinks this job is. Prints no secret."""

from __future__ import annotations

import datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from django.core.management.base import BaseCommand, CommandError

from gitlab_botocore.exceptions import GitLabOIDCError
from gitlab_botocore.settings import EnvVar

NO_CREDENTIALS_HINT = (
    "No AWS credentials found. In a GitLab CI job, declare an ID token under 'id_tokens:' "
    f"and set {EnvVar.ROLE_ARN} to the role to assume."
)


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Show the AWS account, assumed role, session name and credential expiry this "
        "process authenticates as. Exits with status 1 and the reason if it cannot."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--profile", help="AWS profile to use (default: the usual chain)")

    def handle(self, *args: Any, **options: Any) -> None:
        session = boto3.Session(profile_name=options.get("profile"))
        try:
            credentials = session.get_credentials()
            if credentials is None:
                raise NoCredentialsError()
            # One read for keys and expiry: the identity shown is that of the keys whose
            # expiry is shown, even if a refresh lands meanwhile.
            keys, expiry = _keys_and_expiry(credentials)
            identity = session.client(
                "sts",
                aws_access_key_id=keys.access_key,
                aws_secret_access_key=keys.secret_key,
                aws_session_token=keys.token,
            ).get_caller_identity()
        except GitLabOIDCError as error:
            raise CommandError(str(error)) from error
        except NoCredentialsError as error:
            raise CommandError(NO_CREDENTIALS_HINT) from error
        except (BotoCoreError, ClientError) as error:
            raise CommandError(f"Cannot get AWS credentials: {error}") from error

        arn = str(identity["Arn"])
        session_name = arn.rsplit("/", 1)[-1] if ":assumed-role/" in arn else "-"
        rows = [
            ("Account", str(identity["Account"])),
            ("Assumed role", arn),
            ("Session name", session_name),
            ("Credentials", getattr(credentials, "method", None) or "-"),
            ("Expires", _expiry(expiry)),
        ]
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            self.stdout.write(f"{label:<{width}}  {value}")


def _keys_and_expiry(credentials: Any) -> tuple[Any, datetime.datetime | None]:
    """Keys and their expiry, read together when the credentials can (gitlab-botocore's);
    botocore's own keep the expiry private and can only be read one after the other."""
    issued = getattr(credentials, "get_issued_credentials", None)
    if issued is not None:
        value = issued()
        return value, value.expiration
    keys = credentials.get_frozen_credentials()
    expiry = getattr(credentials, "_expiry_time", None)
    return keys, expiry if isinstance(expiry, datetime.datetime) else None


def _expiry(expiry: datetime.datetime | None) -> str:
    if expiry is None:
        return "never (static credentials)"
    expiry = expiry.astimezone(datetime.timezone.utc)
    minutes = int((expiry - datetime.datetime.now(datetime.timezone.utc)).total_seconds() // 60)
    return f"{expiry:%Y-%m-%dT%H:%M:%SZ} (in {minutes} min)"
