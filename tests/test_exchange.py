"""The STS exchange: which failures are retried, which fail fast, and what the errors say."""

from __future__ import annotations

import logging
import time

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore import (
    AccessDeniedError,
    InvalidIdentityTokenError,
    STSError,
    STSRequestError,
    STSUnavailableError,
)
from gitlab_botocore.testing.issuer import FakeGitLab
from gitlab_botocore.testing.sts import FakeAWS, Fault

from .conftest import ACCOUNT_ID, Job

VERIFICATION_KEY = (
    "Couldn't retrieve verification key from your identity provider,  please reference "
    "AssumeRoleWithWebIdentity documentation for requirements"
)


def resolve() -> str:
    """Use the credentials; returns the access key id."""
    key: str = boto3.Session().get_credentials().get_frozen_credentials().access_key
    return key


TRANSIENT = [
    Fault("IDPCommunicationError", "Couldn't connect to the identity provider", 400),
    Fault("Throttling", "Rate exceeded", 400),
    Fault("ThrottlingException", "Rate exceeded", 400),
    Fault("RequestLimitExceeded", "Request limit exceeded", 400),
    Fault("TooManyRequests", "Slow down", 429),
    Fault("InternalFailure", "Internal error", 500),
    Fault("ServiceUnavailable", "Service unavailable", 503),
    Fault("InvalidIdentityToken", VERIFICATION_KEY, 400),
    Fault.dropped_connection(),
]


