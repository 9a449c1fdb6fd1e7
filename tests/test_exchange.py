"""The STS exchange: which failures are retried, which fail fast, and what the errors say."""

from __future__ import annotations

import datetime
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
import trustme
from botocore.stub import Stubber

import gitlab_botocore
from gitlab_botocore import (
    AccessDeniedError,
    InvalidIdentityTokenError,
    STSError,
    STSRequestError,
    STSUnavailableError,
)
from gitlab_botocore.credentials import GitLabOIDCCredentials
from gitlab_botocore.exchange import (
    CONNECTION_ATTEMPTS,
    IssuedCredentials,
    STSExchange,
    _call_with_retries,
    _issued,
)
from gitlab_botocore.redaction import Secret
from gitlab_botocore.refresh import Refresher
from gitlab_botocore.settings import settings_for_session
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.faults import Fault
from gitlab_botocore.testing.issuer import FakeGitLab
from gitlab_botocore.testing.sts_wire import credentials_body
from gitlab_botocore.token_source import EnvironmentTokenSource

from .conftest import ACCOUNT_ID, ROLE_ARN, Job

ROLE = ROLE_ARN

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
    assert "a sub pattern for tags while this job runs on a branch;" in message
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
    assert ("a sub pattern for branches while this job runs on a tag;" in message) is (
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


# -- replies that are not STS's (issue 10, item 4) --------------------------------------

NS = 'xmlns="https://sts.amazonaws.com/doc/2011-06-15/"'
NO_CREDENTIALS = (
    f"<AssumeRoleWithWebIdentityResponse {NS}><AssumeRoleWithWebIdentityResult>"
    "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
)
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKENvalue+/="


def doctored(
    *,
    access_key: str = "ASIAEXAMPLEEXAMPLE12",
    secret_key: str = SECRET_KEY,
    session_token: str = SESSION_TOKEN,
    expires_in: float = 3600,
) -> bytes:
    expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=expires_in
    )
    return credentials_body(
        access_key, secret_key, session_token, expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
    )


NOT_STS = [
    pytest.param(
        Fault.reply("<html><body>Please sign in to the proxy</body></html>", 200, "text/html"),
        "HTTP 200 (text/html",
        id="captive-portal-page",
    ),
    pytest.param(Fault.reply(b""), "an empty body", id="empty-200"),
    pytest.param(Fault.reply(NO_CREDENTIALS), "HTTP 200 without <Credentials>", id="no-creds"),
    pytest.param(
        Fault.reply('{"message": "hello"}', 200, "application/json"),
        "application/json",
        id="json",
    ),
    pytest.param(
        Fault.reply("<html><body>Forbidden by policy</body></html>", 403, "text/html"),
        "HTTP 403 (text/html), an error page that is not an STS error: 'Forbidden by policy'",
        id="proxy-403-page",
    ),
]


@pytest.mark.parametrize(("fault", "said"), NOT_STS)
def test_a_reply_that_is_not_sts_fails_fast_naming_the_endpoint(
    job: Job, aws: FakeAWS, fault: Fault, said: str
) -> None:
    aws.sts.inject(fault, fault, fault)
    with pytest.raises(STSRequestError) as caught:
        resolve()
    message = str(caught.value)
    assert aws.sts.assume_role_calls == 1
    assert f"AWS STS at {aws.sts.url} answered the request for " in message
    assert said in message
    assert "check AWS_ENDPOINT_URL_STS" in message
    assert caught.value.code is None


GARBLED_BUT_TRANSIENT = [
    pytest.param(
        Fault.reply("upstream connect error or disconnect/reset", 503, "text/plain"),
        id="plain-text-503",
    ),
    pytest.param(
        Fault.reply(
            "<!DOCTYPE html><html><head><meta charset=utf-8></head><body>Bad gateway",
            502,
            "text/html",
        ),
        id="html5-502",
    ),
    pytest.param(Fault.reply(b"", 502), id="empty-502"),
    pytest.param(Fault.reply(doctored()[:230]), id="sts-reply-cut-short"),
]


