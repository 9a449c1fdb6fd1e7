"""Shared fixtures: a clean environment per test, and real local servers per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore.testing.issuer import FakeGitLab
from gitlab_botocore.testing.sts import FakeAWS

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
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        yield server


@pytest.fixture(scope="session")
def aws_session(gitlab: FakeGitLab) -> Iterator[FakeAWS]:
    """moto (IAM, S3, ...) behind an STS that verifies tokens as AWS does.

    GitLab is an OIDC provider of the account, and every role the tests use trusts
    the default test project (``mygroup/myproject``) on any ref.
    """
    with FakeAWS() as aws:
        provider_arn = aws.create_oidc_provider(gitlab.issuer)
        policy = aws.trust_policy_for(
            provider_arn, sub="project_path:mygroup/myproject:*", aud=gitlab.issuer, like=True
        )
        for name in ROLE_NAMES:
            aws.create_role(name, policy, max_session_duration=MAX_SESSION_DURATION)
        yield aws


@pytest.fixture
def aws(aws_session: FakeAWS, gitlab: FakeGitLab) -> Iterator[FakeAWS]:
    """The session's fake AWS, with no faults queued and a fresh record of STS calls."""
    aws_session.sts.reset()
    yield aws_session
    aws_session.sts.reset()
    gitlab.set_down(False)
    gitlab.set_delay(0)


@dataclass
class Job:
    """A GitLab CI job as the library sees it: its variables."""

    gitlab: FakeGitLab
    monkeypatch: pytest.MonkeyPatch
    variables: dict[str, str] = field(default_factory=dict)

    def set(self, **variables: Any) -> None:
        for name, value in variables.items():
            if value is None:
                self.monkeypatch.delenv(name, raising=False)
                self.variables.pop(name, None)
            else:
                self.monkeypatch.setenv(name, str(value))
                self.variables[name] = str(value)

    def token(self, **claims: Any) -> str:
        """Mint a token for this job and put it in GITLAB_OIDC_TOKEN."""
        token = self.gitlab.mint(**claims)
        self.set(GITLAB_OIDC_TOKEN=token)
        return token


@pytest.fixture
def job(gitlab: FakeGitLab, aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> Job:
    """The variables GitLab sets in a job that declares ``id_tokens: GITLAB_OIDC_TOKEN``."""
    job = Job(gitlab, monkeypatch)
    job.set(
        CI_SERVER_URL=gitlab.issuer,
        CI_PROJECT_ID="42",
        CI_PIPELINE_ID="1001",
        CI_JOB_ID="5001",
        AWS_ROLE_ARN=ROLE_ARN,
        AWS_ENDPOINT_URL=aws.moto_url,
        AWS_ENDPOINT_URL_STS=aws.sts_url,
        AWS_DEFAULT_REGION="us-east-1",
    )
    job.token()
    return job
