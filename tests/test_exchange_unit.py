"""The STS exchange on its own: botocore's Stubber instead of a server, a fake clock
instead of real waits.

Request parameters, retry decisions, reply validation and role chaining, in
milliseconds. The same exchange over real local servers (moto, the verifying STS, the
fake GitLab) is in ``test_exchange.py`` and ``test_chaining.py``.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from gitlab_botocore import (
    AccessDeniedError,
    InvalidIdentityTokenError,
    STSError,
)
from gitlab_botocore import exchange as exchange_module
from gitlab_botocore.exchange import RETRY_BACKOFF, IssuedCredentials, STSExchange
from gitlab_botocore.id_token import IdToken
from gitlab_botocore.settings import Settings, settings_for_session

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/deploy"
CHAINED = "arn:aws:iam::210987654321:role/target"
WEB_IDENTITY = "assume_role_with_web_identity"


def id_token(**claims: Any) -> IdToken:
    """An ID token as GitLab shapes it; unsigned, since only AWS checks signatures."""
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    body = {
        "iss": "https://gitlab.example.com",
        "aud": "sts.amazonaws.com",
        "sub": "project_path:group/app:ref_type:branch:ref:main",
        "project_id": "42",
        "pipeline_id": "1001",
        "job_id": "5005",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 3600,
        **claims,
    }

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return IdToken.parse(f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(body)}.c2ln")


def reply(number: int = 1, role: str = ROLE) -> dict[str, Any]:
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    return {
        "Credentials": {
            "AccessKeyId": f"ASIAEXAMPLE{number:09d}",
            "SecretAccessKey": f"secret/{number}",
            "SessionToken": f"session-token-{number}",
            "Expiration": expires,
        },
        "AssumedRoleUser": {
            "AssumedRoleId": "AROAEXAMPLE:s",
            "Arn": role.replace(":iam:", ":sts:").replace(":role/", ":assumed-role/") + "/s",
        },
    }


class FakeTime:
    """Stands in for the exchange's ``time`` module: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class StubbedClients:
    """Puts a Stubber on each client botocore creates, in order; the test scripts each
    client's replies beforehand (``script[0]`` for the first client, and so on)."""

    def __init__(self) -> None:
        self.script: list[list[tuple[str, Any, dict[str, Any] | None]]] = []
        self.stubbers: list[Stubber] = []
        self.clients: list[Any] = []

    def attach(self, client: Any) -> Any:
        stubber = Stubber(client)
        planned = self.script[len(self.stubbers)] if len(self.stubbers) < len(self.script) else []
        for operation, outcome, expected in planned:
            if isinstance(outcome, tuple):  # (code, message, status)
                code, message, status = outcome
                stubber.add_client_error(operation, code, message, status)
            else:
                stubber.add_response(operation, outcome, expected)
        stubber.activate()
        self.stubbers.append(stubber)
        self.clients.append(client)
        return client

    def all_used(self) -> None:
        for stubber in self.stubbers:
            stubber.assert_no_pending_responses()


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    clock = FakeTime()
    monkeypatch.setattr(exchange_module, "time", clock)
    return clock


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubbedClients]:
    clients = StubbedClients()
    create_client = botocore.session.Session.create_client

    def create_stubbed(self: Any, *args: Any, **kwargs: Any) -> Any:
        return clients.attach(create_client(self, *args, **kwargs))

    monkeypatch.setattr(botocore.session.Session, "create_client", create_stubbed)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    yield clients
    for stubber in clients.stubbers:
        stubber.deactivate()


def settings(**environ: str) -> Settings:
    session = botocore.session.Session()
    resolved = settings_for_session(
        session, {}, {"AWS_ROLE_ARN": ROLE, "AWS_REGION": "eu-west-1", **environ}
    )
    assert resolved is not None
    return resolved


def exchange_for(**environ: str) -> STSExchange:
    return STSExchange(settings(**environ), botocore.session.Session())


# -- request parameters ------------------------------------------------------------------


def test_the_request_names_the_role_the_job_and_the_token(
    stubbed: StubbedClients, fake_time: FakeTime
) -> None:
    token = id_token()
    stubbed.script = [
        [
            (
                WEB_IDENTITY,
                reply(),
                {
                    "RoleArn": ROLE,
                    "RoleSessionName": "GitLabRunner-42-1001-5005",  # project, pipeline, job
                    "WebIdentityToken": token.raw,
                    "DurationSeconds": 3600,
                },
            )
        ]
    ]
    issued = exchange_for().assume_role(token)
    stubbed.all_used()
    assert isinstance(issued, IssuedCredentials)
    assert issued.access_key == "ASIAEXAMPLE000000001"
    assert issued.account_id == ACCOUNT
    assert issued.session_name == "GitLabRunner-42-1001-5005"


