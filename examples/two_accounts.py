"""Promote a build from a staging account to a production account in one GitLab job.

Usage: python two_accounts.py <staging-bucket> <production-bucket> <key>

Each account is a named profile in the AWS config file (see aws-config next to this file)
naming its role with ``gitlab_role_arn``. The job's ID token is exchanged once per role;
sessions of the same profile share the credentials.
"""

from __future__ import annotations

import argparse
import sys

import boto3

import gitlab_botocore

SOURCE_PROFILE = "staging"
TARGET_PROFILE = "production"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("staging_bucket")
    parser.add_argument("production_bucket")
    parser.add_argument("key")
    args = parser.parse_args(argv)

    staging = boto3.Session(profile_name=SOURCE_PROFILE)
    production = boto3.Session(profile_name=TARGET_PROFILE)
    try:
        for name, session in ((SOURCE_PROFILE, staging), (TARGET_PROFILE, production)):
            identity = session.client("sts").get_caller_identity()
            print(f"{name:<10} account {identity['Account']} as {identity['Arn']}")
    except gitlab_botocore.GitLabOIDCError as error:
        print(f"Cannot get AWS credentials: {error}", file=sys.stderr)
        return 1

    build = staging.client("s3").get_object(Bucket=args.staging_bucket, Key=args.key)
    production.client("s3").put_object(
        Bucket=args.production_bucket, Key=args.key, Body=build["Body"].read()
    )
    print(
        f"Copied s3://{args.staging_bucket}/{args.key} ({SOURCE_PROFILE}) "
        f"to s3://{args.production_bucket}/{args.key} ({TARGET_PROFILE})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
