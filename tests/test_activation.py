"""Whether the provider acts, and what it says when it steps aside (the job's role, or a
loud reason why not)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore.testing.aws import FakeAWS

from .conftest import ACCOUNT_ID, ROLE_ARN, Job

OTHER_ACCOUNT_ROLE = "arn:aws:iam::999999999999:role/deploy"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("gitlab_botocore") and record.levelno >= logging.WARNING
    ]


def static_keys_in_credentials_file(profile: str = "default") -> None:
    Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        f"[{profile}]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret\n"
    )


# -- a role without a token is a loud fall-through -----------------------------------------


def test_role_without_token_warns_once_and_moves_on(
    job: Job, caplog: pytest.LogCaptureFixture
) -> None:
    static_keys_in_credentials_file()
    job.set(GITLAB_OIDC_TOKEN=None)
    with caplog.at_level(logging.DEBUG):
        methods = [boto3.Session().get_credentials().method for _ in range(3)]
    assert methods == ["shared-credentials-file"] * 3  # the file's identity, as before
    (warning,) = warnings_of(caplog)  # once per process, not per session
    assert ROLE_ARN in warning
    assert "no GitLab ID token" in warning
    assert "AWS_ID_TOKEN, GITLAB_OIDC_TOKEN" in warning
    assert "id_tokens:" in warning
    assert "next provider" in warning
    assert "GITLAB_BOTOCORE_REQUIRE=1" in warning


def test_role_without_token_outside_gitlab_ci_is_quiet(
    job: Job, caplog: pytest.LogCaptureFixture
) -> None:
    job.set(GITLAB_OIDC_TOKEN=None, GITLAB_CI=None)
    with caplog.at_level(logging.DEBUG):
        assert boto3.Session().get_credentials() is None
    assert warnings_of(caplog) == []


SCRIPT_WITHOUT_LOGGING = """
import boto3
import gitlab_botocore

for _ in range(3):
    print(boto3.Session().get_credentials().method)
