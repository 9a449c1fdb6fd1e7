"""Finding and reading the GitLab ID token."""

from __future__ import annotations

import time

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore import EnvironmentTokenSource, IdToken
from gitlab_botocore.testing.issuer import FakeGitLab

from .conftest import Job


def source(job: Job, variable: str | None = None) -> EnvironmentTokenSource:
    return EnvironmentTokenSource(variable=variable, ci_server_url=job.gitlab.issuer)


def test_claims_are_read_without_verifying(job: Job) -> None:
    raw = job.token(project_path="group/app", ref="release", ref_type="tag")
    token = IdToken.parse(raw, "GITLAB_OIDC_TOKEN")
    assert token.subject == "project_path:group/app:ref_type:tag:ref:release"
    assert token.issuer == job.gitlab.issuer
    assert token.audience == (job.gitlab.issuer,)
    assert (token.project_id, token.pipeline_id, token.job_id) == ("42", "1001", "5001")
    assert 3590 < token.seconds_left() <= 3600


def test_list_audience(gitlab: FakeGitLab) -> None:
    token = IdToken.parse(gitlab.mint(audience=["sts.amazonaws.com", "vault"]))
    assert token.audience == ("sts.amazonaws.com", "vault")


def test_repr_and_errors_never_show_the_token(job: Job) -> None:
    raw = job.token()
    token = IdToken.parse(raw, "GITLAB_OIDC_TOKEN")
    assert raw not in repr(token)
    assert raw not in str(token)
    assert "sub='project_path:mygroup/myproject" in repr(token)


@pytest.mark.parametrize(
    ("winner", "others"),
    [
        ("AWS_ID_TOKEN", ["GITLAB_OIDC_TOKEN", "MY_TOKEN", "CI_JOB_JWT_V2"]),
        ("GITLAB_OIDC_TOKEN", ["MY_TOKEN", "CI_JOB_JWT_V2"]),
        ("MY_TOKEN", ["CI_JOB_JWT_V2"]),
    ],
)
def test_discovery_order(job: Job, winner: str, others: list[str]) -> None:
    job.set(GITLAB_OIDC_TOKEN=None)
    for name in others:
        job.set(**{name: job.gitlab.mint(job_id=1)})
    job.set(**{winner: job.gitlab.mint(job_id=2)})
    token = source(job).get_token()
    assert token.variable == winner
    assert token.job_id == "2"


def test_named_variable_wins_over_discovery(job: Job) -> None:
    job.set(AWS_ID_TOKEN=job.gitlab.mint(job_id=1), VAULT_ID_TOKEN=job.gitlab.mint(job_id=2))
    token = source(job, variable="VAULT_ID_TOKEN").get_token()
    assert (token.variable, token.job_id) == ("VAULT_ID_TOKEN", "2")


def test_custom_name_found_by_issuer_but_not_other_issuers(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=None)
    with FakeGitLab(issuer="https://other.example.com") as other:
        job.set(OTHER_TOKEN=other.mint(), NOT_A_JWT="eyJ.not.valid")
        with pytest.raises(gitlab_botocore.TokenNotFoundError):
            source(job).get_token()
    job.set(DEPLOY_TOKEN=job.gitlab.mint())
    assert source(job).get_token().variable == "DEPLOY_TOKEN"


def test_several_custom_tokens_is_an_error_naming_them(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=None)
    job.set(AWS_TOKEN=job.gitlab.mint(aud="sts"), VAULT_TOKEN=job.gitlab.mint(aud="vault"))
    with pytest.raises(gitlab_botocore.AmbiguousTokenError) as caught:
        boto3.Session().get_credentials()
    message = str(caught.value)
    assert "AWS_TOKEN, VAULT_TOKEN" in message
    assert "GITLAB_BOTOCORE_TOKEN_VARIABLE" in message


def test_same_token_in_two_variables_is_not_ambiguous(job: Job) -> None:
    raw = job.gitlab.mint()
    job.set(GITLAB_OIDC_TOKEN=None, A_TOKEN=raw, B_TOKEN=raw)
    assert source(job).get_token().variable == "A_TOKEN"


def test_legacy_ci_job_jwt_v2_warns(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=None, CI_JOB_JWT_V2=job.gitlab.mint())
    with pytest.warns(gitlab_botocore.LegacyTokenWarning, match="id_tokens"):
        token = source(job).get_token()
    assert token.variable == "CI_JOB_JWT_V2"


def test_malformed_token_names_the_variable(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN="$GITLAB_OIDC_TOKEN")
    with pytest.raises(gitlab_botocore.TokenError, match="GITLAB_OIDC_TOKEN does not hold"):
        boto3.Session().get_credentials()


def test_token_without_exp_is_refused(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=job.gitlab.mint(exp=None))
    with pytest.raises(gitlab_botocore.TokenError, match="'exp'"):
        boto3.Session().get_credentials()


def test_expired_token_fails_before_any_sts_call(job: Job) -> None:
    job.token(issued_at=int(time.time()) - 7200, lifetime_seconds=3600)
    with pytest.raises(gitlab_botocore.TokenExpiredError) as caught:
        boto3.Session().get_credentials()
    message = str(caught.value)
    assert "GITLAB_OIDC_TOKEN expired at" in message
    assert "1 h 0 min ago" in message
    assert "job's timeout" in message


def test_named_variable_missing_is_an_error(job: Job) -> None:
    job.set(GITLAB_BOTOCORE_TOKEN_VARIABLE="AWS_DEPLOY_TOKEN")
    with pytest.raises(gitlab_botocore.TokenNotFoundError, match="AWS_DEPLOY_TOKEN is empty"):
        boto3.Session().get_credentials()


def test_no_token_means_not_configured(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=None)
    assert boto3.Session().get_credentials() is None
