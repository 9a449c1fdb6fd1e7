"""Upload a directory to S3 from a GitLab CI job, authenticated by the job's ID token.

Usage: python deploy.py <bucket> <directory>

The job provides AWS_ROLE_ARN and an ID token (see .gitlab-ci.yml next to this file);
importing gitlab_botocore is the only AWS set-up the script does.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import boto3

import gitlab_botocore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bucket")
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    session = boto3.Session()
    try:
        identity = session.client("sts").get_caller_identity()
    except gitlab_botocore.GitLabOIDCError as error:
        print(f"Cannot get AWS credentials: {error}", file=sys.stderr)
        return 1
    print(f"Deploying as {identity['Arn']}")

    s3 = session.client("s3")
    files = sorted(path for path in args.directory.rglob("*") if path.is_file())
    for path in files:
        key = path.relative_to(args.directory).as_posix()
        s3.upload_file(str(path), args.bucket, key)
        print(f"  s3://{args.bucket}/{key}")
    print(f"Uploaded {len(files)} file(s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