"""


def test_the_warning_reaches_stderr_of_a_script_without_logging(job: Job) -> None:
    static_keys_in_credentials_file()
    job.set(GITLAB_OIDC_TOKEN=None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT_WITHOUT_LOGGING],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.split() == ["shared-credentials-file"] * 3
    assert result.stderr.count("gitlab-botocore: the role") == 1, result.stderr
    assert ROLE_ARN in result.stderr


def test_require_turns_the_fall_through_into_an_error(job: Job, aws: FakeAWS) -> None:
    static_keys_in_credentials_file()
    job.set(GITLAB_OIDC_TOKEN=None, GITLAB_BOTOCORE_REQUIRE="1")
    with pytest.raises(gitlab_botocore.TokenNotFoundError) as caught:
        boto3.Session().client("sts").get_caller_identity()
    message = str(caught.value)
    assert "No GitLab ID token found" in message
    assert "GITLAB_BOTOCORE_REQUIRE is set" in message
    assert ROLE_ARN in message
    assert aws.sts.calls == []


def test_require_without_a_role_is_an_error(job: Job) -> None:
    static_keys_in_credentials_file()
    job.set(AWS_ROLE_ARN=None, GITLAB_BOTOCORE_REQUIRE="true")
    with pytest.raises(gitlab_botocore.ConfigurationError, match="no role is configured") as caught:
        boto3.Session().get_credentials()
    assert caught.value.setting == "AWS_ROLE_ARN"


def test_require_by_keyword_and_a_bad_value(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=None)
    session = boto3.Session()
    gitlab_botocore.register(session, require=True)
    with pytest.raises(gitlab_botocore.TokenNotFoundError):
        session.get_credentials()
    job.set(GITLAB_BOTOCORE_REQUIRE="always")
    with pytest.raises(gitlab_botocore.ConfigurationError, match="GITLAB_BOTOCORE_REQUIRE"):
        boto3.Session().get_credentials()


def test_require_applies_with_a_profile_chosen_in_code(job: Job) -> None:
    Path(job.config_file).write_text(
        "[profile keys]\naws_access_key_id = AKIDCONFIG\naws_secret_access_key = s\n"
    )
    assert boto3.Session(profile_name="keys").get_credentials().method == "config-file"
    job.set(GITLAB_BOTOCORE_REQUIRE="1")
    with pytest.raises(gitlab_botocore.ConfigurationError, match="no role is configured"):
        boto3.Session(profile_name="keys").get_credentials()


# -- AWS_WEB_IDENTITY_TOKEN_FILE beside a GitLab ID token -----------------------------------


@pytest.fixture
def token_file(job: Job, tmp_path: Path) -> Path:
    path = tmp_path / "web-identity-token"
    path.write_text(job.gitlab.mint(job_id=9))
    job.set(AWS_WEB_IDENTITY_TOKEN_FILE=str(path))
    return path


def test_web_identity_file_wins_and_says_so(
    job: Job, token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        for _ in range(2):
            assert boto3.Session().get_credentials().method == "assume-role-with-web-identity"
    (warning,) = warnings_of(caplog)
    assert "AWS_WEB_IDENTITY_TOKEN_FILE is set" in warning
    assert str(token_file) in warning
    assert "GITLAB_OIDC_TOKEN is not used" in warning
    assert "unset AWS_WEB_IDENTITY_TOKEN_FILE" in warning


def test_web_identity_file_without_gitlab_token_is_quiet(
    job: Job, token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job.set(GITLAB_OIDC_TOKEN=None)
    with caplog.at_level(logging.DEBUG):
        assert boto3.Session().get_credentials().method == "assume-role-with-web-identity"
    assert warnings_of(caplog) == []


def test_require_chooses_the_gitlab_token_over_the_web_identity_file(
    job: Job, token_file: Path, aws: FakeAWS
) -> None:
    job.set(GITLAB_BOTOCORE_REQUIRE="1")
    session = boto3.Session()
    assert session.get_credentials().method == "gitlab-oidc"
    session.client("sts").get_caller_identity()
    assert [call.claims["job_id"] for call in aws.sts.calls] == ["5001"]  # not the file's 9


def test_web_identity_file_without_aws_role_arn_is_not_botocores(
    job: Job, token_file: Path
) -> None:
    # botocore's provider needs AWS_ROLE_ARN; with only ROLE_ARN it would do nothing.
    job.set(AWS_ROLE_ARN=None, ROLE_ARN=ROLE_ARN)
    assert boto3.Session().get_credentials().method == "gitlab-oidc"


# -- allowed accounts ----------------------------------------------------------------------


def test_a_role_in_another_account_is_refused_before_any_sts_call(job: Job, aws: FakeAWS) -> None:
    job.set(
        AWS_ROLE_ARN=OTHER_ACCOUNT_ROLE,
        GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS=f"111111111111, {ACCOUNT_ID}",
    )
    with pytest.raises(gitlab_botocore.ConfigurationError) as caught:
        boto3.client("sts").get_caller_identity()
    assert caught.value.setting == "AWS_ROLE_ARN"
    message = str(caught.value)
    assert "account 999999999999" in message
    assert f"allows only 111111111111, {ACCOUNT_ID}" in message
    assert aws.sts.calls == []
    job.set(AWS_ROLE_ARN=ROLE_ARN)
    assert ":assumed-role/deploy/" in boto3.client("sts").get_caller_identity()["Arn"]


def test_a_chained_role_in_another_account_is_refused(job: Job, aws: FakeAWS) -> None:
    job.set(
        GITLAB_BOTOCORE_CHAIN_ROLE_ARNS=OTHER_ACCOUNT_ROLE,
        GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS=ACCOUNT_ID,
    )
    with pytest.raises(gitlab_botocore.ConfigurationError) as caught:
        boto3.Session().get_credentials()
    assert caught.value.setting == "GITLAB_BOTOCORE_CHAIN_ROLE_ARNS"
    assert aws.sts.calls == []


def test_allowed_accounts_from_the_profile_and_from_register(job: Job) -> None:
    job.set(AWS_ROLE_ARN=None)
    Path(job.config_file).write_text(
        "[profile prod]\n"
        f"gitlab_role_arn = {OTHER_ACCOUNT_ROLE}\n"
        f"gitlab_allowed_account_ids = {ACCOUNT_ID}\n"
    )
    with pytest.raises(gitlab_botocore.ConfigurationError) as caught:
        boto3.Session(profile_name="prod").get_credentials()
    assert caught.value.setting == "'gitlab_role_arn' in the AWS config profile"
    session = boto3.Session()
    gitlab_botocore.register(
        session, role_arn=OTHER_ACCOUNT_ROLE, allowed_account_ids=["111111111111"]
    )
    with pytest.raises(gitlab_botocore.ConfigurationError, match="'role_arn' argument"):
        session.get_credentials()


def test_allowed_accounts_from_the_environment_guard_a_profile_chosen_in_code(
    job: Job,
) -> None:
    Path(job.config_file).write_text(f"[profile prod]\ngitlab_role_arn = {OTHER_ACCOUNT_ROLE}\n")
    job.set(GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS=ACCOUNT_ID)
    with pytest.raises(gitlab_botocore.ConfigurationError, match="account 999999999999"):
        boto3.Session(profile_name="prod").get_credentials()


@pytest.mark.parametrize("value", ["12345678901", "1234567890123", "prod", "12345678901x"])
def test_allowed_accounts_must_be_account_ids(job: Job, value: str) -> None:
    job.set(GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS=f"{ACCOUNT_ID},{value}")
    with pytest.raises(gitlab_botocore.ConfigurationError, match="12-digit") as caught:
        boto3.Session().get_credentials()
    assert caught.value.setting == "GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS"


# -- precedence ----------------------------------------------------------------------------


def test_the_gitlab_role_wins_over_aws_profile_with_static_keys(job: Job) -> None:
    # As botocore's own AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE would: the variables of
    # the job's identity come before the profile's keys in the chain.
    static_keys_in_credentials_file("static")
    job.set(AWS_PROFILE="static")
    assert boto3.Session().get_credentials().method == "gitlab-oidc"
    job.set(AWS_ROLE_ARN=None)
    assert boto3.Session().get_credentials().method == "shared-credentials-file"


# -- the guards cannot be got round ----------------------------------------------------------


def test_require_puts_the_job_role_before_static_keys_in_the_environment(job: Job) -> None:
    # Keys leaked into the job (a runner variable, a group CI/CD variable) win in botocore's
    # chain; a job that requires GitLab credentials must not run as them.
    keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE12", "AWS_SECRET_ACCESS_KEY": "x" * 40}
    job.set(**keys)
    assert boto3.Session().get_credentials().method == "env"
    job.set(GITLAB_BOTOCORE_REQUIRE="1")
    assert boto3.Session().get_credentials().method == "gitlab-oidc"


def test_require_puts_the_job_role_before_a_profile_role(job: Job) -> None:
    # botocore's assume-role provider comes before ours: a profile with role_arn and
    # source_profile would otherwise take a role in any account.
    static_keys_in_credentials_file("base")
    Path(job.config_file).write_text(
        f"[profile other]\nrole_arn = {OTHER_ACCOUNT_ROLE}\nsource_profile = base\n"
    )
    job.set(AWS_PROFILE="other")
    assert boto3.Session().get_credentials().method == "assume-role"
    job.set(GITLAB_BOTOCORE_REQUIRE="1")
    assert boto3.Session().get_credentials().method == "gitlab-oidc"


def test_require_in_code_also_goes_first(job: Job) -> None:
    job.set(AWS_ACCESS_KEY_ID="AKIAEXAMPLEEXAMPLE12", AWS_SECRET_ACCESS_KEY="x" * 40)
    session = boto3.Session()
    gitlab_botocore.register(session, require=True)
    assert session.get_credentials().method == "gitlab-oidc"


@pytest.mark.parametrize("value", [",", " , ", ",,"])
def test_an_allow_list_that_names_no_account_is_refused(job: Job, value: str) -> None:
    # "$STAGING_ID,$PROD_ID" with both unset must not mean "every account".
    job.set(AWS_ROLE_ARN=OTHER_ACCOUNT_ROLE, GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS=value)
    with pytest.raises(gitlab_botocore.ConfigurationError, match="names no account id") as caught:
        boto3.Session().get_credentials()
    assert caught.value.setting == "GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS"


def test_a_keyword_cannot_loosen_require(job: Job) -> None:
    job.set(GITLAB_BOTOCORE_REQUIRE="1", GITLAB_OIDC_TOKEN=None)
    session = boto3.Session()
    gitlab_botocore.register(session, require=False)
    with pytest.raises(gitlab_botocore.TokenNotFoundError):
        session.get_credentials()


def test_a_keyword_can_narrow_the_allowed_accounts_but_not_widen_them(job: Job) -> None:
    job.set(GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS=ACCOUNT_ID)
    widened = boto3.Session()
    gitlab_botocore.register(
        widened, role_arn=OTHER_ACCOUNT_ROLE, allowed_account_ids=["999999999999"]
    )
    with pytest.raises(gitlab_botocore.ConfigurationError, match="no account in common"):
        widened.get_credentials()
    narrowed = boto3.Session()
    gitlab_botocore.register(narrowed, allowed_account_ids=[ACCOUNT_ID, "999999999999"])
    assert narrowed.get_credentials().method == "gitlab-oidc"