def test_session_policies_and_duration_are_sent_when_configured(
    stubbed: StubbedClients, fake_time: FakeTime
) -> None:
    policy = '{"Version":"2012-10-17","Statement":[]}'
    arn = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    token = id_token()
    stubbed.script = [
        [
            (
                WEB_IDENTITY,
                reply(),
                {
                    "RoleArn": ROLE,
                    "RoleSessionName": "release-42",
                    "WebIdentityToken": token.raw,
                    "DurationSeconds": 900,
                    "Policy": policy,
                    "PolicyArns": [{"arn": arn}],
                },
            )
        ]
    ]
    exchange_for(
        AWS_ROLE_SESSION_NAME="release-42",
        GITLAB_BOTOCORE_DURATION_SECONDS="900",
        GITLAB_BOTOCORE_POLICY=policy,
        GITLAB_BOTOCORE_POLICY_ARNS=arn,
    ).assume_role(token)
    stubbed.all_used()


def test_the_sts_client_is_unsigned_and_does_not_retry_on_its_own(
    stubbed: StubbedClients, fake_time: FakeTime
) -> None:
    stubbed.script = [[(WEB_IDENTITY, reply(), None)]]
    exchange_for().assume_role(id_token())
    config = stubbed.clients[0].meta.config
    assert config.signature_version is botocore.UNSIGNED
    assert config.retries["total_max_attempts"] == 1
    assert stubbed.clients[0].meta.region_name == "eu-west-1"


# -- retry decisions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transient",
    [
        ("Throttling", "Rate exceeded", 400),
        ("IDPCommunicationError", "The identity provider could not be reached", 400),
        (
            "InvalidIdentityToken",
            "Couldn't retrieve verification key from your identity provider",
            400,
        ),
        ("ServiceUnavailable", "Service is unavailable", 503),
        ("500", "", 500),  # an error page: no STS error document
    ],
)
def test_transient_failures_are_retried_with_back_off(
    stubbed: StubbedClients, fake_time: FakeTime, transient: tuple[str, str, int]
) -> None:
    stubbed.script = [[(WEB_IDENTITY, transient, None)] * 2 + [(WEB_IDENTITY, reply(), None)]]
    assert exchange_for().assume_role(id_token()).access_key == "ASIAEXAMPLE000000001"
    stubbed.all_used()
    assert len(fake_time.waits) == 2
    assert RETRY_BACKOFF.first / 2 <= fake_time.waits[0] <= RETRY_BACKOFF.first
    assert RETRY_BACKOFF.first <= fake_time.waits[1] <= 2 * RETRY_BACKOFF.first


