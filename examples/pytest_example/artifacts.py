"""The code under test: publishes a build artifact to S3 with whatever credentials boto3 finds.

It knows nothing about GitLab: in a job, ``import gitlab_botocore`` (here, or anywhere
in the process) is what gives ``boto3.client`` the job's role.
"""

from __future__ import annotations

import boto3


def publish(bucket: str, name: str, content: bytes) -> str:
    """Upload ``content`` under ``artifacts/<name>`` and return its S3 URL."""
    key = f"artifacts/{name}"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=content)
    return f"s3://{bucket}/{key}"