@pytest.mark.parametrize("fault", TRANSIENT, ids=lambda f: f.code or "dropped")
def test_transient_failures_are_retried(
    job: Job, aws: FakeAWS, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    aws.sts.inject(fault, fault)
    with caplog.at_level(logging.INFO, logger="gitlab_botocore"):
        assert resolve().startswith("ASIA")
    assert [call.outcome for call in aws.sts.calls][-1] == "ok"
    assert aws.sts.assume_role_calls == 3
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2
    assert (fault.code or "ConnectionClosedError") in retries[0]


BAD_TOKEN = InvalidIdentityTokenError
FAIL_FAST = [
    (Fault("AccessDenied", "Not authorized", 403), AccessDeniedError),
    (Fault("IDPRejectedClaim", "Claim rejected", 403), AccessDeniedError),
    (Fault("InvalidIdentityToken", "Incorrect token audience", 400), InvalidIdentityTokenError),
    (
        Fault("InvalidIdentityToken", "Signature verification failed", 400),
        InvalidIdentityTokenError,
    ),
    (
        Fault("InvalidIdentityToken", "No OpenIDConnect provider found", 400),
        InvalidIdentityTokenError,
    ),
    (Fault("ExpiredTokenException", "Token expired", 400), InvalidIdentityTokenError),
    (Fault("MalformedPolicyDocument", "Syntax errors in policy", 400), STSRequestError),
    (Fault("PackedPolicyTooLarge", "Packed size 104%", 400), STSRequestError),
    (Fault("RegionDisabledException", "STS is not activated", 403), STSRequestError),
    (Fault("ValidationError", "1 validation error detected", 400), STSRequestError),
]


@pytest.mark.parametrize(
    ("fault", "error_class"), FAIL_FAST, ids=lambda v: getattr(v, "message", "")[:20]
)
def test_permanent_failures_fail_fast(
    job: Job, aws: FakeAWS, fault: Fault, error_class: type[STSError]
) -> None:
    aws.sts.inject(fault)
    with pytest.raises(error_class) as caught:
        resolve()
    assert aws.sts.assume_role_calls == 1
    assert caught.value.code == fault.code
    assert caught.value.role_arn == f"arn:aws:iam::{ACCOUNT_ID}:role/deploy"
    assert isinstance(caught.value, gitlab_botocore.GitLabOIDCError)
    assert job.variables["GITLAB_OIDC_TOKEN"] not in str(caught.value)


def test_retries_stop_at_the_budget(job: Job, aws: FakeAWS) -> None:
    job.set(GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="3")
    aws.sts.inject(*[Fault.throttling()] * 50)
    with pytest.raises(STSUnavailableError) as caught:
        resolve()
    attempts = aws.sts.assume_role_calls
    assert 2 <= attempts < 20  # back-off grows: 3 s hold a handful of attempts, not 50
    assert f"Gave up after {attempts} attempts" in str(caught.value)
    assert "GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS (now 3 s)" in str(caught.value)
    assert caught.value.code == "Throttling"


def test_zero_budget_means_one_attempt(job: Job, aws: FakeAWS) -> None:
    job.set(GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="0")
    aws.sts.inject(Fault.throttling())
    with pytest.raises(STSError, match="Throttling"):
        resolve()
    assert aws.sts.assume_role_calls == 1


def test_retries_never_run_past_the_token_expiry(job: Job, aws: FakeAWS) -> None:
    # 2 to 3 s left (int() drops up to a second): enough for the first call on a busy machine.
    job.token(issued_at=int(time.time()) - 3597, lifetime_seconds=3600)
    aws.sts.inject(*[Fault.throttling()] * 50)
    with pytest.raises(STSError):
        resolve()
    assert aws.sts.assume_role_calls < 10  # the 60 s budget was cut to the token's life


def test_unreachable_sts_names_the_endpoint(job: Job) -> None:
    job.set(AWS_ENDPOINT_URL_STS="http://127.0.0.1:9", GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="0.5")
    with pytest.raises(STSUnavailableError) as caught:
        resolve()
    message = str(caught.value)
    assert "Could not reach AWS STS at http://127.0.0.1:9" in message
    assert caught.value.code is None


def test_access_denied_explains_the_trust_policy(job: Job, aws: FakeAWS) -> None:
    job.token(project_path="other/project", ref="feature-x", ref_protected=False)
    with pytest.raises(AccessDeniedError) as caught:
        resolve()
    message = str(caught.value)
    host = job.gitlab.issuer.split("://", 1)[1]
    sub = "project_path:other/project:ref_type:branch:ref:feature-x"
    assert f"assume arn:aws:iam::{ACCOUNT_ID}:role/deploy" in message
    assert f"sub='{sub}'" in message
    assert f'"StringEquals": {{"{host}:sub": "{sub}"}}' in message
    assert "or every branch of this project" in message
    assert f'"StringLike": {{"{host}:sub": "{sub[:-9]}*"}}' in message
    assert "only StringLike expands wildcards" in message
    assert f"'aud:' under id_tokens: in .gitlab-ci.yml (this token: {job.gitlab.issuer})" in message
    assert "a sub pattern for branches while this job runs on a branch" in message
    assert f"{host}:ref_protected (this job: false)" in message
    assert "customises it" not in message
    assert aws.sts.calls[0].outcome == "AccessDenied"


def test_access_denied_first_says_the_role_may_be_missing_or_elsewhere(
    job: Job, aws: FakeAWS
) -> None:
    """STS answers AccessDenied for a role in another account: say so before the policy."""
    elsewhere = "210987654321"
    job.set(AWS_ROLE_ARN=f"arn:aws:iam::{elsewhere}:role/deploy")
    with pytest.raises(AccessDeniedError) as caught:
        resolve()
    message = str(caught.value)
    host = job.gitlab.issuer.split("://", 1)[1]
    assert aws.sts.calls[0].outcome == "AccessDenied"  # the job's own token, refused all the same
    first_check = message.index("does not exist, or exists in another account than")
    assert first_check < message.index("its trust policy does not admit this job")
    assert f"The role must be in account {elsewhere}" in message
    assert f"the token was issued by {job.gitlab.issuer}" in message
    assert f"arn:aws:iam::{elsewhere}:oidc-provider/{host}" in message
    assert "aws iam get-role --role-name deploy" in message


@pytest.mark.parametrize(
    ("sub", "broader", "kind"),
    [
        (
            "project_path:other/project:ref_type:tag:ref:v1",
            "project_path:other/project:ref_type:tag:ref:*",
            "every tag of this project",
        ),
        (
            "project_path:other/project:ref:v1:ref_type:tag",
            "project_path:other/project:ref:*:ref_type:tag",
            "every tag of this project",
        ),
        ("project_path:other/project:ref:v1", "project_path:other/project:ref:*", "every ref"),
        ("project_path:other/project:ref_type:tag", None, None),
    ],
)
def test_access_denied_suggests_conditions_in_the_token_sub_shape(
    job: Job, aws: FakeAWS, sub: str, broader: str | None, kind: str | None
) -> None:
    job.token(project_path="other/project", ref="v1", ref_type="tag", sub=sub)
    with pytest.raises(AccessDeniedError) as caught:
        resolve()
    message = str(caught.value)
    host = job.gitlab.issuer.split("://", 1)[1]
    assert f'"StringEquals": {{"{host}:sub": "{sub}"}}' in message
    if broader is None:
        assert '"StringLike": {' not in message
        assert "this project's sub has no ref: that condition admits every tag" in message
    else:
        assert f"or {kind}" in message
        assert f'"StringLike": {{"{host}:sub": "{broader}"}}' in message
    components = ",".join(sub.split(":")[0::2])
    customised = f"(ci_id_token_sub_claim_components: {components})"
    assert (customised in message) is (components != "project_path,ref_type,ref")
    assert ("a sub pattern for branches while this job runs on a tag" in message) is (
        "ref_type" in components
    )


def test_wrong_audience_is_explained(job: Job) -> None:
    job.token(audience="sts.amazonaws.com")
    with pytest.raises(InvalidIdentityTokenError) as caught:
        resolve()
    message = str(caught.value)
    assert "audience (sts.amazonaws.com) is not an audience" in message
    assert "change 'aud:' under id_tokens:" in message


def test_wrong_audience_of_a_token_for_another_service_is_not_added_to_aws(job: Job) -> None:
    # Named explicitly, so it is sent as given; the advice must not be to trust Vault's audience.
    job.token(audience="https://vault.example.com")
    with pytest.raises(InvalidIdentityTokenError) as caught:
        resolve()
    message = str(caught.value)
    assert "minted for another audience (https://vault.example.com), not for AWS" in message
    assert "Add it to the provider" not in message


def test_unknown_issuer_is_explained(job: Job) -> None:
    with FakeGitLab() as other:
        host = other.issuer.split("://", 1)[1]
        job.set(CI_SERVER_URL=other.issuer, GITLAB_OIDC_TOKEN=other.mint())
        with pytest.raises(InvalidIdentityTokenError) as caught:
            resolve()
    assert f"has no IAM OIDC identity provider for {host}" in str(caught.value)


def test_unreachable_issuer_is_retried_then_explained(job: Job, aws: FakeAWS) -> None:
    job.set(GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="3")
    job.gitlab.set_down(True)
    with pytest.raises(InvalidIdentityTokenError) as caught:
        resolve()
    message = str(caught.value)
    assert aws.sts.assume_role_calls >= 2
    assert "could not fetch the token's signing keys" in message
    assert "certificate chain served in order" in message
    assert "custom issuer URL" in message


def test_expired_at_sts_says_when_and_why(job: Job, aws: FakeAWS) -> None:
    aws.sts.inject(Fault("ExpiredTokenException", "Token expired: current date/time ...", 400))
    with pytest.raises(InvalidIdentityTokenError, match="job's timeout"):
        resolve()


def test_duration_above_role_maximum_names_the_setting(job: Job, aws: FakeAWS) -> None:
    policy = aws.trust_policy_for(
        f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{job.gitlab.issuer.split('://', 1)[1]}",
        sub="project_path:mygroup/myproject:*",
        like=True,
    )
    aws.create_role("one-hour-max", policy, max_session_duration=3600)
    job.set(
        AWS_ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/one-hour-max",
        GITLAB_BOTOCORE_DURATION_SECONDS="7200",
    )
    with pytest.raises(STSRequestError) as caught:
        resolve()
    assert caught.value.code == "ValidationError"
    assert "GITLAB_BOTOCORE_DURATION_SECONDS (7200) is above the role's maximum" in str(
        caught.value
    )
