"""Offline end-to-end demo: a GitLab CI job getting AWS credentials from its ID token.

Everything runs on 127.0.0.1: a GitLab-like OIDC issuer that mints ID tokens, moto
for IAM and S3, and an STS in front of moto that verifies tokens as AWS does
(signature via the issuer's JWKS, audience, expiry, the role's trust policy).
time-machine moves the clock of this process (servers included) to show a refresh.
Run it with ``make demo``.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import time
from typing import Any

import time_machine

from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.issuer import FakeGitLab

PROJECT = "mygroup/myproject"
SESSIONS = 10
REFRESH_AFTER_MINUTES = 47  # 13 min before the 1-hour credentials expire: a background refresh


def set_up_aws(gitlab: FakeGitLab, aws: FakeAWS) -> str:
    """What an AWS administrator does once: an OIDC provider and a role that trusts main."""
    provider_arn = aws.create_oidc_provider(gitlab.issuer)
    trust_policy = aws.trust_policy_for(
        provider_arn, sub=f"project_path:{PROJECT}:ref_type:branch:ref:main", aud=gitlab.issuer
    )
    return aws.create_role("demo-deploy", trust_policy)


def become_a_job(gitlab: FakeGitLab, aws: FakeAWS, role_arn: str) -> None:
    """What GitLab puts in the environment of a job that declares ``id_tokens:``."""
    for name in list(os.environ):
        if name.startswith("AWS_"):  # no keys, profile or region of the machine
            del os.environ[name]
    os.environ.update(
        {
            "CI_SERVER_URL": gitlab.issuer,
            "CI_PROJECT_ID": "42",
            "CI_PIPELINE_ID": "1001",
            "CI_JOB_ID": "5001",
            "GITLAB_OIDC_TOKEN": gitlab.mint(project_path=PROJECT, ref="main"),
            "AWS_ROLE_ARN": role_arn,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": aws.moto_url,
            "AWS_ENDPOINT_URL_STS": aws.sts_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )


def wait_for_new_expiry(credentials: Any, old: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while credentials.expiration == old and time.monotonic() < deadline:
        time.sleep(0.02)


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    with FakeGitLab() as gitlab, FakeAWS() as aws:
        role_arn = set_up_aws(gitlab, aws)
        become_a_job(gitlab, aws, role_arn)
        print(
            f"A GitLab CI job of {PROJECT} (ref main) and an IAM role that trusts it, offline:\n"
            f"GitLab issuer {gitlab.issuer}, moto {aws.moto_url}, verifying STS {aws.sts_url}\n"
        )

        # The job's own code: one import, then plain boto3.
        import boto3

        import gitlab_botocore

        session = boto3.Session()
        arn = session.client("sts").get_caller_identity()["Arn"]
        print(f"Identity  {arn}")

        session.client("s3").create_bucket(Bucket="demo-site")
        for number in range(SESSIONS):
            boto3.Session().client("s3").put_object(
                Bucket="demo-site", Key=f"page-{number}.html", Body=b"<h1>deployed</h1>"
            )
        print(
            f"Sharing   {SESSIONS} more boto3 sessions uploaded to s3://demo-site: "
            f"{aws.sts.assume_role_calls} STS call in all"
        )

        credentials = session.get_credentials()
        first_expiry = credentials.expiration
        with time_machine.travel(time.time() + REFRESH_AFTER_MINUTES * 60):
            boto3.Session().client("s3").list_objects_v2(Bucket="demo-site")  # not kept waiting
            wait_for_new_expiry(credentials, first_expiry)
        print(
            f"Refresh   {REFRESH_AFTER_MINUTES} min later (clock moved): renewed in the "
            f"background, {aws.sts.assume_role_calls} STS calls; expiry "
            f"{first_expiry:%H:%M} -> {credentials.expiration:%H:%M} UTC"
        )

        # A job of another project is refused, with an explanation.
        os.environ["GITLAB_OIDC_TOKEN"] = gitlab.mint(project_path="other/project", ref="main")
        try:
            boto3.Session().client("sts").get_caller_identity()
        except gitlab_botocore.GitLabOIDCError as error:
            print(f"Refused   a job of other/project: {type(error).__name__}")
            print(textwrap.indent(str(error), " " * 10))
        else:
            print("Refused   a job of other/project was unexpectedly admitted", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
