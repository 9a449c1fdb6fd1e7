"""Cold start: what a fresh job process pays, and reading claims without PyJWT.

The runtime decodes the ID token's claims with base64url and JSON; PyJWT (and the
``cryptography`` it imports) stays with the tools that make or check signatures. These
tests hold that to PyJWT's behaviour: the same claims, the same refusals.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from typing import Any

import boto3
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gitlab_botocore
from gitlab_botocore.id_token import IdToken, _MalformedTokenError, _unverified_claims
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.issuer import FakeGitLab

from .conftest import Job

RESOLVE_AND_CALL = """
import json, sys
import boto3
OFF_PATH = ("gitlab_botocore.cache", "gitlab_botocore.explanations")
import gitlab_botocore
session = boto3.Session()
session.client("s3").list_buckets()
print(json.dumps({
    "method": session.get_credentials().method,
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("cryptography", "jwt")),
    "tools": sorted(m for m in sys.modules if m.startswith("gitlab_botocore.") and m.split(".")[1]
                    in ("cli", "doctor", "trust_policy", "testing", "pytest_plugin")),
    "off_path": sorted(m for m in sys.modules if m in OFF_PATH),
}))
"""
EXPLAIN = (
    " It should be the value GitLab sets for a name declared under 'id_tokens:' in "
    ".gitlab-ci.yml, passed through unchanged."
)
PYJWT_VERSION = tuple(int(part) for part in jwt.__version__.split(".")[:2])
MIRRORED_PYJWT = (2, 15)
"""The PyJWT release whose unverified decoding ``_unverified_claims`` mirrors."""


def b64(value: Any) -> str:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


HEADER = b64({"alg": "RS256", "typ": "JWT"})
CLAIMS = b64({"exp": 4_000_000_000})
NUMBER_KID = b64({"alg": "RS256", "kid": 5})
CRITICAL_EXP = b64({"alg": "RS256", "crit": ["exp"]})


# -- a fresh process ----------------------------------------------------------------------


def test_fresh_process_resolves_credentials_without_cryptography_jwt_or_tools(
    job: Job, aws: FakeAWS
) -> None:
    # Only meaningful where cryptography is installed, as in CI images (the dev extra
    # installs it): PyJWT imports it whenever it can.
    pytest.importorskip("cryptography")
    result = subprocess.run(
        [sys.executable, "-c", RESOLVE_AND_CALL],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["method"] == gitlab_botocore.METHOD
    assert outcome["heavy"] == []
    assert outcome["tools"] == []  # the runtime never imports the tools or the test kit
    assert aws.sts.assume_role_calls == 1


def test_fresh_process_loads_the_cache_and_explanations_only_when_needed(
    job: Job, aws: FakeAWS, tmp_path: Any
) -> None:
    """A job without GITLAB_BOTOCORE_CACHE whose exchange succeeds does not load the cache
    or the refusal explanations (each costs a fresh process part of a millisecond); with
    the cache on, the cache is loaded and used."""

    def run(extra: dict[str, str]) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, "-c", RESOLVE_AND_CALL],
            env={**os.environ, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        outcome: dict[str, Any] = json.loads(result.stdout)
        assert outcome["method"] == gitlab_botocore.METHOD
        return outcome

    assert run({})["off_path"] == []
    cache_dir = tmp_path / "cache"
    assert run({"GITLAB_BOTOCORE_CACHE": str(cache_dir)})["off_path"] == ["gitlab_botocore.cache"]
    assert [p.suffix for p in cache_dir.iterdir() if p.suffix == ".json"] == [".json"]
    assert aws.sts.assume_role_calls == 2


# -- the error path, unchanged ------------------------------------------------------------

MALFORMED = [
    ("not-a-jwt", "Not enough segments"),
    ("abc.def", "Not enough segments"),
    ("!!!." + CLAIMS + ".c2ln", "Invalid header padding"),
    (b64(b"not json") + "." + CLAIMS + ".c2ln", "Invalid header string"),
    (b64([1]) + "." + CLAIMS + ".c2ln", "Invalid header string"),
    (HEADER + ".e30!.c2ln", "Invalid payload padding"),
    (HEADER + "." + CLAIMS + ".a", "Invalid crypto padding"),
    (HEADER + "." + b64(b"{") + ".c2ln", "Invalid payload string"),
    (HEADER + "." + b64([]) + ".c2ln", "Invalid payload string"),
    (NUMBER_KID + "." + CLAIMS + ".c2ln", "Key ID header parameter must be a string"),
    (CRITICAL_EXP + "." + CLAIMS + ".c2ln", "Unsupported critical extension"),
]


@pytest.mark.parametrize(("raw", "reason"), MALFORMED)
def test_malformed_token_gives_the_same_message_as_before(job: Job, raw: str, reason: str) -> None:
    """The messages are those PyJWT's reasons produced (checked against the old code)."""
    job.set(GITLAB_OIDC_TOKEN=raw)
    with pytest.raises(gitlab_botocore.TokenError) as raised:
        boto3.Session().get_credentials()
    assert str(raised.value) == (
        f"GITLAB_OIDC_TOKEN does not hold a JSON Web Token ({reason})." + EXPLAIN
    )
    assert raised.value.variable == "GITLAB_OIDC_TOKEN"


