"""Offline end-to-end demo: a GitLab CI job getting AWS credentials from its ID token.

Everything runs on 127.0.0.1: a GitLab-like OIDC issuer that mints ID tokens, moto
for IAM and S3, and an STS in front of moto that verifies tokens as AWS does
(signature via the issuer's JWKS, audience, expiry, the role's trust policy).
Run it with ``make demo``.
"""

from __future__ import annotations

import logging
import os
import sys

from gitlab_botocore.testing.issuer import FakeGitLab
from gitlab_botocore.testing.sts import FakeAWS

PROJECT = "mygroup/myproject"


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    with FakeGitLab() as gitlab, FakeAWS() as aws:
        print(f"GitLab issuer        {gitlab.issuer}")
        print(f"AWS (moto)           {aws.moto_url}")
        print(f"STS (verifying)      {aws.sts_url}")

        # Step 1 and 2 of GitLab's guide, done once by an AWS administrator.
        provider_arn = aws.create_oidc_provider(gitlab.issuer)
        trust_policy = aws.trust_policy_for(
            provider_arn, sub=f"project_path:{PROJECT}:ref_type:branch:ref:main", aud=gitlab.issuer
        )
        role_arn = aws.create_role("demo-deploy", trust_policy)
        print(f"IAM role             {role_arn}\n")

        # What GitLab puts in the environment of a job that declares `id_tokens:`.
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
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)

        # The job's own code: one import, then plain boto3.
        import boto3

        import gitlab_botocore

        session = boto3.Session()
        identity = session.client("sts").get_caller_identity()
        credentials = session.get_credentials()
        print(f"Assumed identity     {identity['Arn']}")
        print(f"Session name         {identity['Arn'].rsplit('/', 1)[1]}")
        print(f"Credentials method   {credentials.method}, expire {credentials.expiration}")

        s3 = session.client("s3")
        s3.create_bucket(Bucket="demo-site")
        s3.put_object(Bucket="demo-site", Key="index.html", Body=b"<h1>deployed</h1>")
        for _ in range(10):
            boto3.Session().client("s3").list_objects_v2(Bucket="demo-site")
        print("Uploaded             s3://demo-site/index.html")
        print(f"STS calls            {aws.sts.assume_role_calls} for 11 sessions\n")

        # A job of another project is refused, with an explanation.
        os.environ["GITLAB_OIDC_TOKEN"] = gitlab.mint(project_path="other/project", ref="main")
        try:
            boto3.Session().client("sts").get_caller_identity()
        except gitlab_botocore.GitLabOIDCError as error:
            print(f"Another project      refused: {type(error).__name__}\n{error}")
        else:
            print("Another project      unexpectedly admitted", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
