"""Tests for the offline GitLab OIDC issuer used by the rest of the suite."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from gitlab_botocore.testing.issuer import FakeGitLab, gitlab_claims


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        yield server


def _get(url: str) -> tuple[int, str, Any]:
    """Fetch ``url`` and return status, content type and decoded JSON body, even for errors."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], json.load(error)


def _verify(gitlab: FakeGitLab, token: str, audience: str | None = None) -> dict[str, Any]:
    signing_key = jwt.PyJWKClient(gitlab.jwks_uri, cache_keys=False).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=audience or gitlab.issuer,
        issuer=gitlab.issuer,
    )
    return claims


def test_discovery_document_is_served_over_http(gitlab: FakeGitLab) -> None:
    status, content_type, body = _get(gitlab.url + "/.well-known/openid-configuration")

    assert status == 200
    assert content_type == "application/json"
    assert body["issuer"] == gitlab.url
    assert body["jwks_uri"] == f"{gitlab.url}/oauth/discovery/keys"
    assert body["token_endpoint"] == f"{gitlab.url}/oauth/token"
    assert body["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "openid" in body["scopes_supported"]
    assert gitlab.requests == ["/.well-known/openid-configuration"]


def test_jwks_lists_the_signing_key(gitlab: FakeGitLab) -> None:
    status, _, body = _get(gitlab.jwks_uri)

    assert status == 200
    [key] = body["keys"]
    assert key["kty"] == "RSA"
    assert key["kid"] == gitlab.kid
    assert key["use"] == "sig"
    assert key["alg"] == "RS256"
    assert key["e"] == "AQAB"
    assert jwt.PyJWK(key).key.key_size == 2048


def test_unknown_path_is_a_json_404(gitlab: FakeGitLab) -> None:
    status, content_type, body = _get(gitlab.url + "/api/v4/projects")

    assert status == 404
    assert content_type == "application/json"
    assert "error" in body


def test_minted_token_verifies_against_the_published_keys(gitlab: FakeGitLab) -> None:
    token = gitlab.mint()

    assert jwt.get_unverified_header(token) == {"kid": gitlab.kid, "typ": "JWT", "alg": "RS256"}
    claims = _verify(gitlab, token)
    assert claims["iss"] == gitlab.url
    assert claims["aud"] == gitlab.url
    assert "/oauth/discovery/keys" in gitlab.requests


def test_branch_claims_have_gitlab_shapes() -> None:
    claims = gitlab_claims(
        issuer="https://gitlab.example.com",
        audience="sts.amazonaws.com",
        project_path="infra/deploy/tool",
        ref="feature/x",
        issued_at=1_700_000_000,
        lifetime_seconds=600,
    )

    assert claims["sub"] == "project_path:infra/deploy/tool:ref_type:branch:ref:feature/x"
    assert claims["namespace_path"] == "infra/deploy"
    assert claims["ref_path"] == "refs/heads/feature/x"
    assert claims["ref_protected"] == "true"
    assert claims["iat"] == 1_700_000_000
    assert claims["nbf"] == 1_700_000_000 - 5
    assert claims["exp"] == 1_700_000_000 + 600
    for name in ("project_id", "namespace_id", "pipeline_id", "job_id", "user_id"):
        assert isinstance(claims[name], str), name
    assert (claims["project_id"], claims["namespace_id"]) == ("42", "7")
    assert isinstance(claims["runner_id"], int)
    assert claims["user_email"] == "alice@example.com"
    assert claims["ci_config_ref_uri"] == (
        "gitlab.example.com/infra/deploy/tool//.gitlab-ci.yml@refs/heads/feature/x"
    )
    assert re.fullmatch(r"[0-9a-f]{40}", str(claims["sha"]))
    assert "environment" not in claims


def test_tag_claims_and_fresh_jti() -> None:
    first = gitlab_claims(issuer="https://g", audience="a", ref="v1.2.3", ref_type="tag")
    second = gitlab_claims(issuer="https://g", audience="a", ref="v1.2.3", ref_type="tag")

    assert first["sub"] == "project_path:mygroup/myproject:ref_type:tag:ref:v1.2.3"
    assert first["ref_path"] == "refs/tags/v1.2.3"
    assert first["jti"] != second["jti"]


def test_unknown_ref_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="ref_type"):
        gitlab_claims(issuer="https://g", audience="a", ref_type="merge_request")


