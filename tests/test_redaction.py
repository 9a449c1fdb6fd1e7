"""No ID token, secret key or session token in any log record, warning, error or repr."""

from __future__ import annotations

import logging
import warnings

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore.testing.sts import FakeAWS, Fault

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
