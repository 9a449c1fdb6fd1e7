"""Building, evaluating and explaining trust policies (gitlab_botocore.trust_policy)."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest

from gitlab_botocore import AccessDeniedError
from gitlab_botocore.testing.issuer import gitlab_claims
from gitlab_botocore.testing.sts import FakeAWS
from gitlab_botocore.trust_policy import (
    Finding,
    TrustPolicyReport,
    UnenforceableConditionError,
    build_trust_policy,
    check_trust_policy,
    condition_context,
    policy_for_token,
    provider_arn_for,
    provider_host,
    subject_pattern,
    trust_policy_allows,
)

from .conftest import ACCOUNT_ID, Job

ISSUER = "https://gitlab.example.com"
HOST = "gitlab.example.com"
PROVIDER = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{HOST}"
SUB = "project_path:mygroup/app:ref_type:branch:ref:main"


def claims(**options: Any) -> dict[str, object]:
    options.setdefault("project_path", "mygroup/app")
    return gitlab_claims(issuer=ISSUER, audience=options.pop("audience", ISSUER), **options)


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def statement(condition: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Federated": PROVIDER},
        "Action": "sts:AssumeRoleWithWebIdentity",
    }
    if condition is not None:
        result["Condition"] = condition
    result.update(fields)
    return result


GOOD = statement({"StringEquals": {f"{HOST}:aud": ISSUER, f"{HOST}:sub": SUB}})


def messages(findings: list[Finding], severity: str) -> str:
    return "\n".join(f.message for f in findings if f.severity == severity)


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "host"),
    [
        ("https://gitlab.example.com", "gitlab.example.com"),
        ("https://gitlab.example.com/", "gitlab.example.com"),
        ("https://example.com/gitlab", "example.com/gitlab"),
        (
            "https://bucket.s3.eu-west-1.amazonaws.com/oidc",
            "bucket.s3.eu-west-1.amazonaws.com/oidc",
        ),
        (None, "<issuer>"),
    ],
)
def test_provider_host(issuer: str | None, host: str) -> None:
    assert provider_host(issuer) == host


def test_provider_arn_for() -> None:
    assert provider_arn_for(ISSUER + "/", ACCOUNT_ID) == PROVIDER
    assert provider_arn_for(ISSUER, ACCOUNT_ID, partition="aws-cn").startswith("arn:aws-cn:")
    with pytest.raises(ValueError, match="12 digits"):
        provider_arn_for(ISSUER, "1234")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("mygroup/app",), "project_path:mygroup/app:ref_type:branch:ref:*"),
        (("mygroup/app", "tag", "v*"), "project_path:mygroup/app:ref_type:tag:ref:v*"),
        (("mygroup/*", "*", "main"), "project_path:mygroup/*:ref_type:*:ref:main"),
        (("a/b/c", "branch", "release/1.x"), "project_path:a/b/c:ref_type:branch:ref:release/1.x"),
    ],
)
def test_subject_pattern(arguments: tuple[str, ...], expected: str) -> None:
    project, *rest = arguments
    keywords: dict[str, Any] = dict(zip(("ref_type", "ref"), rest))
    assert subject_pattern(project, **keywords) == expected


@pytest.mark.parametrize(
    ("project", "ref_type", "ref", "complaint"),
    [
        ("app", "branch", "main", "top-level group"),
        ("*/app", "branch", "main", "top-level group"),
        ("my*/app", "branch", "main", "top-level group"),
        ("mygroup/", "branch", "main", "top-level group"),
        ("my:group/app", "branch", "main", "without ':'"),
        ("mygroup/app", "mr", "main", "ref_type"),
        ("mygroup/app", "branch", "a:b", "ref"),
        ("mygroup/app", "branch", "", "ref"),
    ],
)
def test_subject_pattern_refuses(project: str, ref_type: str, ref: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        subject_pattern(project, ref_type=ref_type, ref=ref)


# -- building ------------------------------------------------------------------------------


def test_exact_subjects_use_string_equals() -> None:
    assert build_trust_policy(provider_arn=PROVIDER, audience=ISSUER, subjects=[SUB]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {f"{HOST}:aud": ISSUER, f"{HOST}:sub": [SUB]}},
            }
        ],
    }


def test_patterns_use_string_like_and_exact_values_keep_their_own_statement() -> None:
    pattern = "project_path:mygroup/*:ref_type:branch:ref:release/*"
    built = build_trust_policy(
        provider_arn=PROVIDER, audience=[ISSUER, "sts"], subjects=[SUB, pattern, SUB]
    )
    exact, like = built["Statement"]
    assert exact["Condition"] == {
        "StringEquals": {f"{HOST}:aud": [ISSUER, "sts"], f"{HOST}:sub": [SUB]}
    }
    assert like["Condition"] == {
        "StringEquals": {f"{HOST}:aud": [ISSUER, "sts"]},
        "StringLike": {f"{HOST}:sub": [pattern]},
    }
    # One statement with both would demand both at once, admitting neither job.
    for job in (claims(), claims(project_path="mygroup/api", ref="release/2")):
        assert check_trust_policy(built, job).admits


def test_only_patterns_make_one_string_like_statement() -> None:
    built = build_trust_policy(
        provider_arn=PROVIDER,
        audience=ISSUER,
        subjects=["project_path:mygroup/app:ref_type:?ag:ref:v1"],
    )
    [only] = built["Statement"]
    assert set(only["Condition"]) == {"StringEquals", "StringLike"}


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"provider_arn": "arn:aws:iam::123456789012:role/x"}, "not the ARN of an IAM OIDC"),
        ({"subjects": []}, "at least one"),
        ({"subjects": [""]}, "at least one"),
        ({"audience": []}, "audience"),
    ],
)
def test_build_refuses_bad_input(options: dict[str, Any], complaint: str) -> None:
    arguments: dict[str, Any] = {"provider_arn": PROVIDER, "audience": ISSUER, "subjects": [SUB]}
    with pytest.raises(ValueError, match=complaint):
        build_trust_policy(**{**arguments, **options})


@pytest.mark.parametrize(
    ("options", "claim"),
    [({"protected_only": True}, "ref_protected"), ({"environment": "production"}, "environment")],
)
def test_conditions_aws_cannot_check_are_refused_with_the_alternative(
    options: dict[str, Any], claim: str
) -> None:
    with pytest.raises(UnenforceableConditionError) as caught:
        build_trust_policy(provider_arn=PROVIDER, audience=ISSUER, subjects=[SUB], **options)
    message = str(caught.value)
    assert f"a condition on '{claim}' never holds" in message
    assert "only the 'sub' and 'aud' claims" in message
    with pytest.raises(UnenforceableConditionError):
        policy_for_token(claims(), account_id=ACCOUNT_ID, protected_only=True)


def test_policy_for_token_defaults_to_the_exact_sub() -> None:
    built = policy_for_token(claims(audience=[ISSUER]), account_id=ACCOUNT_ID)
    assert built == build_trust_policy(provider_arn=PROVIDER, audience=ISSUER, subjects=[SUB])


@pytest.mark.parametrize(
    ("options", "subject"),
    [
        ({"any_branch": True}, "project_path:mygroup/app:ref_type:branch:ref:*"),
        ({"ref": "release/*"}, "project_path:mygroup/app:ref_type:branch:ref:release/*"),
        ({"ref_type": "tag", "ref": "v*"}, "project_path:mygroup/app:ref_type:tag:ref:v*"),
    ],
)
def test_policy_for_token_with_other_refs(options: dict[str, Any], subject: str) -> None:
    built = policy_for_token(claims(), account_id=ACCOUNT_ID, **options)
    [only] = built["Statement"]
    assert only["Condition"]["StringLike"] == {f"{HOST}:sub": [subject]}
    assert only["Principal"] == {"Federated": PROVIDER}


def test_policy_for_token_refuses_to_guess_a_customised_sub() -> None:
    custom = claims(sub="project_path:mygroup/app:ref:main")
    assert policy_for_token(custom, account_id=ACCOUNT_ID)["Statement"][0]["Condition"][
        "StringEquals"
    ][f"{HOST}:sub"] == ["project_path:mygroup/app:ref:main"]
    with pytest.raises(ValueError, match="ci_id_token_sub_claim_components"):
        policy_for_token(custom, account_id=ACCOUNT_ID, any_branch=True)
    with pytest.raises(ValueError, match="any_branch"):
        policy_for_token(claims(), account_id=ACCOUNT_ID, any_branch=True, ref_type="tag")
    with pytest.raises(ValueError, match="'iss'"):
        policy_for_token(claims(iss=None), account_id=ACCOUNT_ID)


# -- evaluating ----------------------------------------------------------------------------


def test_only_sub_and_aud_reach_the_condition_context() -> None:
    context = condition_context(claims(audience=["a", "b"]), HOST)
    assert context == {f"{HOST}:sub": [SUB], f"{HOST}:aud": ["a", "b"]}


def test_trust_policy_allows_uses_that_context() -> None:
    good = policy(GOOD)
    assert trust_policy_allows(good, PROVIDER, condition_context(claims(), HOST))
    assert not trust_policy_allows(good, PROVIDER, condition_context(claims(ref="x"), HOST))


# -- explaining ----------------------------------------------------------------------------


def test_a_good_policy_admits_without_findings() -> None:
    report = check_trust_policy(policy(GOOD), claims())
    assert report.admits
    assert report.findings == []
    assert report.text() == "The trust policy admits this token."


@pytest.mark.parametrize(
    ("job", "hint"),
    [
        (claims(project_path="mygroup/other"), "it admits project mygroup/app, this job is in "),
        (claims(ref="feature"), "it admits ref main, this job runs on branch feature"),
        (claims(ref_type="tag"), "it admits ref_type branch, this job runs on a tag"),
    ],
)
def test_a_failing_sub_condition_shows_expected_actual_and_what_differs(
    job: dict[str, object], hint: str
) -> None:
    report = check_trust_policy(policy(GOOD), job)
    assert not report.admits
    errors = messages(report.findings, "error")
    assert f'StringEquals on {HOST}:sub expects "{SUB}"; this token has "{job["sub"]}"' in errors
    assert hint in errors
    assert report.text().startswith("The trust policy does not admit this token.\nERROR: ")


def test_an_aud_condition_other_than_the_token_audience() -> None:
    report = check_trust_policy(policy(GOOD), claims(audience="sts.amazonaws.com"))
    assert not report.admits
    errors = messages(report.findings, "error")
    assert f'on {HOST}:aud expects "{ISSUER}"; this token has "sts.amazonaws.com"' in errors
    assert "'aud:' under id_tokens:" in errors


def test_a_wildcard_under_string_equals() -> None:
    literal = statement(
        {"StringEquals": {f"{HOST}:aud": ISSUER, f"{HOST}:sub": "project_path:mygroup/app:*"}}
    )
    report = check_trust_policy(policy(literal), claims())
    assert not report.admits
    assert "matches only itself. Use StringLike" in messages(report.findings, "error")


def test_principal_of_another_issuer() -> None:
    other = statement(Principal={"Federated": "arn:aws:iam::123456789012:oidc-provider/gitlab.com"})
    report = check_trust_policy(policy({**GOOD, **other}), claims())
    assert not report.admits
    assert f"No statement has an IAM OIDC provider for {HOST}" in messages(report.findings, "error")


def test_principal_in_another_account() -> None:
    elsewhere = PROVIDER.replace(ACCOUNT_ID, "210987654321")
    report = check_trust_policy(
        policy({**GOOD, "Principal": {"Federated": elsewhere}}), claims(), provider_arn=PROVIDER
    )
    assert not report.admits
    errors = messages(report.findings, "error")
    assert f'its Federated principal ["{elsewhere}"] is not the IAM OIDC provider' in errors
    assert "must be in the role's own account" in errors


def test_principal_that_is_not_federated() -> None:
    report = check_trust_policy(
        policy({**GOOD, "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}),
        claims(),
        provider_arn=PROVIDER,
    )
    assert "is not a Federated principal" in messages(report.findings, "error")


def test_provider_for_another_host_than_the_issuer() -> None:
    report = check_trust_policy(
        policy(GOOD), claims(), provider_arn="arn:aws:iam::123456789012:oidc-provider/gitlab.com"
    )
    assert not report.admits
    assert "is for gitlab.com, but the token was issued by" in messages(report.findings, "error")


def test_action_missing() -> None:
    report = check_trust_policy(policy({**GOOD, "Action": "sts:AssumeRole"}), claims())
    assert not report.admits
    errors = messages(report.findings, "error")
    assert 'its Action "sts:AssumeRole" does not include sts:AssumeRoleWithWebIdentity' in errors
    assert "sts:AssumeRole is a different action" in errors
    assert check_trust_policy(policy({**GOOD, "Action": ["sts:*"]}), claims()).admits


def test_a_ref_protected_condition_never_holds_on_aws() -> None:
    protected = copy.deepcopy(GOOD)
    protected["Condition"]["StringEquals"][f"{HOST}:ref_protected"] = "true"
    report = check_trust_policy(policy(protected), claims(ref_protected=True))
    assert not report.admits
    errors = messages(report.findings, "error")
    assert 'not ref_protected (this token has ref_protected="true")' in errors
    assert "can never hold, for any job" in errors


def test_a_negated_condition_on_an_unseen_claim_restricts_nothing() -> None:
    meant_for_branches = statement(
        {
            "StringEquals": {f"{HOST}:aud": ISSUER},
            "StringLike": {f"{HOST}:sub": "project_path:mygroup/app:*"},
            "StringNotEquals": {f"{HOST}:ref_type": "tag"},
        }
    )
    report = check_trust_policy(policy(meant_for_branches), claims(ref_type="tag"))
    assert report.admits  # the tag job gets in: AWS never sees ref_type
    assert "always holds and restricts nothing" in messages(report.findings, "warning")


def test_a_condition_key_of_another_provider() -> None:
    foreign = copy.deepcopy(GOOD)
    foreign["Condition"]["StringEquals"]["gitlab.com:sub"] = SUB
    report = check_trust_policy(policy(foreign), claims())
    assert not report.admits
    assert "is for the provider gitlab.com, but this token comes from" in messages(
        report.findings, "error"
    )


@pytest.mark.parametrize(
    "condition",
    [
        None,
        {"StringEquals": {f"{HOST}:aud": ISSUER}},
        {"StringNotLike": {f"{HOST}:sub": "project_path:evil/*"}},
    ],
)
def test_no_sub_restriction_is_a_security_finding(condition: dict[str, Any] | None) -> None:
    report = check_trust_policy(policy(statement(condition)), claims())
    assert report.admits
    assert not report.passed
    assert (
        f"Statement 1 lets in any project on {HOST}: it does not restrict {HOST}:sub; for "
        "example sub 'project_path:outsider-group/project:ref_type:branch:ref:main'"
    ) in messages(report.findings, "security")


@pytest.mark.parametrize(
    ("pattern", "broad"),
    [
        ("*", True),
        ("project_path:*", True),
        ("project_path:mygroup*", True),
        ("project_path:mygroup/*", False),
        ("project_path:mygroup/app:ref_type:*:ref:*", False),
    ],
)
def test_patterns_that_do_not_pin_the_group_are_a_security_finding(
    pattern: str, broad: bool
) -> None:
    like = statement(
        {"StringEquals": {f"{HOST}:aud": ISSUER}, "StringLike": {f"{HOST}:sub": pattern}}
    )
    report = check_trust_policy(policy(like), claims())
    assert report.admits
    security = messages(report.findings, "security")
    assert ("project_path:outsider-group/project" in security or "mygroup-evil" in security) is (
        broad
    )
    assert "does not restrict" not in security


def test_a_matching_deny_wins() -> None:
    deny = statement({"StringLike": {f"{HOST}:sub": "*:ref:main"}}, Effect="Deny", Sid="NoMain")
    any_ref = statement(
        {
            "StringEquals": {f"{HOST}:aud": ISSUER},
            "StringLike": {f"{HOST}:sub": "project_path:mygroup/app:*"},
        }
    )
    report = check_trust_policy(policy(any_ref, deny), claims())
    assert not report.admits
    assert "Statement 2 (NoMain) denies this token." in messages(report.findings, "error")
    other_ref = check_trust_policy(policy(any_ref, deny), claims(ref="dev"))
    assert other_ref.admits
    assert other_ref.passed
    assert [f.severity for f in other_ref.findings] == ["note"]  # every ref but main
    assert TrustPolicyReport(True).passed


def test_request_keys_are_assumed_to_hold() -> None:
    with_ip = copy.deepcopy(GOOD)
    with_ip["Condition"]["IpAddress"] = {"aws:SourceIp": "203.0.113.0/24"}
    report = check_trust_policy(policy(with_ip), claims())
    assert report.admits
    assert "aws:SourceIp depends on the request" in messages(report.findings, "note")
    assert report.passed


def test_an_empty_policy() -> None:
    report = check_trust_policy({"Version": "2012-10-17", "Statement": []}, claims())
    assert not report.admits
    assert "The policy has no statements." in messages(report.findings, "error")


def test_claims_without_issuer_need_a_provider() -> None:
    with pytest.raises(ValueError, match="no 'iss'"):
        check_trust_policy(policy(GOOD), claims(iss=None))
    assert check_trust_policy(policy(GOOD), claims(iss=None), provider_arn=PROVIDER).admits


# -- the local STS judges like the checker ---------------------------------------------------


def test_local_sts_like_aws_ignores_claims_other_than_sub_and_aud(job: Job, aws: FakeAWS) -> None:
    """A condition on ref_protected keeps even a protected-branch job out, as on AWS."""
    host = provider_host(job.gitlab.issuer)
    built = policy_for_token(
        claims_of(job.gitlab.mint(ref_protected=True)), account_id=ACCOUNT_ID, any_branch=True
    )
    aws.create_role("trust-policy-any-branch", built)
    protected = copy.deepcopy(built)
    protected["Statement"][0]["Condition"]["StringEquals"][f"{host}:ref_protected"] = "true"
    aws.create_role("trust-policy-protected", protected)

    job.set(AWS_ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/trust-policy-any-branch")
    assert boto3.Session().get_credentials().get_frozen_credentials().access_key
    job.set(AWS_ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/trust-policy-protected")
    with pytest.raises(AccessDeniedError):
        boto3.Session().get_credentials().get_frozen_credentials()
    assert not check_trust_policy(protected, claims_of(job.gitlab.mint())).admits


def claims_of(token: str) -> dict[str, Any]:
    import jwt

    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded
