"""No ID token, secret key or session token in any log record, warning, error or repr."""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.faults import Fault

from .conftest import Job


def test_full_flow_at_debug_logs_no_secret(job: Job, caplog: pytest.LogCaptureFixture) -> None:
    raw_token = job.variables["GITLAB_OIDC_TOKEN"]
    boto3.set_stream_logger("", logging.DEBUG)  # what users turn on when debugging
    try:
        with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
            session = boto3.Session()
            credentials = session.get_credentials()
            session.client("sts").get_caller_identity()
            session.client("s3").list_buckets()
            frozen = credentials.get_frozen_credentials()
    finally:
        logging.getLogger().handlers.clear()
    secrets = {
        "token": raw_token,
        "secret key": frozen.secret_key,
        "session token": frozen.token,
    }
    captured = [record.getMessage() for record in caplog.records]
    captured += [str(warning.message) for warning in caught]
    captured += [repr(credentials), str(credentials)]
    # The STS call really was logged at DEBUG, so the scan below is meaningful.
    assert any("AssumeRoleWithWebIdentity" in line for line in captured)
    assert any("<redacted>" in line for line in captured)
    for what, secret in secrets.items():
        leaks = [line[:1500] for line in captured if secret in line]
        assert not leaks, f"{what} leaked into: {leaks}"


def test_errors_do_not_contain_the_token(job: Job) -> None:
    raw = job.variables["GITLAB_OIDC_TOKEN"]
    job.set(GITLAB_OIDC_TOKEN=raw[:-10])  # damaged signature: still a JWT
    job.set(AWS_ROLE_ARN="arn:aws:iam::123456789012:role/deploy")
    broken_payload = raw.split(".")[0] + ".!!!." + raw.split(".")[2]
    job.set(GITLAB_OIDC_TOKEN=broken_payload)
    with pytest.raises(gitlab_botocore.TokenError) as caught:
        boto3.Session().get_credentials()
    assert raw.split(".")[2] not in str(caught.value)
    assert raw.split(".")[0] not in str(caught.value)


def test_failure_paths_at_debug_log_no_secret(
    job: Job, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    raw_token = job.variables["GITLAB_OIDC_TOKEN"]
    aws.sts.inject(Fault.throttling(), Fault.idp_communication_error())
    with caplog.at_level(logging.DEBUG):
        credentials = boto3.Session().get_credentials()
        frozen = credentials.get_frozen_credentials()  # after two retried failures
        job.token(project_path="other/project")
        with pytest.raises(gitlab_botocore.AccessDeniedError) as refused:
            boto3.Session().get_credentials().get_frozen_credentials()
    captured = [record.getMessage() for record in caplog.records] + [str(refused.value)]
    assert any("retrying in" in line for line in captured)
    for secret in (raw_token, job.variables["GITLAB_OIDC_TOKEN"], frozen.secret_key, frozen.token):
        assert not [line for line in captured if secret in line]


# -- tracebacks (issue 10, item 6) ----------------------------------------------------------

FAILING_TESTS = """
import datetime
import json
import os

import boto3
import pytest

from gitlab_botocore.testing.faults import Fault
from gitlab_botocore.testing.sts_wire import credentials_body

RECORD = os.environ["SECRETS_RECORD"]
DOCTORED_SECRET = os.environ["DOCTORED_SECRET"]
DOCTORED_TOKEN = os.environ["DOCTORED_TOKEN"]


def doctored(expires_in):
    expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=expires_in
    )
    return credentials_body(
        "ASIAEXAMPLEEXAMPLE12",
        DOCTORED_SECRET,
        DOCTORED_TOKEN,
        expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def record_secrets():
    found = [os.environ.get("GITLAB_OIDC_TOKEN", "")]
    try:
        frozen = boto3.Session().get_credentials().get_frozen_credentials()
        found += [str(frozen.secret_key), str(frozen.token)]
    except Exception:
        pass
    with open(RECORD, "a") as record:
        record.write(json.dumps(found) + "\\n")


@pytest.fixture
def job(gitlab_ci_env):
    yield gitlab_ci_env
    record_secrets()


def test_refused(job):
    job.token(project_path="other/project")
    boto3.client("s3").list_buckets()


def test_unreachable(job):
    job.set(AWS_ENDPOINT_URL_STS=os.environ["CLOSED_ENDPOINT"])
    boto3.client("s3").list_buckets()


def test_expired_reply(job, fake_gitlab_aws):
    fake_gitlab_aws.inject(Fault.reply(doctored(-60)))
    boto3.client("s3").list_buckets()


def test_reply_cut_after_the_secrets(job, fake_gitlab_aws):
    job.set(GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="0")
    fake_gitlab_aws.inject(Fault.reply(doctored(3600)[:-150]))
    boto3.client("s3").list_buckets()


def test_sts_echoes_the_token(job, fake_gitlab_aws):
    fake_gitlab_aws.inject(
        Fault("ValidationError", "Value at webIdentityToken: " + os.environ["GITLAB_OIDC_TOKEN"])
    )
    boto3.client("s3").list_buckets()


def test_holding_credentials(job):
    credentials = boto3.Session().get_credentials()
    frozen = credentials.get_frozen_credentials()
    issued = credentials.get_issued_credentials()
    generation = credentials._current
    assert (frozen, issued, generation) is None
"""


def test_failing_tests_show_no_secret_with_showlocals(tmp_path: Path) -> None:
    """``pytest --showlocals -vvv --tb=long`` on calls that fail in every way we know."""
    (tmp_path / "test_failing.py").write_text(FAILING_TESTS)
    record = tmp_path / "secrets.jsonl"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    doctored = {
        "DOCTORED_SECRET": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYDOCTORED1",
        "DOCTORED_TOKEN": "FwoGZXIvYXdzEDOCTOREDSESSIONTOKEN0123456789",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(tmp_path / "test_failing.py"),
            "--showlocals",
            "-vvv",
            "--tb=long",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore::DeprecationWarning",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
        env={**os.environ, **doctored, "SECRETS_RECORD": str(record), "CLOSED_ENDPOINT": closed},
    )
    output = result.stdout + result.stderr
    assert "6 failed" in output, output[-3000:]
    for expected in ("AccessDeniedError", "STSUnavailableError", "STSRequestError"):
        assert expected in output
    assert "<redacted>" in output  # locals holding secrets were printed, redacted
    secrets = {value for line in record.read_text().splitlines() for value in json.loads(line)}
    secrets |= {token.split(".")[2] for token in secrets if token.count(".") == 2}
    secrets |= set(doctored.values())
    assert len(secrets) >= 10  # six ID tokens (and their signatures), a key pair, doctored ones
    leaked = {secret[:12] for secret in secrets if secret and secret in output}
    assert not leaked, f"secrets starting {sorted(leaked)} appear in the pytest output"


# -- the shapes a secret can take in an XML body ---------------------------------------------

SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLESECRET"


@pytest.mark.parametrize(
    "body",
    [
        f"<SecretAccessKey>{SECRET}</SecretAccessKey>",
        f"<SecretAccessKey><![CDATA[{SECRET}]]></SecretAccessKey>",
        f"<SecretAccessKey><![CDATA[{SECRET[:10]}]]>{SECRET[10:]}</SecretAccessKey>",
        f'<SecretAccessKey xml:space="preserve">{SECRET}</SecretAccessKey>',
        f'<sts:SecretAccessKey xmlns:sts="urn:x">{SECRET}</sts:SecretAccessKey>',
        f"<SecretAccessKey><b>{SECRET}</b></SecretAccessKey>",
        f"<SecretAccessKey>\n  {SECRET}\n</SecretAccessKey >",
        f"<SecretAccessKey><![CDATA[{SECRET}",  # cut short
        f"<SessionToken><![CDATA[{SECRET}]]></SessionToken>",
        f"<WebIdentityToken><![CDATA[{SECRET}]]></WebIdentityToken>",
    ],
    ids=[
        "plain",
        "cdata",
        "cdata-then-text",
        "attribute",
        "prefixed",
        "nested",
        "whitespace",
        "truncated",
        "session-token",
        "web-identity-token",
    ],
)
def test_secret_fields_are_blanked_whatever_their_xml_shape(body: str) -> None:
    """botocore's parser reads the element's text (CDATA included) as the secret, and logs
    the body at DEBUG before the library has seen that secret: the field's rule alone must
    blank it."""
    from gitlab_botocore.redaction import redact

    key = "<AccessKeyId>ASIAEXAMPLE</AccessKeyId>"
    text = f"Response body:\n<Credentials>{key}{body}</Credentials>"
    redacted = redact(text)
    assert SECRET not in redacted
    for part in (SECRET[:10], SECRET[10:]):
        assert part not in redacted
    assert key in redacted  # the rest is kept


def test_an_empty_secret_element_leaves_the_rest_of_the_body() -> None:
    from gitlab_botocore.redaction import redact

    body = "<SessionToken/><Expiration>2026-01-01</Expiration><RequestId>abc-1</RequestId>"
    assert redact(body) == body


def test_a_cdata_secret_in_a_reply_is_not_logged(
    job: Job, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    from gitlab_botocore.testing.sts_wire import credentials_body

    expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    body = credentials_body(
        "ASIAEXAMPLEEXAMPLE12",
        "PLACEHOLDER",
        "FwoGZXIvYXdzEXAMPLE123",
        expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    body = body.replace(b"PLACEHOLDER", f"<![CDATA[{SECRET}]]>".encode())
    aws.sts.inject(Fault.reply(body))
    with caplog.at_level(logging.DEBUG):
        credentials = boto3.Session().get_credentials().get_frozen_credentials()
    assert credentials.secret_key == SECRET  # botocore read it through the CDATA section
    assert "<SecretAccessKey><redacted></SecretAccessKey>" in caplog.text  # body logged
    assert SECRET not in caplog.text
