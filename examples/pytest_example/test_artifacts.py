"""Tests of artifacts.py with gitlab-botocore's pytest fixtures.

The first three run anywhere, offline: ``gitlab_ci_env`` makes each test a GitLab CI job
whose ID token and role come from ``fake_gitlab_aws``, a local GitLab and AWS. The last
one runs only in a real GitLab job with an ID token and ``AWS_ROLE_ARN``.
"""

from __future__ import annotations

import boto3
import pytest
from artifacts import publish

import gitlab_botocore
from gitlab_botocore.testing.faults import Fault
from gitlab_botocore.testing.pytest_plugin import FakeGitLabAWS, GitLabCIJob


def test_publishes_as_the_job(gitlab_ci_env: GitLabCIJob, fake_gitlab_aws: FakeGitLabAWS) -> None:
    fake_gitlab_aws.client("s3").create_bucket(Bucket="builds")

    url = publish("builds", "app.tar.gz", b"release")

    assert url == "s3://builds/artifacts/app.tar.gz"
    stored = fake_gitlab_aws.client("s3").get_object(Bucket="builds", Key="artifacts/app.tar.gz")
    assert stored["Body"].read() == b"release"
    [call] = fake_gitlab_aws.calls  # one exchange of the job's ID token
    assert call.role_arn == gitlab_ci_env.role_arn
    assert call.session_name == "GitLabRunner-42-1001-5001"


def test_only_main_may_publish(gitlab_ci_env: GitLabCIJob, fake_gitlab_aws: FakeGitLabAWS) -> None:
    # The trust policy is what is under test here: AWS (the fake) evaluates it.
    role = fake_gitlab_aws.role(
        "publisher", sub="project_path:mygroup/myproject:ref_type:branch:ref:main"
    )
    gitlab_ci_env.set(AWS_ROLE_ARN=role)
    gitlab_ci_env.token(ref="feature/login")

    with pytest.raises(gitlab_botocore.AccessDeniedError) as refused:
        publish("builds", "app.tar.gz", b"feature build")

    assert "ref_type:branch:ref:feature/login" in str(refused.value)


def test_survives_sts_throttling(
    gitlab_ci_env: GitLabCIJob, fake_gitlab_aws: FakeGitLabAWS
) -> None:
    fake_gitlab_aws.client("s3").create_bucket(Bucket="busy-builds")
    fake_gitlab_aws.inject(Fault.throttling())

    publish("busy-builds", "app.tar.gz", b"release")

    assert [call.outcome for call in fake_gitlab_aws.calls] == ["Throttling", "ok"]


def test_in_a_real_gitlab_job(gitlab_aws_session: boto3.Session) -> None:
    """Skipped offline; in a job, proves that the role trusts this project's ID token."""
    arn = gitlab_aws_session.client("sts").get_caller_identity()["Arn"]
    print(f"Authenticated as {arn}")
    assert ":assumed-role/" in arn