def test_default_issue_time_is_now() -> None:
    before = int(time.time())
    claims = gitlab_claims(issuer="https://g", audience="a", ref_protected=False)

    assert before <= int(str(claims["iat"])) <= before + 1
    assert claims["ref_protected"] == "false"


def test_environment_claims() -> None:
    production = gitlab_claims(issuer="https://g", audience="a", environment="production")
    review = gitlab_claims(issuer="https://g", audience="a", environment="review/x")

    assert production["environment"] == "production"
    assert production["deployment_tier"] == "production"
    assert production["environment_protected"] == "false"
    assert production["environment_action"] == "start"
    assert review["deployment_tier"] == "other"


def test_extra_claims_override_add_and_remove(gitlab: FakeGitLab) -> None:
    token = gitlab.mint(sub=None, project_id="99", custom="yes")

    claims = _verify(gitlab, token)
    assert "sub" not in claims
    assert claims["project_id"] == "99"
    assert claims["custom"] == "yes"


def test_audience_list_verifies(gitlab: FakeGitLab) -> None:
    token = gitlab.mint(audience=["sts.amazonaws.com", "other"])

    claims = _verify(gitlab, token, audience="sts.amazonaws.com")
    assert claims["aud"] == ["sts.amazonaws.com", "other"]


def test_mint_claims_signs_arbitrary_claims(gitlab: FakeGitLab) -> None:
    token = gitlab.mint_claims({"iss": gitlab.issuer, "aud": gitlab.issuer, "x": 1})

    assert _verify(gitlab, token)["x"] == 1


def test_custom_issuer() -> None:
    with FakeGitLab(issuer="https://gitlab.example.com") as gitlab:
        _, _, body = _get(gitlab.url + "/.well-known/openid-configuration")
        token = gitlab.mint()

        assert body["issuer"] == "https://gitlab.example.com"
        assert body["jwks_uri"].startswith(gitlab.url)
        claims = _verify(gitlab, token)
        assert claims["iss"] == "https://gitlab.example.com"
        assert str(claims["ci_config_ref_uri"]).startswith("gitlab.example.com/")


def test_rotation_keeping_old_key(gitlab: FakeGitLab) -> None:
    old_token = gitlab.mint()
    old_kid = gitlab.kid

    gitlab.rotate_key()

    new_token = gitlab.mint()
    assert gitlab.kid != old_kid
    assert jwt.get_unverified_header(new_token)["kid"] == gitlab.kid
    _, _, jwks = _get(gitlab.jwks_uri)
    assert [key["kid"] for key in jwks["keys"]] == [gitlab.kid, old_kid]
    _verify(gitlab, old_token)
    _verify(gitlab, new_token)


def test_rotation_dropping_old_key(gitlab: FakeGitLab) -> None:
    old_token = gitlab.mint()
    gitlab.rotate_key(keep_old=False)

    with pytest.raises(jwt.PyJWKClientError):
        _verify(gitlab, old_token)
    _verify(gitlab, gitlab.mint())


def test_down_answers_503_until_back_up(gitlab: FakeGitLab) -> None:
    gitlab.set_down(True)
    status, _, _ = _get(gitlab.jwks_uri)
    assert status == 503
    with pytest.raises(jwt.PyJWKClientConnectionError):
        _verify(gitlab, gitlab.mint())

    gitlab.down = False
    status, _, _ = _get(gitlab.jwks_uri)
    assert status == 200
    assert gitlab.requests.count("/oauth/discovery/keys") == 3


def test_delay_slows_answers(gitlab: FakeGitLab) -> None:
    gitlab.set_delay(0.1)
    started = time.monotonic()
    _get(gitlab.jwks_uri)

    assert time.monotonic() - started >= 0.1


def test_stop_closes_the_socket() -> None:
    gitlab = FakeGitLab().start()
    port = int(gitlab.url.rsplit(":", 1)[1])
    gitlab.stop()
    gitlab.stop()

    with pytest.raises(RuntimeError):
        _ = gitlab.url
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