@pytest.mark.parametrize(
    ("refusal", "error_class"),
    [
        (
            ("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403),
            AccessDeniedError,
        ),
        (("InvalidIdentityToken", "Incorrect token audience", 400), InvalidIdentityTokenError),
        (("ValidationError", "DurationSeconds exceeds the MaxSessionDuration", 400), STSError),
    ],
)
def test_refusals_are_not_retried(
    stubbed: StubbedClients,
    fake_time: FakeTime,
    refusal: tuple[str, str, int],
    error_class: type[STSError],
) -> None:
    stubbed.script = [[(WEB_IDENTITY, refusal, None), (WEB_IDENTITY, reply(), None)]]
    with pytest.raises(error_class):
        exchange_for().assume_role(id_token())
    assert fake_time.waits == []
    assert len(stubbed.stubbers[0]._queue) == 1  # the success was never asked for


def test_a_single_attempt_raises_a_transient_failure_at_once(
    stubbed: StubbedClients, fake_time: FakeTime
) -> None:
    stubbed.script = [[(WEB_IDENTITY, ("Throttling", "Rate exceeded", 400), None)]]
    with pytest.raises(STSError):
        exchange_for().assume_role(id_token(), retry=False)
    assert fake_time.waits == []
    stubbed.all_used()


def test_retries_stop_at_the_budget_and_say_how_many_attempts(
    stubbed: StubbedClients, fake_time: FakeTime
) -> None:
    stubbed.script = [[(WEB_IDENTITY, ("Throttling", "Rate exceeded", 400), None)] * 40]
    with pytest.raises(STSError) as raised:
        exchange_for(GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="10").assume_role(id_token())
    assert sum(fake_time.waits) <= 10
    attempts = len(fake_time.waits) + 1
    assert 3 < attempts < 40
    assert f"{attempts} attempts" in str(raised.value)


def test_retries_never_outlast_the_token(stubbed: StubbedClients, fake_time: FakeTime) -> None:
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    token = id_token(exp=now + 2)  # two seconds left, budget 60 s by default
    stubbed.script = [[(WEB_IDENTITY, ("Throttling", "Rate exceeded", 400), None)] * 40]
    with pytest.raises(STSError):
        exchange_for().assume_role(token)
    assert sum(fake_time.waits) <= 2


# -- reply validation ------------------------------------------------------------------------


# botocore's Stubber only accepts replies that fit STS's model; replies outside it (no
# SessionToken, garbage, cut short) are tested on the parser's output in test_exchange.py
# and over the wire by the fake STS there.


def test_a_reply_without_credentials_fails_clearly_without_retrying(
    stubbed: StubbedClients, fake_time: FakeTime
) -> None:
    stubbed.script = [[(WEB_IDENTITY, {}, None), (WEB_IDENTITY, reply(), None)]]
    with pytest.raises(STSError, match="without <Credentials>"):
        exchange_for().assume_role(id_token())
    assert fake_time.waits == []


def test_a_reply_that_already_expired_names_the_clock(
    stubbed: StubbedClients, fake_time: FakeTime
) -> None:
    answer = reply()
    answer["Credentials"]["Expiration"] = datetime.datetime(
        2020, 1, 1, tzinfo=datetime.timezone.utc
    )
    stubbed.script = [[(WEB_IDENTITY, answer, None)]]
    with pytest.raises(STSError, match="already expired") as raised:
        exchange_for().assume_role(id_token())
    assert "clock" in str(raised.value)


def test_secrets_of_a_rejected_reply_stay_out_of_the_error(
    stubbed: StubbedClients, fake_time: FakeTime
) -> None:
    answer = reply()
    answer["Credentials"]["AccessKeyId"] = "ASIA-EXAMPLE\nKEY-0001"
    stubbed.script = [[(WEB_IDENTITY, answer, None)]]
    with pytest.raises(STSError, match="AccessKeyId") as raised:
        exchange_for().assume_role(id_token())
    assert "secret/1" not in str(raised.value)
    assert "session-token-1" not in str(raised.value)


# -- chained roles ---------------------------------------------------------------------------


def test_a_chained_role_is_assumed_with_the_first_roles_credentials(
    stubbed: StubbedClients, fake_time: FakeTime
) -> None:
    token = id_token()
    stubbed.script = [
        [(WEB_IDENTITY, reply(1), None)],
        [
            (
                "assume_role",
                reply(2, CHAINED),
                {"RoleArn": CHAINED, "RoleSessionName": "release", "DurationSeconds": 3600},
            )
        ],
    ]
    issued = exchange_for(
        GITLAB_BOTOCORE_CHAIN_ROLE_ARNS=CHAINED,
        AWS_ROLE_SESSION_NAME="release",
        GITLAB_BOTOCORE_DURATION_SECONDS="7200",  # AWS caps chained sessions at an hour
    ).assume_role(token)
    stubbed.all_used()
    assert issued.access_key == "ASIAEXAMPLE000000002"
    assert issued.account_id == "210987654321"
    signer = stubbed.clients[1]._request_signer
    frozen = signer._credentials.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        "ASIAEXAMPLE000000001",
        "secret/1",
        "session-token-1",
    )


def test_a_refused_chained_role_names_both_roles(
    stubbed: StubbedClients, fake_time: FakeTime
) -> None:
    stubbed.script = [
        [(WEB_IDENTITY, reply(1), None)],
        [("assume_role", ("AccessDenied", "not authorized to perform sts:AssumeRole", 403), None)],
    ]
    with pytest.raises(AccessDeniedError) as raised:
        exchange_for(GITLAB_BOTOCORE_CHAIN_ROLE_ARNS=CHAINED).assume_role(id_token())
    assert CHAINED in str(raised.value)
    assert "deploy" in str(raised.value)
