"""Random and malformed input: the library works or raises GitLabOIDCError, never leaks."""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from unittest import mock

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gitlab_botocore
from gitlab_botocore import GitLabOIDCError
from gitlab_botocore.id_token import IdToken
from gitlab_botocore.settings import EnvVar, resolve_settings
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.issuer import FakeGitLab

from .conftest import ROLE_ARN

# Values an environment variable can hold.
env_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | env_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(env_text, children, max_size=3)
    ),
    max_leaves=8,
)
claim_sets = st.dictionaries(
    st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "project_id", "job_id", "x"]),
    json_values | st.integers(min_value=-(10**20), max_value=10**20),
)
SETTINGS_VARIABLES = [
    EnvVar.ROLE_ARN,
    EnvVar.TUTORIAL_ROLE_ARN,
    EnvVar.TOKEN_VARIABLE,
    EnvVar.ROLE_SESSION_NAME,
    EnvVar.DURATION_SECONDS,
    EnvVar.POLICY,
    EnvVar.POLICY_ARNS,
    EnvVar.RETRY_BUDGET_SECONDS,
    EnvVar.REGION,
    EnvVar.ENDPOINT_URL_STS,
    EnvVar.CI_PROJECT_ID,
]
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FAST
@given(st.dictionaries(st.sampled_from(SETTINGS_VARIABLES), env_text))
def test_any_settings_resolve_or_raise_configuration_error(environ: dict[str, str]) -> None:
    try:
        resolved = resolve_settings(overrides={}, environ=environ, profile_config={})
    except gitlab_botocore.ConfigurationError as error:
        assert error.setting
        return
    if resolved is not None:
        assert 900 <= resolved.duration_seconds <= 43200
        name = resolved.role_session_name
        assert name is None or 2 <= len(name) <= 64


@FAST
@given(raw=env_text)
def test_any_token_value_parses_or_raises_token_error(raw: str) -> None:
    try:
        token = IdToken.parse(raw, "GITLAB_OIDC_TOKEN")
    except gitlab_botocore.TokenError as error:
        assert "GITLAB_OIDC_TOKEN" in str(error)
        return
    assert raw.strip() not in repr(token) or len(raw.strip()) < 12


@FAST
@given(claims=claim_sets)
def test_any_claims_parse_or_raise_token_error(claims: dict[str, Any]) -> None:
    # Built by hand: PyJWT refuses to sign some of these, GitLab would never send them.
    raw = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
            for part in ({"alg": "RS256", "typ": "JWT"}, claims)
        )
        + ".c2lnbmF0dXJl"
    )
    try:
        token = IdToken.parse(raw, "T")
    except gitlab_botocore.TokenError:
        return
    assert raw not in repr(token)
    token.describe()
    token.seconds_left()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    environ=st.dictionaries(st.sampled_from(SETTINGS_VARIABLES), env_text, max_size=4),
    claims=claim_sets,
    signed=st.booleans(),
)
def test_the_whole_flow_works_or_raises_our_error_without_leaking(
    gitlab: FakeGitLab,
    aws: FakeAWS,
    environ: dict[str, str],
    claims: dict[str, Any],
    signed: bool,
) -> None:
    token = gitlab.mint(**{k: v for k, v in claims.items() if k not in {"iss", "aud"}})
    if not signed:
        token = token.rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    job = {
        "AWS_ROLE_ARN": ROLE_ARN,
        "CI_SERVER_URL": gitlab.issuer,
        "GITLAB_OIDC_TOKEN": token,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": aws.moto_url,
        "AWS_ENDPOINT_URL_STS": aws.sts_url,
        EnvVar.RETRY_BUDGET_SECONDS: "0",
        **environ,
    }
    with mock.patch.dict(os.environ, job):
        gitlab_botocore.uninstall()
        gitlab_botocore.install()
        try:
            credentials = boto3.Session().get_credentials()
            if credentials is not None:
                frozen = credentials.get_frozen_credentials()
                assert frozen.secret_key not in repr(credentials)
        except GitLabOIDCError as error:
            assert token not in str(error)
            assert token.split(".")[2] not in str(error)