@pytest.mark.parametrize("fault", GARBLED_BUT_TRANSIENT)
def test_a_garbled_reply_from_a_failing_proxy_is_retried(
    job: Job, aws: FakeAWS, fault: Fault
) -> None:
    aws.sts.inject(fault, fault)
    assert resolve().startswith("ASIA")
    assert [call.outcome for call in aws.sts.calls][-1] == "ok"
    assert aws.sts.assume_role_calls == 3


def test_garbled_replies_for_the_whole_budget_end_as_unavailable(job: Job, aws: FakeAWS) -> None:
    job.set(GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="1")
    aws.sts.inject(*[Fault.reply("upstream timed out", 504, "text/plain")] * 50)
    with pytest.raises(STSUnavailableError) as caught:
        resolve()
    message = str(caught.value)
    assert "HTTP 504 (text/plain, 18 bytes), a body STS would not send: 'upstream timed out'" in (
        message
    )
    assert f"after {aws.sts.assume_role_calls} attempts" in message
    assert "GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS (1 s)" in message


def test_a_garbled_reply_in_the_mandatory_window_keeps_the_current_credentials(
    job: Job, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for_session(botocore.session.Session(), {}, os.environ)
    assert settings is not None
    token = EnvironmentTokenSource(None, None, os.environ).get_token()
    exchange = STSExchange(settings, botocore.session.Session())
    now = [time.time()]
    refresher = Refresher(
        lambda retry: exchange.assume_role(token, retry=retry), clock=lambda: now[0]
    )
    credentials = GitLabOIDCCredentials(refresher, method="test")
    first = credentials.get_frozen_credentials()
    now[0] += 3600 - 9 * 60  # 9 minutes left: inside the mandatory window
    aws.sts.inject(Fault.reply("<html><body>maintenance</body></html>", 200, "text/html"))
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        assert credentials.get_frozen_credentials().access_key == first.access_key
    assert aws.sts.assume_role_calls == 2
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "using the current ones" in warning
    assert "HTTP 200 (text/html" in warning


# -- what STS returns is checked (item 5) ------------------------------------------------

BAD_CREDENTIALS = [
    pytest.param(doctored(expires_in=-60), "credentials that already expired", id="expired"),
    pytest.param(doctored(expires_in=13 * 3600), "more than 12 hours from now", id="too-long"),
    pytest.param(
        doctored(access_key="ASIA\nAWS_REGION=evil1"), "an AccessKeyId that is not", id="key-nl"
    ),
    pytest.param(doctored(access_key="ASIA-SHORT"), "an AccessKeyId that is not", id="key-short"),
    pytest.param(
        doctored(secret_key=SECRET_KEY + "\nAWS_SESSION_TOKEN=evil"),
        "a SecretAccessKey that holds spaces, line breaks or control characters",
        id="secret-newline",
    ),
    pytest.param(
        doctored(session_token=SESSION_TOKEN + "\x1b[2J"),
        "a malformed STS document",  # XML cannot even carry it: botocore's parser fails
        id="token-escape-sequence",
    ),
    pytest.param(
        doctored(session_token=SESSION_TOKEN + " export X=1"),
        "a SessionToken that holds spaces",
        id="token-space",
    ),
]


@pytest.mark.parametrize(("body", "said"), BAD_CREDENTIALS)
def test_unusable_credentials_are_refused(job: Job, aws: FakeAWS, body: bytes, said: str) -> None:
    aws.sts.inject(Fault.reply(body))
    with pytest.raises(STSRequestError) as caught:
        resolve()
    message = str(caught.value)
    assert said in message
    assert aws.sts.url in message
    assert aws.sts.assume_role_calls == 1
    assert SECRET_KEY not in message
    assert SESSION_TOKEN not in message


def test_an_expired_reply_blames_the_clock_or_the_endpoint(job: Job, aws: FakeAWS) -> None:
    aws.sts.inject(Fault.reply(doctored(expires_in=-3600)))
    with pytest.raises(STSRequestError, match="the job's clock is wrong"):
        resolve()


# -- secrets in what STS echoes (item 6) -------------------------------------------------


def test_sts_error_text_echoing_the_token_is_redacted(job: Job, aws: FakeAWS) -> None:
    raw = job.variables["GITLAB_OIDC_TOKEN"]
    other_jwt = job.gitlab.mint(project_path="someone/else")
    aws.sts.inject(
        Fault("ValidationError", f"Value '{raw}' at 'webIdentityToken'; also {other_jwt}", 400)
    )
    with pytest.raises(STSRequestError) as caught:
        resolve()
    message = str(caught.value)
    assert "at 'webIdentityToken'" in message
    assert raw not in message
    assert other_jwt not in message
    assert raw.split(".")[1] not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# -- the network (item 3, second paragraph) ----------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there


def test_a_refused_connection_fails_after_a_few_quick_attempts(job: Job) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    job.set(AWS_ENDPOINT_URL_STS=endpoint)  # the default 60 s budget
    with pytest.raises(STSUnavailableError) as caught:
        resolve()
    message = str(caught.value)
    assert f"Could not reach AWS STS at {endpoint}" in message
    assert f"(after {CONNECTION_ATTEMPTS} attempts)" in message
    assert "The host name must resolve and accept HTTPS connections" in message


def test_a_host_name_that_does_not_resolve_fails_after_a_few_quick_attempts(job: Job) -> None:
    job.set(AWS_ENDPOINT_URL_STS="https://sts.gitlab-botocore.invalid")
    with pytest.raises(STSUnavailableError) as caught:
        resolve()
    assert f"(after {CONNECTION_ATTEMPTS} attempts)" in str(caught.value)
    assert "sts.gitlab-botocore.invalid" in str(caught.value)


def test_connection_failures_do_not_shorten_the_budget_for_throttling(
    job: Job, aws: FakeAWS
) -> None:
    # Two dropped connections and four throttled answers: all retried within the budget.
    aws.sts.inject(*[Fault.dropped_connection()] * 2, *[Fault.throttling()] * 4)
    assert resolve().startswith("ASIA")
    assert aws.sts.assume_role_calls == 7


@pytest.fixture
def untrusted_https_sts(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    """An HTTPS endpoint whose certificate botocore does not trust; counts handshakes."""
    authority = trustme.CA()
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tmp_path / "server.pem"))
    handshakes: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            handshakes.append(1)
            super().setup()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}", handshakes
    finally:
        server.shutdown()
        server.server_close()


