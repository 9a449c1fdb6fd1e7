"""Shared fixtures: a clean environment per test, and real local servers per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.issuer import FakeGitLab
from gitlab_botocore.testing.pytest_plugin import FakeGitLabAWS, GitLabCIJob

ACCOUNT_ID = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/deploy"
ROLE_NAMES = ("deploy", "tutorial", "staging", "prod", "reader", "override", "from-profile")
MAX_SESSION_DURATION = 43200

_OWN_PREFIXES = ("AWS_", "GITLAB_", "CI_", "BOTO_")
_OWN_NAMES = ("ROLE_ARN",)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No AWS, GitLab or CI configuration leaks in from the machine or between tests."""
    for name in list(os.environ):
        if name.startswith(_OWN_PREFIXES) or name in _OWN_NAMES:
            monkeypatch.delenv(name)
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    # Without this, an empty chain would spend seconds probing for instance metadata.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # boto3.client() builds a fresh one
    yield
    gitlab_botocore.uninstall()  # also forgets credentials shared between sessions
    gitlab_botocore.install()


@pytest.fixture(scope="session")
def gitlab(fake_gitlab_aws: FakeGitLabAWS) -> FakeGitLab:
    """The pytest plugin's offline GitLab."""
    return fake_gitlab_aws.gitlab


@pytest.fixture(scope="session")
def aws_session(fake_gitlab_aws: FakeGitLabAWS) -> FakeAWS:
    """The pytest plugin's moto (IAM, S3, ...) behind an STS that verifies tokens as AWS does.

    GitLab is an OIDC provider of the account, and every role the tests use trusts
    the default test project (``mygroup/myproject``) on any ref.
    """
    for name in ROLE_NAMES:
        fake_gitlab_aws.role(
            name, sub="project_path:mygroup/myproject:*", max_session_duration=MAX_SESSION_DURATION
        )
    return fake_gitlab_aws.aws


@pytest.fixture
def aws(aws_session: FakeAWS, gitlab: FakeGitLab) -> Iterator[FakeAWS]:
    """The session's fake AWS, with no faults queued and a fresh record of STS calls."""
    aws_session.sts.reset()
    yield aws_session
    aws_session.sts.reset()
    gitlab.set_down(False)
    gitlab.set_delay(0)


@pytest.fixture(scope="session")
def chained_role_arn(aws_session: FakeAWS) -> str:
    """A role that the ``deploy`` role may assume (``sts:AssumeRole``), for role chaining."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ROLE_ARN},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    return aws_session.create_role("chained-target", trust)


Job = GitLabCIJob
"""A GitLab CI job as the library sees it: its variables (``set``, ``token``)."""


@pytest.fixture
def job(gitlab_ci_env: GitLabCIJob, aws: FakeAWS) -> Job:
    """The plugin's ``gitlab_ci_env`` (a job that declares ``id_tokens: GITLAB_OIDC_TOKEN``),
    with the ``deploy`` role."""
    gitlab_ci_env.set(AWS_ROLE_ARN=ROLE_ARN)
    return gitlab_ci_env
