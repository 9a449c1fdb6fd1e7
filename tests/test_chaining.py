"""Role chaining: a second role assumed with the first role's credentials."""

from __future__ import annotations

import time

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore.testing.aws import FakeAWS

from .conftest import ACCOUNT_ID, Job


def test_chain_role_arns_setting_assumes_roles_in_order(
    job: Job, aws: FakeAWS, chained_role_arn: str
) -> None:
    job.set(
        GITLAB_BOTOCORE_CHAIN_ROLE_ARNS=chained_role_arn, GITLAB_BOTOCORE_DURATION_SECONDS="7200"
    )
    session = boto3.Session()
    arn = session.client("sts").get_caller_identity()["Arn"]
    assert arn == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/chained-target/GitLabRunner-42-1001-5001"
    credentials = session.get_credentials()
    assert credentials.method == "gitlab-oidc"
    # The web identity call asked for 2 h; the chained session is capped at 1 h.
    assert [call.duration_seconds for call in aws.sts.calls] == [7200]
    remaining = credentials.expiration.timestamp() - time.time()
    assert 3500 < remaining <= 3600


def test_invalid_chain_role_is_a_configuration_error(job: Job, chained_role_arn: str) -> None:
    job.set(GITLAB_BOTOCORE_CHAIN_ROLE_ARNS=f"{chained_role_arn},not-a-role")
    with pytest.raises(gitlab_botocore.ConfigurationError, match="GITLAB_BOTOCORE_CHAIN_ROLE_ARNS"):
        boto3.Session().get_credentials()