def test_an_untrusted_certificate_fails_at_once_and_says_what_to_check(
    job: Job, untrusted_https_sts: tuple[str, list[int]]
) -> None:
    endpoint, connections = untrusted_https_sts
    job.set(AWS_ENDPOINT_URL_STS=endpoint)
    with pytest.raises(STSUnavailableError) as caught:
        resolve()
    message = str(caught.value)
    assert "(after 1 attempt)" in message
    assert "certificate" in message.lower()
    assert "AWS_CA_BUNDLE" in message
    assert "REQUESTS_CA_BUNDLE" in message
    assert len(connections) == 1


# -- unit: the reply checks and the retry policy, with botocore's Stubber ------------------


def parsed(**credentials: object) -> dict[str, object]:
    values: dict[str, object] = {
        "AccessKeyId": "ASIAEXAMPLEEXAMPLE12",
        "SecretAccessKey": SECRET_KEY,
        "SessionToken": SESSION_TOKEN,
        "Expiration": datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
    }
    values.update(credentials)
    return {
        "Credentials": values,
        "AssumedRoleUser": {
            "Arn": "arn:aws:sts::123456789012:assumed-role/deploy/s",
            "AssumedRoleId": "AROAEXAMPLE:s",
        },
    }


@pytest.mark.parametrize(
    "key",
    ["ASIA" + "A1B2C3D4E5F6G7H8", "AKIAIOSFODNN7EXAMPLE", "LSIAQAAAAAAAAAAAAAAA", "A" * 128],
)
def test_access_key_ids_of_aws_moto_and_localstack_pass(key: str) -> None:
    issued = _issued(parsed(AccessKeyId=key), ROLE, "s")
    assert issued.access_key == key


