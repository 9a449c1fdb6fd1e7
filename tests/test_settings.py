"""Configuration: every source, its precedence, and an error naming each bad value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore.settings import resolve_settings, sanitize_session_name

from .conftest import ACCOUNT_ID, ROLE_ARN, Job


def caller_arn(session: boto3.Session) -> str:
    arn: str = session.client("sts").get_caller_identity()["Arn"]
    return arn


def write_config(job: Job, text: str) -> None:
    Path(job.variables.get("AWS_CONFIG_FILE") or _config_path()).write_text(text)


def _config_path() -> str:
    import os

    return os.environ["AWS_CONFIG_FILE"]


def test_default_session_name_names_the_job(job: Job) -> None:
    arn = caller_arn(boto3.Session())
    assert arn == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/GitLabRunner-42-1001-5001"


def test_session_name_from_claims_when_ci_variables_are_missing(job: Job) -> None:
    job.set(CI_PROJECT_ID=None, CI_PIPELINE_ID=None, CI_JOB_ID=None)
    job.token(project_id=7, pipeline_id=8, job_id=9)
    assert caller_arn(boto3.Session()).endswith("/GitLabRunner-7-8-9")


def test_explicit_session_name_is_sanitized(job: Job) -> None:
    job.set(AWS_ROLE_SESSION_NAME="deploy to prod/eu (main) ✓" + "x" * 80)
    name = caller_arn(boto3.Session()).rsplit("/", 1)[1]
    assert name.startswith("deploy-to-prod-eu--main---")
    assert len(name) == 64


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a", "GitLabRunner-a"), ("", "GitLabRunner"), ("ok.name@x=1,2+3", "ok.name@x=1,2+3")],
)
def test_sanitize_session_name(raw: str, expected: str) -> None:
    assert sanitize_session_name(raw) == expected


def test_tutorial_role_variable(job: Job) -> None:
    job.set(AWS_ROLE_ARN=None, ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/tutorial")
    assert ":assumed-role/tutorial/" in caller_arn(boto3.Session())


def test_aws_role_arn_wins_over_role_arn(job: Job) -> None:
    job.set(ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/tutorial")
    assert ":assumed-role/deploy/" in caller_arn(boto3.Session())


def test_duration_is_sent(job: Job) -> None:
    job.set(GITLAB_BOTOCORE_DURATION_SECONDS="900")
    credentials = boto3.Session().get_credentials()
    credentials.get_frozen_credentials()
    seconds = (credentials.expiration - _now()).total_seconds()
    assert 880 < seconds <= 900


def _now() -> Any:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc)


def test_no_role_means_not_configured(job: Job) -> None:
    job.set(AWS_ROLE_ARN=None)
    assert boto3.Session().get_credentials() is None


def test_web_identity_token_file_is_left_to_botocore(job: Job, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(job.variables["GITLAB_OIDC_TOKEN"])
    job.set(AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file))
    credentials = boto3.Session().get_credentials()
    assert credentials.method == "assume-role-with-web-identity"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AWS_ROLE_ARN", "deploy", "AWS_ROLE_ARN is not an IAM role ARN"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123:role/x", "12-digit account id"),
        ("ROLE_ARN", "arn:aws:s3:::bucket", "ROLE_ARN is not an IAM role ARN"),
        ("GITLAB_BOTOCORE_DURATION_SECONDS", "60", "from 900 to 43200"),
        ("GITLAB_BOTOCORE_DURATION_SECONDS", "1h", "GITLAB_BOTOCORE_DURATION_SECONDS must be"),
        ("GITLAB_BOTOCORE_DURATION_SECONDS", "50000", "from 900 to 43200"),
        ("GITLAB_BOTOCORE_POLICY", "{not json", "GITLAB_BOTOCORE_POLICY must be an IAM policy"),
        ("GITLAB_BOTOCORE_POLICY", "[1, 2]", "as a JSON object"),
        ("GITLAB_BOTOCORE_POLICY", json.dumps({"Statement": ["x" * 2100]}), "at most 2048"),
        ("GITLAB_BOTOCORE_POLICY_ARNS", "ReadOnlyAccess", "'ReadOnlyAccess'"),
        (
            "GITLAB_BOTOCORE_POLICY_ARNS",
            ",".join(f"arn:aws:iam::aws:policy/P{i}" for i in range(11)),
            "at most 10",
        ),
        ("GITLAB_BOTOCORE_TOKEN_VARIABLE", "$MY_TOKEN", "GITLAB_BOTOCORE_TOKEN_VARIABLE must name"),
        ("AWS_ENDPOINT_URL_STS", "sts.local", "Invalid endpoint: sts.local. Check the region"),
        ("AWS_DEFAULT_REGION", "EU West", "not a region name"),
    ],
)
def test_invalid_values_name_the_variable(
    job: Job, variable: str, value: str, expected: str
) -> None:
    if variable == "ROLE_ARN":
        job.set(AWS_ROLE_ARN=None)
    job.set(**{variable: value})
    with pytest.raises(gitlab_botocore.ConfigurationError) as caught:
        boto3.Session().get_credentials()
    assert expected in str(caught.value)
    assert isinstance(caught.value, gitlab_botocore.GitLabOIDCError)


def test_error_is_a_botocore_error(job: Job) -> None:
    from botocore.exceptions import BotoCoreError

    job.set(AWS_ROLE_ARN="nope")
    with pytest.raises(BotoCoreError):
        boto3.client("s3")


def test_policy_and_policy_arns_are_validated_and_compacted() -> None:
    settings = resolve_settings(
        overrides={},
        environ={
            "AWS_ROLE_ARN": ROLE_ARN,
            "GITLAB_BOTOCORE_POLICY": '{ "Version": "2012-10-17",\n "Statement": [] }',
            "GITLAB_BOTOCORE_POLICY_ARNS": " arn:aws:iam::aws:policy/ReadOnlyAccess, ,"
            f"arn:aws:iam::{ACCOUNT_ID}:policy/deploy ",
        },
        profile_config={},
    )
    assert settings is not None
    assert settings.policy == '{"Version":"2012-10-17","Statement":[]}'
    assert settings.policy_arns == (
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        f"arn:aws:iam::{ACCOUNT_ID}:policy/deploy",
    )


def test_region_precedence() -> None:
    base = {"AWS_ROLE_ARN": ROLE_ARN}

    def resolve(environ: dict[str, str], **kwargs: Any) -> Any:
        return resolve_settings(overrides={}, environ={**base, **environ}, **kwargs)

    assert resolve({}, profile_config={}).region is None
    assert resolve({"AWS_REGION": "eu-west-1"}, profile_config={}).region == "eu-west-1"
    session_region = resolve(
        {"AWS_REGION": "eu-west-1"}, profile_config={}, session_region="us-west-2"
    )
    assert session_region.region == "us-west-2"
    # The endpoint is the session's business: no variable or profile key sets the field.
    configured = resolve(
        {"AWS_ENDPOINT_URL_STS": "http://sts"}, profile_config={"endpoint_url": "http://p"}
    )
    assert configured.endpoint_url is None


def test_services_section_of_the_profile_routes_sts(job: Job) -> None:
    # botocore's own endpoint resolution (>= 1.31) serves the exchange: a services section.
    sts_url = job.variables["AWS_ENDPOINT_URL_STS"]
    job.set(AWS_ENDPOINT_URL_STS=None)
    write_config(
        job,
        f"[profile ci]\ngitlab_role_arn = {ROLE_ARN}\nservices = local\n\n"
        f"[services local]\nsts =\n  endpoint_url = {sts_url}\n",
    )
    credentials = boto3.Session(profile_name="ci").get_credentials()
    assert credentials.method == "gitlab-oidc"
    credentials.get_frozen_credentials()  # moto at AWS_ENDPOINT_URL would not verify it


def test_endpoint_url_keyword_is_validated(job: Job) -> None:
    gitlab_botocore.uninstall()
    session = boto3.Session()
    gitlab_botocore.register(session, endpoint_url="sts.local")
    with pytest.raises(gitlab_botocore.ConfigurationError, match="'endpoint_url' argument"):
        session.get_credentials()


def test_named_profile(job: Job) -> None:
    job.set(AWS_ROLE_ARN=None)
    write_config(
        job,
        f"[profile staging]\ngitlab_role_arn = arn:aws:iam::{ACCOUNT_ID}:role/staging\n"
        "role_session_name = staging-deploy\nduration_seconds = 1800\nregion = eu-west-1\n",
    )
    session = boto3.Session(profile_name="staging")
    assert caller_arn(session).endswith(":assumed-role/staging/staging-deploy")
    assert session.get_credentials().method == "gitlab-oidc"


def test_explicit_profile_ignores_environment_configuration(job: Job) -> None:
    # AWS_ROLE_ARN is set, but code chose a profile: like botocore, only the profile counts.
    write_config(job, "[profile other]\nregion = eu-west-1\n")
    assert boto3.Session(profile_name="other").get_credentials() is None
    assert boto3.Session().get_credentials().method == "gitlab-oidc"


def test_profile_token_variable(job: Job) -> None:
    job.set(PROD_TOKEN=job.gitlab.mint(job_id=77), CI_JOB_ID=None)
    write_config(
        job,
        f"[profile prod]\ngitlab_role_arn = arn:aws:iam::{ACCOUNT_ID}:role/prod\n"
        "gitlab_token_variable = PROD_TOKEN\n",
    )
    arn = caller_arn(boto3.Session(profile_name="prod"))
    assert arn.endswith(":assumed-role/prod/GitLabRunner-42-1001-77")


def test_aws_profile_variable_reads_profile_and_environment(job: Job) -> None:
    # AWS_PROFILE does not disable environment settings (botocore behaves the same way).
    write_config(
        job,
        f"[profile ci]\ngitlab_role_arn = arn:aws:iam::{ACCOUNT_ID}:role/from-profile\n",
    )
    job.set(AWS_PROFILE="ci")
    assert ":assumed-role/deploy/" in caller_arn(boto3.Session())
    job.set(AWS_ROLE_ARN=None)
    gitlab_botocore.uninstall()
    gitlab_botocore.install()
    assert ":assumed-role/from-profile/" in caller_arn(boto3.Session())
