"""Building, evaluating and explaining trust policies (gitlab_botocore.tools.trust_policy)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from gitlab_botocore import AccessDeniedError
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.issuer import gitlab_claims
from gitlab_botocore.tools.trust_policy import (
    Finding,
    TrustPolicyReport,
    UnenforceableConditionError,
    build_trust_policy,
    check_trust_policy,
    condition_context,
    policy_for_token,
    provider_arn_for,
    provider_host,
    sub_components,
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


# -- whom else a policy lets in (issue 10, item 2) ---------------------------------------------

GITHUB = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/token.actions.githubusercontent.com"


def like(sub: str) -> dict[str, Any]:
    return statement({"StringEquals": {f"{HOST}:aud": ISSUER}, "StringLike": {f"{HOST}:sub": sub}})


DANGEROUS = [
    pytest.param(
        [like("project_path:mygroup/app*:ref_type:branch:ref:main")],
        "security",
        "Statement 1 lets in other projects whose path merely starts with 'mygroup/app'",
        "project_path:mygroup/app-evil:ref_type:branch:ref:main",
        id="project-prefix-sibling",
    ),
    pytest.param(
        [like("project_path:mygroup/app*:ref_type:branch:ref:main")],
        "security",
        "Statement 1 lets in other projects",
        "project_path:mygroup/app/evil:ref_type:branch:ref:main",
        id="project-prefix-subproject",
    ),
    pytest.param(
        [like("project_path:mygroup/*:ref_type:branch:ref:main")],
        "warning",
        "Statement 1 lets in every project of mygroup and its subgroups",
        "project_path:mygroup/new-project:ref_type:branch:ref:main",
        id="whole-group",
    ),
    pytest.param(
        [like("project_path:mygroup/app:ref_type:branch:ref:main*")],
        "security",
        "Statement 1 lets in branches whose name merely starts with 'main'",
        "project_path:mygroup/app:ref_type:branch:ref:main-evil",
        id="ref-prefix",
    ),
    pytest.param(
        [like("project_path:mygroup/app:ref_type:*:ref:main")],
        "security",
        "Statement 1 lets in a tag with the name the pattern means for a branch",
        "project_path:mygroup/app:ref_type:tag:ref:main",
        id="any-ref-type",
    ),
    pytest.param(
        [
            GOOD,
            {
                "Sid": "Admins",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "sts:AssumeRole",
            },
        ],
        "security",
        "Statement 2 (Admins) lets in every IAM user and role of every AWS account",
        "arn:aws:iam::999999999999:role/outsider",
        id="aws-star-assume-role",
    ),
    pytest.param(
        [
            GOOD,
            {
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER},
                "NotAction": "sts:AssumeRole",
            },
        ],
        "security",
        f"Statement 2 lets in any project on {HOST}: it does not restrict {HOST}:sub",
        "project_path:outsider-group/project:ref_type:branch:ref:main",
        id="gitlab-not-action",
    ),
    pytest.param(
        [GOOD, statement(Principal={"Federated": GITHUB})],
        "security",
        f"Statement 2 lets in tokens of {GITHUB}: any GitHub Actions workflow",
        "repo:outsider/repo:ref:refs/heads/main",
        id="github-unconditioned",
    ),
    pytest.param(
        [GOOD, statement(Principal={"Federated": "accounts.google.com"})],
        "security",
        "Statement 2 lets in tokens of accounts.google.com: any Google account",
        "sub 'outsider'",
        id="google-unconditioned",
    ),
    pytest.param(
        [statement({"StringEquals": {f"{HOST}:sub": SUB}})],
        "warning",
        f"Statement 1 lets in tokens that jobs requested for any audience: it does not pin {HOST}",
        "aud 'https://outsider.example'",
        id="no-aud",
    ),
    pytest.param(
        [statement({"StringEquals": {f"{HOST}:sub": SUB}, "StringLike": {f"{HOST}:aud": "*"}})],
        "warning",
        f"it does not pin {HOST}:aud",
        "aud 'https://outsider.example'",
        id="aud-star",
    ),
    pytest.param(
        [statement({"StringEqualsIgnoreCase": {f"{HOST}:aud": ISSUER, f"{HOST}:sub": SUB}})],
        "security",
        "Statement 1 lets in refs whose name differs from main only in case",
        "project_path:mygroup/app:ref_type:branch:ref:MAIN",
        id="ignore-case",
    ),
    pytest.param(
        [{**like(SUB), "Principal": "*", "Condition": {"StringEquals": {f"{HOST}:aud": ISSUER}}}],
        "security",
        f"Statement 1 lets in any project on {HOST}",
        "project_path:outsider-group/project",
        id="principal-star-without-sub",
    ),
    pytest.param(
        [GOOD, statement(Principal={"Federated": "*"})],
        "security",
        "Statement 2 lets in tokens of accounts.google.com",
        "sub 'outsider'",
        id="federated-star",
    ),
]


@pytest.mark.parametrize(("statements", "severity", "what", "example"), DANGEROUS)
def test_dangerous_policies_are_flagged_with_statement_and_example(
    statements: list[dict[str, Any]], severity: str, what: str, example: str
) -> None:
    report = check_trust_policy(policy(*statements), claims())
    assert report.admits  # this job gets in: the danger is whom else
    found = messages(report.findings, severity)
    assert what in found
    assert example in found
    assert not report.passed


def test_a_request_key_condition_lowers_an_outsider_to_a_warning() -> None:
    org_only = {
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}},
    }
    report = check_trust_policy(policy(GOOD, org_only), claims())
    assert not report.of_severity("security")
    assert "unless its conditions on aws:PrincipalOrgID stop them" in messages(
        report.findings, "warning"
    )


def test_an_allow_guarded_by_a_deny_on_sub_is_not_flagged() -> None:
    """IAM: an explicit Deny wins, so the Allow without a sub condition lets in only SUB."""
    allow_all = statement({"StringEquals": {f"{HOST}:aud": ISSUER}})
    guard = statement(
        {"StringNotEquals": {f"{HOST}:sub": SUB}}, Effect="Deny", Principal={"Federated": PROVIDER}
    )
    report = check_trust_policy(policy(allow_all, guard), claims())
    assert report.admits
    assert report.findings == []
    assert report.passed
    assert not check_trust_policy(policy(allow_all, guard), claims(ref="evil")).admits


@pytest.mark.parametrize("partition", ["aws-us-gov", "aws-cn"])
def test_a_policy_in_another_partition_admits(partition: str) -> None:
    provider = PROVIDER.replace("arn:aws:", f"arn:{partition}:")
    other = statement(
        {"StringEquals": {f"{HOST}:aud": ISSUER, f"{HOST}:sub": SUB}},
        Principal={"Federated": provider},
    )
    report = check_trust_policy(policy(other), claims())
    assert report.admits
    assert report.passed
    assert check_trust_policy(policy(other), claims(), provider_arn=provider).passed


def test_principal_star_with_the_right_conditions_admits_like_iam() -> None:
    star = {**GOOD, "Principal": "*"}
    report = check_trust_policy(policy(star), claims(), provider_arn=PROVIDER)
    assert report.admits
    assert report.passed  # no outsider gets in: every other token lacks these keys
    assert 'trusts every principal ("*") and relies on its conditions alone' in messages(
        report.findings, "note"
    )
    assert not check_trust_policy(policy(star), claims(ref="evil")).admits


def test_every_statement_is_judged_and_named() -> None:
    report = check_trust_policy(
        policy(
            GOOD,
            {**like("project_path:mygroup/app:ref_type:branch:ref:main*"), "Sid": "Mains"},
            statement(Principal={"Federated": "accounts.google.com"}),
        ),
        claims(),
    )
    security = messages(report.findings, "security")
    assert "Statement 2 (Mains) lets in branches" in security
    assert "Statement 3 lets in tokens of accounts.google.com" in security
    assert "Statement 1" not in security


# -- customised sub shapes ---------------------------------------------------------------------

SHAPED = [
    ("project_path,ref_type,ref", "project_path:mygroup/app:ref_type:branch:ref:main"),
    ("project_path,ref,ref_type", "project_path:mygroup/app:ref:main:ref_type:branch"),
    ("project_path,ref", "project_path:mygroup/app:ref:main"),
    ("project_path,ref_type", "project_path:mygroup/app:ref_type:branch"),
]


@pytest.mark.parametrize(("components", "sub"), SHAPED)
def test_sub_components_read_all_four_shapes(components: str, sub: str) -> None:
    parsed = sub_components(sub)
    assert parsed is not None
    assert ",".join(parsed) == components
    assert parsed["project_path"] == "mygroup/app"
    assert sub_components("project_path:mygroup/app:branch:main") is None
    assert (
        subject_pattern("mygroup/app", ref="main", components=tuple(components.split(","))) == sub
    )


@pytest.mark.parametrize(("components", "sub"), SHAPED)
def test_the_exact_sub_of_each_shape_admits(components: str, sub: str) -> None:
    exact = statement({"StringEquals": {f"{HOST}:aud": ISSUER, f"{HOST}:sub": sub}})
    report = check_trust_policy(policy(exact), claims(sub=sub))
    assert report.admits
    assert report.passed
    assert policy_for_token(claims(sub=sub), account_id=ACCOUNT_ID)["Statement"][0]["Condition"][
        "StringEquals"
    ][f"{HOST}:sub"] == [sub]


def test_a_default_shape_condition_for_a_customised_sub_says_so() -> None:
    report = check_trust_policy(policy(GOOD), claims(sub="project_path:mygroup/app:ref:main"))
    assert not report.admits
    assert (
        "it is written for the sub components project_path,ref_type,ref, but this project's "
        "sub has project_path,ref (ci_id_token_sub_claim_components)"
    ) in messages(report.findings, "error")


def test_a_sub_without_ref_type_admits_a_tag_of_the_same_name() -> None:
    sub = "project_path:mygroup/app:ref:main"
    exact = statement({"StringEquals": {f"{HOST}:aud": ISSUER, f"{HOST}:sub": sub}})
    notes = messages(check_trust_policy(policy(exact), claims(sub=sub)).findings, "note")
    assert "a tag named main as well as the branch" in notes


@pytest.mark.parametrize(
    ("sub", "pattern", "example"),
    [
        (
            "project_path:mygroup/app:ref:main:ref_type:branch",
            "project_path:mygroup/app:ref:main*:ref_type:branch",
            "project_path:mygroup/app:ref:main-evil:ref_type:branch",
        ),
        (
            "project_path:mygroup/app:ref:main",
            "project_path:mygroup/app*:ref:main",
            "project_path:mygroup/app-evil:ref:main",
        ),
        (
            "project_path:mygroup/app:ref_type:branch",
            "project_path:my*:ref_type:branch",
            "project_path:my-evil/project:ref_type:branch",
        ),
    ],
)
def test_dangerous_patterns_in_customised_shapes(sub: str, pattern: str, example: str) -> None:
    report = check_trust_policy(policy(like(pattern)), claims(sub=sub))
    assert report.admits
    assert f"sub '{example}'" in messages(report.findings, "security")


@pytest.mark.parametrize(
    ("sub", "options", "subject"),
    [
        (
            "project_path:mygroup/app:ref:main:ref_type:branch",
            {"ref": "release/*"},
            "project_path:mygroup/app:ref:release/*:ref_type:branch",
        ),
        (
            "project_path:mygroup/app:ref:main:ref_type:branch",
            {"any_branch": True},
            "project_path:mygroup/app:ref:*:ref_type:branch",
        ),
        ("project_path:mygroup/app:ref:main", {"ref": "v*"}, "project_path:mygroup/app:ref:v*"),
    ],
)
def test_the_generator_keeps_the_token_sub_shape(
    sub: str, options: dict[str, Any], subject: str
) -> None:
    built = policy_for_token(claims(sub=sub), account_id=ACCOUNT_ID, **options)
    assert built["Statement"][0]["Condition"]["StringLike"] == {f"{HOST}:sub": [subject]}


def test_a_sub_without_ref_type_as_its_own_exact_any_branch_policy() -> None:
    sub = "project_path:mygroup/app:ref_type:branch"
    built = policy_for_token(claims(sub=sub), account_id=ACCOUNT_ID, any_branch=True)
    assert built["Statement"][0]["Condition"]["StringEquals"][f"{HOST}:sub"] == [sub]


@pytest.mark.parametrize(
    ("sub", "options", "complaint"),
    [
        ("project_path:mygroup/app:ref:main", {"any_branch": True}, "without ref_type"),
        ("project_path:mygroup/app:ref:main", {"ref_type": "tag"}, "without ref_type"),
        ("project_path:mygroup/app:ref_type:branch", {"ref": "main"}, "without ref"),
        (SUB, {"ref": "main*"}, "would also let in branches whose name merely starts with"),
        (SUB, {"ref_type": "*"}, "would also let in a tag"),
    ],
)
def test_the_generator_refuses_what_it_cannot_say_safely(
    sub: str, options: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        policy_for_token(claims(sub=sub), account_id=ACCOUNT_ID, **options)


# -- the local STS judges like the checker (Principal "*", Deny) --------------------------------


def test_local_sts_admits_principal_star_with_conditions_and_honours_deny(
    job: Job, aws: FakeAWS
) -> None:
    host = provider_host(job.gitlab.issuer)
    own = claims_of(job.gitlab.mint())
    star = policy_for_token(own, account_id=ACCOUNT_ID)
    star["Statement"][0]["Principal"] = "*"
    aws.create_role("trust-policy-star", star)
    job.set(AWS_ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/trust-policy-star")
    assert boto3.Session().get_credentials().get_frozen_credentials().access_key
    assert check_trust_policy(star, own).admits

    guarded = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{host}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringNotEquals": {f"{host}:sub": own["sub"]}},
            },
        ],
    }
    aws.create_role("trust-policy-guarded", guarded)
    job.set(AWS_ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/trust-policy-guarded")
    job.token()
    assert boto3.Session().get_credentials().get_frozen_credentials().access_key
    job.token(ref="feature")
    with pytest.raises(AccessDeniedError):
        boto3.Session().get_credentials().get_frozen_credentials()
    assert [c.outcome for c in aws.sts.calls][-2:] == ["ok", "AccessDenied"]


# -- the console script: exit status 1 on any finding that lets others in ----------------------


def run_check(
    job: Job, tmp_path: Path, document: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    policy_file = tmp_path / "trust.json"
    policy_file.write_text(json.dumps(document))
    return run_cli("trust-policy", "--check", str(policy_file))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = str(Path(sys.executable).parent / "gitlab-botocore")
    return subprocess.run(
        [command, *args], capture_output=True, text=True, timeout=120, check=False
    )


def job_statement(job: Job, condition: dict[str, Any], **fields: Any) -> dict[str, Any]:
    host = provider_host(job.gitlab.issuer)
    result: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{host}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }
    result.update(fields)
    return result


def test_cli_check_fails_a_look_alike_branch_pattern(job: Job, tmp_path: Path) -> None:
    host = provider_host(job.gitlab.issuer)
    pattern = "project_path:mygroup/myproject:ref_type:branch:ref:main*"
    condition = {
        "StringEquals": {f"{host}:aud": job.gitlab.issuer},
        "StringLike": {f"{host}:sub": pattern},
    }
    result = run_check(job, tmp_path, policy(job_statement(job, condition, Sid="Main")))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("Admits this job")
    assert "security  Statement 1 (Main) lets in branches" in result.stdout
    assert "ref:main-evil" in result.stdout


def test_cli_check_fails_a_policy_without_aud(job: Job, tmp_path: Path) -> None:
    host = provider_host(job.gitlab.issuer)
    sub = "project_path:mygroup/myproject:ref_type:branch:ref:main"
    result = run_check(
        job, tmp_path, policy(job_statement(job, {"StringEquals": {f"{host}:sub": sub}}))
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "warning   Statement 1 lets in tokens that jobs requested for any audience" in result.stdout
    )


def test_cli_check_of_a_deeply_nested_file_is_one_message(job: Job, tmp_path: Path) -> None:
    policy_file = tmp_path / "trust.json"
    policy_file.write_text("[" * 100_000)
    result = run_cli("trust-policy", "--check", str(policy_file))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nested too deeply to be a policy document" in result.stderr
    assert "bug" not in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_check_passes_an_allow_guarded_by_a_deny(job: Job, tmp_path: Path) -> None:
    host = provider_host(job.gitlab.issuer)
    sub = "project_path:mygroup/myproject:ref_type:branch:ref:main"
    allow = job_statement(job, {"StringEquals": {f"{host}:aud": job.gitlab.issuer}})
    deny = job_statement(job, {"StringNotEquals": {f"{host}:sub": sub}}, Effect="Deny")
    result = run_check(job, tmp_path, policy(allow, deny))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Admits this job")


def test_cli_check_passes_principal_star_with_the_right_conditions(
    job: Job, tmp_path: Path
) -> None:
    host = provider_host(job.gitlab.issuer)
    sub = "project_path:mygroup/myproject:ref_type:branch:ref:main"
    condition = {"StringEquals": {f"{host}:aud": job.gitlab.issuer, f"{host}:sub": sub}}
    result = run_check(job, tmp_path, policy(job_statement(job, condition, Principal="*")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "note      Statement 1 trusts every principal" in result.stdout


@pytest.mark.parametrize("partition", ["aws-us-gov", "aws-cn"])
def test_cli_generates_and_checks_in_the_role_partition(
    job: Job, tmp_path: Path, partition: str
) -> None:
    job.set(AWS_ROLE_ARN=f"arn:{partition}:iam::{ACCOUNT_ID}:role/deploy")
    generated = run_cli("trust-policy")
    assert generated.returncode == 0, generated.stderr
    document = json.loads(generated.stdout)
    principal = document["Statement"][0]["Principal"]["Federated"]
    assert principal.startswith(f"arn:{partition}:iam::{ACCOUNT_ID}:oidc-provider/")
    result = run_check(job, tmp_path, document)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Admits this job")


def test_cli_refuses_to_generate_a_look_alike_pattern(job: Job) -> None:
    result = run_cli("trust-policy", "--ref", "main*")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "would also let in branches whose name merely starts with 'main'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_runtime_does_not_import_the_trust_policy_tool() -> None:
    code = (
        "import sys, gitlab_botocore, gitlab_botocore.explanations, gitlab_botocore.exchange; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('gitlab_botocore.tools', 'gitlab_botocore.testing'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