def test_token_without_exp_gives_the_same_message_as_before(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=HEADER + "." + b64({"sub": "x"}) + ".c2ln")
    with pytest.raises(gitlab_botocore.TokenError) as raised:
        boto3.Session().get_credentials()
    assert str(raised.value) == (
        "GITLAB_OIDC_TOKEN has no valid 'exp' claim, so it is not a GitLab ID token. Declare "
        "the token under 'id_tokens:' in .gitlab-ci.yml."
    )


def test_undecodable_variable_is_a_token_error_not_a_crash() -> None:
    # os.environ turns bytes that are not UTF-8 into lone surrogates; PyJWT raised
    # UnicodeEncodeError on them.
    with pytest.raises(gitlab_botocore.TokenError, match=r"\(Invalid header padding\)"):
        IdToken.parse("\udcff" + HEADER[1:] + "." + CLAIMS + ".c2ln", "GITLAB_OIDC_TOKEN")


# -- the same as PyJWT --------------------------------------------------------------------

PROPERTIES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20)
gitlab_shaped = st.fixed_dictionaries(
    {
        "project_path": st.builds("{}/{}".format, names, names),
        "ref": st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30),
        "ref_type": st.sampled_from(["branch", "tag"]),
        "ref_protected": st.booleans(),
        "project_id": st.integers(1, 10**9),
        "pipeline_id": st.integers(1, 10**12),
        "job_id": st.integers(1, 10**12),
        "user_login": names,
        "environment": st.none() | names,
        "lifetime_seconds": st.integers(-(10**6), 10**6),
        "audience": st.text(min_size=1, max_size=40) | st.lists(st.text(max_size=20), max_size=3),
    }
)


@PROPERTIES
@given(options=gitlab_shaped)
def test_claims_of_gitlab_shaped_tokens_are_pyjwts(gitlab: FakeGitLab, options: Any) -> None:
    raw = gitlab.mint(**options)  # RS256, signed by the fake issuer's key
    expected = jwt.decode(raw, options={"verify_signature": False})
    assert _unverified_claims(raw) == expected
    assert IdToken.parse(raw).claims == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["RS256", "HS256", "none"]),
        "kid": st.text(max_size=4) | st.integers(),
        "crit": st.lists(st.sampled_from(["b64", "exp", 1]), max_size=2) | st.just("b64"),
        "b64": st.booleans(),
        "typ": json_values,
    },
)
segments = st.one_of(
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/", max_size=12),
    st.binary(max_size=12).map(b64),
    headers.map(b64),
    st.dictionaries(st.sampled_from(["exp", "sub", "aud", "iss"]), json_values).map(b64),
    json_values.map(b64),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=5),
)
tokens = st.one_of(
    st.lists(segments, min_size=1, max_size=4).map(".".join),
    st.tuples(headers, st.dictionaries(st.text(max_size=4), json_values)).map(
        lambda parts: f"{b64(parts[0])}.{b64(parts[1])}.c2ln"
    ),
)


def outcome(decode: Any, raw: str) -> tuple[str, Any]:
    try:
        return ("claims", decode(raw))
    except (jwt.PyJWTError, _MalformedTokenError) as error:
        return ("refused", str(error))


@pytest.mark.skipif(
    PYJWT_VERSION < MIRRORED_PYJWT,
    reason=f"older PyJWT accepts some malformed segments that PyJWT {MIRRORED_PYJWT} refuses",
)
@PROPERTIES
@given(raw=tokens)
def test_any_string_is_accepted_or_refused_as_pyjwt_does(raw: str) -> None:
    ours = outcome(_unverified_claims, raw)
    theirs = outcome(lambda value: jwt.decode(value, options={"verify_signature": False}), raw)
    assert ours == theirs
