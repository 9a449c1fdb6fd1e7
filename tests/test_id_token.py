"""Finding and reading the GitLab ID token."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore.id_token import IdToken
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.issuer import FakeGitLab
from gitlab_botocore.testing.pytest_plugin import FakeGitLabAWS
from gitlab_botocore.token_source import EnvironmentTokenSource

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


def test_several_tokens_for_aws_is_an_error_naming_them(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=None)
    job.set(
        AWS_TOKEN=job.gitlab.mint(job_id=1),
        STS_TOKEN=job.gitlab.mint(audience="sts.amazonaws.com"),
        VAULT_TOKEN=job.gitlab.mint(audience=VAULT),
    )
    with pytest.raises(gitlab_botocore.AmbiguousTokenError) as caught:
        boto3.Session().get_credentials()
    message = str(caught.value)
    assert "AWS_TOKEN, STS_TOKEN" in message
    assert "VAULT_TOKEN" not in message
    assert "GITLAB_BOTOCORE_TOKEN_VARIABLE" in message


# -- a token is sent only to the audience it was minted for ---------------------------------

VAULT = "https://vault.example.com"


def test_a_vault_token_beside_the_aws_one_is_neither_picked_nor_ambiguous(
    job: Job, aws: FakeAWS
) -> None:
    job.set(
        GITLAB_OIDC_TOKEN=None,
        AWS_DEPLOY_TOKEN=job.gitlab.mint(job_id=1),
        VAULT_ID_TOKEN=job.gitlab.mint(audience=VAULT, job_id=2),
    )
    arn = boto3.Session().client("sts").get_caller_identity()["Arn"]
    assert ":assumed-role/deploy/" in arn
    (call,) = aws.sts.calls
    assert call.claims["aud"] == job.gitlab.issuer
    assert call.claims["job_id"] == "1"


def test_a_vault_token_alone_is_never_sent_to_aws(
    job: Job, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    job.set(GITLAB_OIDC_TOKEN=None, VAULT_ID_TOKEN=job.gitlab.mint(audience=VAULT))
    with caplog.at_level(logging.DEBUG, logger="gitlab_botocore"):
        assert boto3.Session().get_credentials() is None
    assert aws.sts.calls == []
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("VAULT_ID_TOKEN" in m and VAULT in m for m in skipped), skipped
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"VAULT_ID_TOKEN (aud {VAULT})" in warning
    assert "GITLAB_BOTOCORE_AUDIENCES" in warning


@pytest.mark.parametrize("where", ["environment", "profile", "register"])
def test_listed_audiences_mark_a_token_as_meant_for_aws(
    job: Job, aws: FakeAWS, fake_gitlab_aws: FakeGitLabAWS, where: str
) -> None:
    audience = "aws-deploy"
    # A GitLab instance whose IAM OIDC provider lists this audience (client ID).
    with FakeGitLab() as gitlab:
        provider = fake_gitlab_aws.create_oidc_provider(gitlab.issuer, audiences=[audience])
        policy = aws.trust_policy_for(provider, sub="project_path:*", aud=audience, like=True)
        job.set(
            CI_SERVER_URL=gitlab.issuer,
            GITLAB_OIDC_TOKEN=None,
            AWS_ROLE_ARN=fake_gitlab_aws.role("custom-audience", trust_policy=policy),
            DEPLOY_TOKEN=gitlab.mint(audience=audience),
            VAULT_ID_TOKEN=gitlab.mint(audience=VAULT),
        )
        if where == "environment":
            job.set(GITLAB_BOTOCORE_AUDIENCES=f" other, {audience} ")
        elif where == "profile":
            Path(job.config_file).write_text(f"[default]\ngitlab_audiences = {audience}\n")
        session = boto3.Session()
        if where == "register":
            gitlab_botocore.register(session, audiences=[audience])
        arn = session.client("sts").get_caller_identity()["Arn"]
    assert ":assumed-role/custom-audience/" in arn
    assert [call.claims["aud"] for call in aws.sts.calls] == [audience]


def test_unlisted_audience_is_skipped(job: Job, aws: FakeAWS) -> None:
    job.set(GITLAB_OIDC_TOKEN=None, DEPLOY_TOKEN=job.gitlab.mint(audience="aws-deploy"))
    assert boto3.Session().get_credentials() is None
    assert aws.sts.calls == []


def test_sts_audience_is_meant_for_aws(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=None, DEPLOY_TOKEN=job.gitlab.mint(audience=["sts.amazonaws.com"]))
    assert source(job).get_token().variable == "DEPLOY_TOKEN"


@pytest.mark.parametrize("name", ["AWS_ID_TOKEN", "GITLAB_OIDC_TOKEN", "MY_NAMED_TOKEN"])
def test_named_variables_are_used_as_given(job: Job, aws: FakeAWS, name: str) -> None:
    job.set(GITLAB_OIDC_TOKEN=None)
    job.set(**{name: job.gitlab.mint(audience=VAULT)})
    if name == "MY_NAMED_TOKEN":
        job.set(GITLAB_BOTOCORE_TOKEN_VARIABLE=name)
    with pytest.raises(gitlab_botocore.GitLabOIDCError):
        boto3.Session().client("sts").get_caller_identity()  # AWS refuses the audience
    assert [call.claims["aud"] for call in aws.sts.calls] == [VAULT]


def test_a_token_for_another_service_in_a_name_for_aws_is_sent_with_one_warning(
    job: Job, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    # GitLab's Google Cloud guide names its token GITLAB_OIDC_TOKEN too.
    google = "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p"
    job.set(GITLAB_OIDC_TOKEN=job.gitlab.mint(audience=google))
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        for _ in range(2):
            with pytest.raises(gitlab_botocore.GitLabOIDCError):
                boto3.Session().client("sts").get_caller_identity()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    meant_elsewhere = [w for w in warnings if "not one of the audiences AWS accepts" in w]
    assert len(meant_elsewhere) == 1
    assert f"GITLAB_OIDC_TOKEN holds an ID token for the audience {google}" in meant_elsewhere[0]
    assert "GITLAB_BOTOCORE_AUDIENCES" in meant_elsewhere[0]
    assert [call.claims["aud"] for call in aws.sts.calls][:1] == [google]  # sent as given


def test_legacy_token_for_another_audience_is_skipped(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=None, CI_JOB_JWT_V2=job.gitlab.mint(audience=VAULT))
    with pytest.raises(gitlab_botocore.TokenNotFoundError, match="CI_JOB_JWT_V2"):
        source(job).get_token()


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
