"""Tests for the verifying local STS in front of moto, over real HTTP."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from gitlab_botocore.testing.aws import FakeAWS, trust_policy_for
from gitlab_botocore.testing.faults import (
    ACCESS_DENIED,
    DROPPED_CONNECTION,
    IDP_COMMUNICATION_ERROR,
    INTERNAL_FAILURE,
    SERVICE_UNAVAILABLE,
    THROTTLING,
    VERIFICATION_KEY_UNAVAILABLE,
    Fault,
)
from gitlab_botocore.testing.issuer import FakeGitLab
from gitlab_botocore.testing.sts_wire import MSG_VERIFICATION_KEY
from gitlab_botocore.tools.trust_policy import (
    build_trust_policy,
    condition_holds,
    trust_policy_allows,
)

SUB = "project_path:mygroup/myproject:ref_type:branch:ref:main"
_names = itertools.count()


@pytest.fixture(autouse=True)
def _no_ambient_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ID_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        yield server


@pytest.fixture(scope="module")
def aws_module(gitlab: FakeGitLab) -> Iterator[tuple[FakeAWS, str]]:
    with FakeAWS() as aws:
        yield aws, aws.create_oidc_provider(gitlab.issuer, client_ids=[gitlab.issuer])


@pytest.fixture
def aws(aws_module: tuple[FakeAWS, str], gitlab: FakeGitLab) -> Iterator[FakeAWS]:
    fake, _ = aws_module
    fake.sts.reset()
    yield fake
    fake.sts.reset()
    gitlab.set_down(False)


@pytest.fixture
def provider_arn(aws_module: tuple[FakeAWS, str]) -> str:
    return aws_module[1]


def _role(aws: FakeAWS, provider_arn: str, max_session_duration: int = 3600, **kw: Any) -> str:
    kw.setdefault("sub", SUB)
    policy = aws.trust_policy_for(provider_arn, **kw)
    return aws.create_role(f"role-{next(_names)}", policy, max_session_duration)


def _sts(aws: FakeAWS, *, validate: bool = True, **credentials: str) -> Any:
    # total_max_attempts counts the first try; "max_attempts" would allow one retry.
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=5,
        parameter_validation=validate,
    )
    if not credentials:
        config = config.merge(Config(signature_version=UNSIGNED))
    return boto3.client(
        "sts",
        config=config,
        endpoint_url=aws.sts_url,
        region_name="us-east-1",
        aws_access_key_id=credentials.get("AccessKeyId", "x"),
        aws_secret_access_key=credentials.get("SecretAccessKey", "x"),
        aws_session_token=credentials.get("SessionToken"),
    )


def _assume(
    aws: FakeAWS, role_arn: str, token: str, *, validate: bool = True, **kw: Any
) -> dict[str, Any]:
    kw.setdefault("RoleSessionName", "ci-job")
    response: dict[str, Any] = _sts(aws, validate=validate).assume_role_with_web_identity(
        RoleArn=role_arn, WebIdentityToken=token, **kw
    )
    return response


def _refused(aws: FakeAWS, role_arn: str, token: str, **kw: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        _assume(aws, role_arn, token, **kw)
    assert aws.sts.assume_role_calls == 1
    return caught.value


def _error(error: ClientError) -> tuple[str, int, str]:
    return (
        error.response["Error"]["Code"],
        error.response["ResponseMetadata"]["HTTPStatusCode"],
        error.response["Error"]["Message"],
    )


# -- accepted --------------------------------------------------------------------------


def test_valid_token_gets_credentials_that_work_on_moto(
    aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str
) -> None:
    role_arn = _role(aws, provider_arn, aud=gitlab.issuer)
    response = _assume(aws, role_arn, gitlab.mint(), DurationSeconds=900)
    credentials = response["Credentials"]

    s3 = aws.client(
        "s3",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    bucket = f"bucket-{next(_names)}"
    s3.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    identity = _sts(aws, **credentials).get_caller_identity()
    role_name = role_arn.rsplit("/", 1)[1]
    assert f"assumed-role/{role_name}/ci-job" in identity["Arn"]

    [call] = aws.sts.calls
    assert call.outcome == "ok"
    assert call.role_arn == role_arn
    assert call.session_name == "ci-job"
    assert call.duration_seconds == 900
    assert call.claims["sub"] == SUB


def test_wildcard_sub_with_string_like_is_accepted(
    aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str
) -> None:
    role_arn = _role(
        aws, provider_arn, sub="project_path:mygroup/*:ref_type:branch:ref:ma?n", like=True
    )
    assert "Credentials" in _assume(aws, role_arn, gitlab.mint())


def test_list_of_subjects_matches_any(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn, sub=["other", SUB])
    assert "Credentials" in _assume(aws, role_arn, gitlab.mint())


# -- refused by verification -----------------------------------------------------------


def test_wrong_sub_is_refused(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    error = _refused(aws, role_arn, gitlab.mint(ref="feature"))
    assert _error(error) == (
        "AccessDenied",
        403,
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    )
    assert aws.sts.calls[0].outcome == "AccessDenied"


def test_wildcard_with_string_equals_is_literal(
    aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str
) -> None:
    host = provider_arn.split(":oidc-provider/", 1)[1]
    literal = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {f"{host}:sub": "project_path:mygroup/*"}},
            }
        ],
    }
    role_arn = aws.create_role(f"role-{next(_names)}", literal)
    assert _error(_refused(aws, role_arn, gitlab.mint()))[:2] == ("AccessDenied", 403)


def test_trust_policy_for_refuses_a_pattern_compared_literally(provider_arn: str) -> None:
    with pytest.raises(ValueError, match="literally"):
        trust_policy_for(provider_arn, sub="project_path:mygroup/*", like=False)


def test_trust_policy_for_is_build_trust_policy(provider_arn: str) -> None:
    host = provider_arn.split(":oidc-provider/", 1)[1]
    subjects = [SUB, "project_path:mygroup/*:ref_type:branch:ref:main"]
    built = build_trust_policy(provider_arn=provider_arn, audience="aud", subjects=subjects)
    assert trust_policy_for(provider_arn, sub=subjects, aud="aud") == built
    unpinned = trust_policy_for(provider_arn, sub=subjects)
    for statement in unpinned["Statement"]:
        assert f"{host}:aud" not in json.dumps(statement["Condition"])
    assert [s["Condition"].get("StringLike") for s in unpinned["Statement"]] == [
        s["Condition"].get("StringLike") for s in built["Statement"]
    ]


def test_wrong_audience_is_refused(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    error = _refused(aws, role_arn, gitlab.mint(audience="https://elsewhere.example"))
    assert _error(error) == ("InvalidIdentityToken", 400, "Incorrect token audience")


def test_audience_condition_is_enforced(
    aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str
) -> None:
    role_arn = _role(aws, provider_arn, aud="sts.amazonaws.com")
    assert _error(_refused(aws, role_arn, gitlab.mint()))[0] == "AccessDenied"


def test_expired_token(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    token = gitlab.mint(issued_at=int(time.time()) - 7200, lifetime_seconds=3600)
    code, status, message = _error(_refused(aws, role_arn, token))
    assert (code, status) == ("ExpiredTokenException", 400)
    assert message.startswith("Token expired: current date/time ")
    assert "must be before the expiration date/time" in message


def test_token_not_yet_valid(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    token = gitlab.mint(issued_at=int(time.time()) + 600)
    assert _error(_refused(aws, role_arn, token))[:2] == ("InvalidIdentityToken", 400)


def test_bad_signature(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    header, _, signature = gitlab.mint().split(".")
    forged = f"{header}.{gitlab.mint().split('.')[1]}.{signature}"
    code, status, message = _error(_refused(aws, role_arn, forged))
    assert (code, status, message) == ("InvalidIdentityToken", 400, "Signature verification failed")


def test_unknown_key_id(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    other = FakeGitLab(issuer=gitlab.issuer).start()
    try:
        token = other.mint()
    finally:
        other.stop()
    assert _error(_refused(aws, role_arn, token)) == (
        "InvalidIdentityToken",
        400,
        MSG_VERIFICATION_KEY,
    )


def test_issuer_down(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    gitlab.set_down(True)
    assert _error(_refused(aws, role_arn, gitlab.mint())) == (
        "InvalidIdentityToken",
        400,
        MSG_VERIFICATION_KEY,
    )


def test_unknown_provider(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    token = gitlab.mint(issuer="https://gitlab.unknown.example")
    assert _error(_refused(aws, role_arn, token)) == (
        "InvalidIdentityToken",
        400,
        "No OpenIDConnect provider found in your account for https://gitlab.unknown.example",
    )


def test_missing_role(aws: FakeAWS, gitlab: FakeGitLab) -> None:
    role_arn = f"arn:aws:iam::{aws.account_id}:role/does-not-exist"
    assert _error(_refused(aws, role_arn, gitlab.mint()))[:2] == ("AccessDenied", 403)


def test_duration_above_role_maximum(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    error = _refused(aws, role_arn, gitlab.mint(), DurationSeconds=7200)
    assert _error(error) == (
        "ValidationError",
        400,
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
    )


def test_duration_within_raised_maximum(
    aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str
) -> None:
    role_arn = _role(aws, provider_arn, max_session_duration=7200)
    assert "Credentials" in _assume(aws, role_arn, gitlab.mint(), DurationSeconds=7200)


@pytest.mark.parametrize(
    ("session_name", "constraint"),
    [
        ("has space", "regular expression pattern"),
        ("x" * 65, "length less than or equal to 64"),
    ],
)
def test_bad_session_name(
    aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str, session_name: str, constraint: str
) -> None:
    role_arn = _role(aws, provider_arn)
    code, status, message = _error(
        _refused(aws, role_arn, gitlab.mint(), RoleSessionName=session_name)
    )
    assert (code, status) == ("ValidationError", 400)
    assert message.startswith("1 validation error detected: ")
    assert "'roleSessionName'" in message
    assert constraint in message


def test_duration_below_sts_minimum(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    # botocore checks the minimum itself, so switch that off to reach the server.
    error = _refused(aws, role_arn, gitlab.mint(), validate=False, DurationSeconds=899)
    code, _, message = _error(error)
    assert code == "ValidationError"
    assert "greater than or equal to 900" in message


# -- injected faults -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (THROTTLING, ("Throttling", 400)),
        (IDP_COMMUNICATION_ERROR, ("IDPCommunicationError", 400)),
        (VERIFICATION_KEY_UNAVAILABLE, ("InvalidIdentityToken", 400)),
        (ACCESS_DENIED, ("AccessDenied", 403)),
        (INTERNAL_FAILURE, ("InternalFailure", 500)),
        (SERVICE_UNAVAILABLE, ("ServiceUnavailable", 503)),
        (Fault("IDPRejectedClaim", "Claim rejected", 403), ("IDPRejectedClaim", 403)),
    ],
)
def test_injected_fault_is_seen_by_botocore(
    aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str, fault: Fault, expected: tuple[str, int]
) -> None:
    code, status = expected
    role_arn = _role(aws, provider_arn)
    aws.sts.inject(fault)
    error = _refused(aws, role_arn, gitlab.mint())
    assert _error(error) == (code, status, fault.message)
    # The fault was used up: the next request is verified normally.
    assert "Credentials" in _assume(aws, role_arn, gitlab.mint())
    assert [c.outcome for c in aws.sts.calls] == [code, "ok"]


def test_faults_are_consumed_in_order(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    aws.sts.inject(THROTTLING, INTERNAL_FAILURE)
    for expected in ("Throttling", "InternalFailure"):
        with pytest.raises(ClientError) as caught:
            _assume(aws, role_arn, gitlab.mint())
        assert caught.value.response["Error"]["Code"] == expected
    assert aws.sts.assume_role_calls == 2


def test_latency_fault_then_success(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    aws.sts.inject(Fault.latency(0.3))
    started = time.monotonic()
    assert "Credentials" in _assume(aws, role_arn, gitlab.mint())
    assert time.monotonic() - started >= 0.3


def test_constant_latency(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    aws.sts.set_latency(0.2)
    started = time.monotonic()
    _assume(aws, role_arn, gitlab.mint())
    _assume(aws, role_arn, gitlab.mint())
    assert time.monotonic() - started >= 0.4
    # After reset() the latency is gone: a wide margin keeps a loaded machine from failing this.
    aws.sts.set_latency(5)
    aws.sts.reset()
    started = time.monotonic()
    _assume(aws, role_arn, gitlab.mint())
    assert time.monotonic() - started < 5


def test_dropped_connection(aws: FakeAWS, gitlab: FakeGitLab, provider_arn: str) -> None:
    role_arn = _role(aws, provider_arn)
    aws.sts.inject(DROPPED_CONNECTION)
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        _assume(aws, role_arn, gitlab.mint())
    assert [c.outcome for c in aws.sts.calls] == ["dropped"]


def test_other_actions_are_forwarded_without_checks(aws: FakeAWS) -> None:
    aws.sts.inject(THROTTLING)
    identity = _sts(aws, AccessKeyId="AKIAEXAMPLE", SecretAccessKey="x").get_caller_identity()
    assert identity["Account"] == aws.account_id
    assert aws.sts.assume_role_calls == 0


# -- condition operators ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "expected", "values", "result"),
    [
        ("StringEquals", "a", ["a"], True),
        ("StringEquals", ["b", "a"], ["a"], True),
        ("StringEquals", "a", None, False),
        ("StringNotEquals", "a", ["b"], True),
        ("StringNotEquals", "a", ["a"], False),
        ("StringNotEquals", "a", None, True),
        ("StringLike", "ref:*", ["ref:main"], True),
        ("StringLike", "ma?n", ["main"], True),
        ("StringLike", "ma?n", ["maiin"], False),
        ("StringLike", "a.c", ["abc"], False),
        ("StringNotLike", "ref:feat*", ["ref:main"], True),
        ("StringNotLike", "ref:*", ["ref:main"], False),
        ("StringEqualsIfExists", "a", None, True),
        ("ForAnyValue:StringLike", "x*", ["a", "xy"], True),
        ("ForAnyValue:StringEquals", "x", ["a", "b"], False),
        ("ForAllValues:StringEquals", ["a", "b"], ["a", "b"], True),
        ("ForAllValues:StringEquals", ["a"], ["a", "b"], False),
        ("Null", "true", None, True),
        ("Null", "false", None, False),
        ("NumericEquals", "1", ["1"], False),
    ],
)
def test_condition_operators(
    operator: str, expected: object, values: list[str] | None, result: bool
) -> None:
    assert condition_holds(operator, expected, values) is result


def test_trust_policy_deny_wins_and_principal_must_match() -> None:
    arn = "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"
    context = {"gitlab.example.com:sub": [SUB]}
    allow = trust_policy_for(arn, sub=SUB)
    assert trust_policy_allows(allow, arn, context)
    assert not trust_policy_allows(allow, arn.replace("gitlab", "other"), context)
    deny = {
        "Effect": "Deny",
        "Principal": {"Federated": [arn]},
        "Action": ["sts:*"],
        "Condition": {"StringLike": {"gitlab.example.com:sub": "*:ref:main"}},
    }
    assert not trust_policy_allows({"Statement": [*allow["Statement"], deny]}, arn, context)
