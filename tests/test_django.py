"""The Django app, its whoami command, and the example project writing to S3."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

import gitlab_botocore

from .conftest import ACCOUNT_ID, Job

django = pytest.importorskip("django")
from django.apps import apps  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import CommandError, call_command  # noqa: E402

from gitlab_botocore.testing.aws import FakeAWS  # noqa: E402

PROJECT = Path(__file__).parent.parent / "examples" / "django_project"


@pytest.fixture(scope="module", autouse=True)
def django_with_the_app() -> None:
    if not settings.configured:
        settings.configure(INSTALLED_APPS=["gitlab_botocore.contrib.django"], USE_TZ=True)
        django.setup()


def test_ready_installs_the_provider() -> None:
    gitlab_botocore.uninstall()
    apps.get_app_config("gitlab_botocore").ready()
    assert gitlab_botocore.is_installed()


def test_ready_respects_the_off_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITLAB_BOTOCORE_DISABLE", "1")
    gitlab_botocore.uninstall()
    apps.get_app_config("gitlab_botocore").ready()
    assert not gitlab_botocore.is_installed()


def test_whoami_shows_the_identity_and_no_secret(job: Job) -> None:
    out = io.StringIO()
    call_command("gitlab_aws_whoami", stdout=out)
    text = out.getvalue()
    session_name = "GitLabRunner-42-1001-5001"
    assert f"Account       {ACCOUNT_ID}\n" in text
    assert f"Assumed role  arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/{session_name}\n" in text
    assert f"Session name  {session_name}\n" in text
    assert "Credentials   gitlab-oidc\n" in text
    assert re.search(r"^Expires       \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+ min\)$", text, re.M)
    frozen = boto3.Session().get_credentials().get_frozen_credentials()  # the shared ones
    for secret in (frozen.secret_key, frozen.token, job.variables["GITLAB_OIDC_TOKEN"]):
        assert secret not in text


def test_whoami_reports_a_refusal(job: Job) -> None:
    job.token(project_path="someone/else")
    with pytest.raises(CommandError, match=r"(?s)AccessDenied.*someone/else"):
        call_command("gitlab_aws_whoami", stdout=io.StringIO())


def test_whoami_outside_a_job_says_what_is_missing(job: Job) -> None:
    job.set(AWS_ROLE_ARN=None)
    with pytest.raises(CommandError, match="declare an ID token under 'id_tokens:'"):
        call_command("gitlab_aws_whoami", stdout=io.StringIO())


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the example project's manage.py as a job would, with this test's environment."""
    return subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "REPORTS_BUCKET": "django-reports"},
    )


def test_example_project_publishes_to_s3_with_the_job_role(job: Job, aws: FakeAWS) -> None:
    aws.client("s3").create_bucket(Bucket="django-reports")

    result = manage("publish_report", "nightly.txt")

    assert result.returncode == 0, result.stderr
    assert "Published s3://django-reports/reports/nightly.txt" in result.stdout
    stored = aws.client("s3").get_object(Bucket="django-reports", Key="reports/nightly.txt")
    assert stored["Body"].read() == b"Report of pipeline 1001\n"
    assert [(call.role_arn.rsplit("/", 1)[-1], call.outcome) for call in aws.sts.calls] == [
        ("deploy", "ok")
    ]


def test_example_project_whoami_fails_with_the_library_message(job: Job) -> None:
    job.token(ref="feature", project_path="someone/else")

    result = manage("gitlab_aws_whoami")

    assert result.returncode == 1
    assert "CommandError:" in result.stderr
    assert "AccessDenied" in result.stderr
    assert "project_path:someone/else:ref_type:branch:ref:feature" in result.stderr
    assert job.variables["GITLAB_OIDC_TOKEN"] not in result.stderr