@pytest.mark.parametrize(
    "key", ["ASIA123", "A" * 129, "ASIA ABCDEFGHIJKLMNOP", "ASIAÄBCDEFGHIJKLMNOP"]
)
def test_malformed_access_key_ids_fail(key: str) -> None:
    with pytest.raises(STSRequestError, match="AccessKeyId"):
        _issued(parsed(AccessKeyId=key), ROLE, "s")


@pytest.mark.parametrize("bad", ["\n", "\r", "\x00", "\x1b[31m", "\t", " ", "\x7f"])
def test_secrets_with_control_characters_fail(bad: str) -> None:
    with pytest.raises(STSRequestError, match="SessionToken"):
        _issued(parsed(SessionToken=SESSION_TOKEN + bad + "x"), ROLE, "s")
    with pytest.raises(STSRequestError, match="SecretAccessKey"):
        _issued(parsed(SecretAccessKey=bad + SECRET_KEY), ROLE, "s")


def test_expiration_limits() -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    hours_12 = now + datetime.timedelta(hours=12, minutes=4)
    assert _issued(parsed(Expiration=hours_12), ROLE, "s").expiration == hours_12
    for wrong in (
        now - datetime.timedelta(seconds=1),
        now + datetime.timedelta(hours=12, minutes=6),
    ):
        with pytest.raises(STSRequestError, match="Expiration"):
            _issued(parsed(Expiration=wrong), ROLE, "s")
    with pytest.raises(STSRequestError, match="an Expiration that is no time"):
        _issued(parsed(Expiration="soon"), ROLE, "s")


def test_issued_secrets_hide_from_repr_but_keep_their_value() -> None:
    issued = _issued(parsed(), ROLE, "s")
    assert issued.secret_key == SECRET_KEY
    assert issued.token == SESSION_TOKEN
    shown = repr([issued.secret_key, issued.token]) + repr(issued)
    assert SECRET_KEY not in shown
    assert SESSION_TOKEN not in shown


@pytest.fixture
def stubbed_sts() -> Iterator[tuple[Any, Stubber]]:
    client = botocore.session.Session().create_client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="unused",
    )
    with Stubber(client) as stubber:
        yield client, stubber


def call_stubbed(client: Any, budget: float = 5.0) -> IssuedCredentials:
    return _call_with_retries(
        lambda: _issued(
            client.assume_role_with_web_identity(
                RoleArn=ROLE, RoleSessionName="session", WebIdentityToken=Secret("eyJ.token.value")
            ),
            ROLE,
            "s",
        ),
        "AssumeRoleWithWebIdentity",
        lambda code, message, attempts: STSRequestError(f"{code}: {message} ({attempts})"),
        lambda problem, attempts: STSUnavailableError(f"{problem} ({attempts})"),
        time.monotonic() + budget,
    )


def test_stubbed_secret_parameter_is_sent_as_its_value(stubbed_sts: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed_sts
    stubber.add_response(
        "assume_role_with_web_identity",
        parsed(),
        {"RoleArn": ROLE, "RoleSessionName": "session", "WebIdentityToken": "eyJ.token.value"},
    )
    assert call_stubbed(client).access_key == "ASIAEXAMPLEEXAMPLE12"


def test_stubbed_reply_without_credentials_is_not_retried(
    stubbed_sts: tuple[Any, Stubber],
) -> None:
    client, stubber = stubbed_sts
    stubber.add_response("assume_role_with_web_identity", {})
    stubber.add_response("assume_role_with_web_identity", parsed())
    with pytest.raises(STSUnavailableError, match=r"without <Credentials>.*\(1\)"):
        call_stubbed(client)


def test_stubbed_error_page_5xx_is_retried(stubbed_sts: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed_sts
    stubber.add_client_error("assume_role_with_web_identity", "502", "Bad Gateway", 502)
    stubber.add_response("assume_role_with_web_identity", parsed())
    assert call_stubbed(client).access_key == "ASIAEXAMPLEEXAMPLE12"


def test_a_bug_in_our_code_keeps_its_own_traceback() -> None:
    def broken() -> IssuedCredentials:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        _call_with_retries(
            broken, "X", lambda *a: STSError("no"), lambda *a: STSError("no"), time.monotonic()
        )
