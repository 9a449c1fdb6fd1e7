"""``gitlab-botocore doctor`` points at settings that give the job another identity, or
another region, than the one it may expect. Warnings do not fail the checklist."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gitlab_botocore.tools import cli

from .conftest import ROLE_ARN, Job


def doctor(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    """The doctor's checks by name (the last of each name), from its JSON output."""
    cli.main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    return {check["name"]: check for check in report["checks"]}


def doctor_text(capsys: pytest.CaptureFixture[str]) -> str:
    cli.main(["doctor"])
    return capsys.readouterr().out


def test_only_aws_region_is_a_warning(job: Job, capsys: pytest.CaptureFixture[str]) -> None:
    job.set(AWS_DEFAULT_REGION=None, AWS_REGION="eu-west-1")
    region = doctor(capsys)["Region"]
    assert region["warning"] is True
    assert region["ok"] is True
    assert "only AWS_REGION is set (eu-west-1)" in region["detail"]
    assert "Set AWS_DEFAULT_REGION" in region["detail"]
    assert "warn  Region" in doctor_text(capsys)
    job.set(AWS_DEFAULT_REGION="eu-west-1")
    assert "Region" not in doctor(capsys)


def test_skipped_tokens_are_named(job: Job, capsys: pytest.CaptureFixture[str]) -> None:
    job.set(VAULT_ID_TOKEN=job.gitlab.mint(audience="https://vault.example.com"))
    checks = doctor(capsys)
    assert checks["ID token"]["detail"].startswith("GITLAB_OIDC_TOKEN")
    skipped = checks["Skipped token"]
    assert skipped["warning"] is True
    assert skipped["detail"].startswith("VAULT_ID_TOKEN: aud 'https://vault.example.com'")
    assert "GITLAB_BOTOCORE_AUDIENCES" in skipped["detail"]


def test_skipped_tokens_explain_a_missing_token(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    job.set(GITLAB_OIDC_TOKEN=None, VAULT_ID_TOKEN=job.gitlab.mint(audience="vault"))
    token = doctor(capsys)["ID token"]
    assert token["ok"] is False
    assert "VAULT_ID_TOKEN (aud vault)" in token["detail"]


def test_the_gitlab_role_over_aws_profile_keys_is_shown(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[static]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret\n"
    )
    job.set(AWS_PROFILE="static")
    precedence = doctor(capsys)["Precedence"]
    assert precedence["warning"] is True
    assert "AWS_PROFILE=static has static keys" in precedence["detail"]
    assert f"the job runs as {ROLE_ARN}" in precedence["detail"]
    assert "file-secret" not in precedence["detail"]


def test_static_environment_keys_over_the_gitlab_role_are_shown(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    job.set(AWS_ACCESS_KEY_ID="AKIDENV", AWS_SECRET_ACCESS_KEY="env-secret")
    precedence = doctor(capsys)["Precedence"]
    assert "static keys in the environment come first" in precedence["detail"]
    assert "env-secret" not in precedence["detail"]


def test_web_identity_file_over_the_gitlab_token_is_shown(
    job: Job, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(job.gitlab.mint())
    job.set(AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file))
    cli.main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    details = [check["detail"] for check in report["checks"]]
    assert any("AWS_WEB_IDENTITY_TOKEN_FILE is set" in d for d in details), details
