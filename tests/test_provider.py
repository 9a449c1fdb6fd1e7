"""The provider: lazy, and one set of credentials per role and token for the whole process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.session

from gitlab_botocore.testing.sts import FakeAWS

from .conftest import ACCOUNT_ID, Job


def test_no_sts_call_until_credentials_are_used(job: Job, aws: FakeAWS) -> None:
    session = boto3.Session()
    session.client("s3")
    credentials = session.get_credentials()
    assert aws.sts.assume_role_calls == 0
    assert credentials.get_frozen_credentials().access_key.startswith("ASIA")
    assert aws.sts.assume_role_calls == 1


def test_many_sessions_across_threads_make_one_sts_call(job: Job, aws: FakeAWS) -> None:
    # Creating clients is left to bench/: botocore spends ~100 ms loading models for each.
    def use_a_new_session(_: int) -> str:
        key: str = boto3.Session().get_credentials().get_frozen_credentials().access_key
        return key

    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(pool.map(use_a_new_session, range(200)))
    assert aws.sts.assume_role_calls == 1
    assert len(keys) == 1


def test_sessions_calling_aws_from_threads_share_one_sts_call(job: Job, aws: FakeAWS) -> None:
    def call_aws(_: int) -> str:
        arn: str = boto3.Session().client("sts").get_caller_identity()["Arn"]
        return arn

    with ThreadPoolExecutor(max_workers=8) as pool:
        arns = set(pool.map(call_aws, range(16)))
    assert arns == {f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/GitLabRunner-42-1001-5001"}
    assert aws.sts.assume_role_calls == 1


def test_shared_credentials_sign_real_requests(job: Job, aws: FakeAWS) -> None:
    first, second = boto3.Session(), botocore.session.get_session()
    first.client("s3").create_bucket(Bucket="shared-credentials")
    names = [b["Name"] for b in second.create_client("s3").list_buckets()["Buckets"]]
    assert "shared-credentials" in names
    assert aws.sts.assume_role_calls == 1


def test_different_settings_get_different_credentials(job: Job, aws: FakeAWS) -> None:
    default = boto3.Session().get_credentials()
    job.set(AWS_ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/reader")
    reader = boto3.Session().get_credentials()
    job.set(GITLAB_BOTOCORE_DURATION_SECONDS="900")
    short = boto3.Session().get_credentials()
    assert default is not reader
    assert reader is not short
    keys = {c.get_frozen_credentials().access_key for c in (default, reader, short)}
    assert len(keys) == 3
    assert aws.sts.assume_role_calls == 3
    assert [call.role_arn.rsplit("/", 1)[1] for call in aws.sts.calls] == [
        "deploy",
        "reader",
        "reader",
    ]
    assert [call.duration_seconds for call in aws.sts.calls] == [3600, 3600, 900]


def test_a_new_token_is_a_new_identity(job: Job, aws: FakeAWS) -> None:
    before = boto3.Session().get_credentials()
    job.token(job_id=6000)
    after = boto3.Session().get_credentials()
    assert before is not after
    assert after.get_frozen_credentials().access_key != before.get_frozen_credentials().access_key


def test_credentials_carry_the_account_id(job: Job) -> None:
    credentials = boto3.Session().get_credentials()
    assert credentials.account_id == ACCOUNT_ID
    frozen = credentials.get_frozen_credentials()
    if "account_id" in frozen._fields:  # botocore >= 1.37
        assert frozen.account_id == ACCOUNT_ID


def test_sts_sees_the_job_and_the_token(job: Job, aws: FakeAWS) -> None:
    boto3.Session().client("sts").get_caller_identity()
    (call,) = aws.sts.calls
    assert call.outcome == "ok"
    assert call.session_name == "GitLabRunner-42-1001-5001"
    assert call.claims["sub"] == "project_path:mygroup/myproject:ref_type:branch:ref:main"


def test_session_policies_reach_sts(job: Job, aws: FakeAWS) -> None:
    job.set(
        GITLAB_BOTOCORE_POLICY='{"Version": "2012-10-17", "Statement": []}',
        GITLAB_BOTOCORE_POLICY_ARNS="arn:aws:iam::aws:policy/ReadOnlyAccess",
    )
    boto3.Session().get_credentials().get_frozen_credentials()
    (call,) = aws.sts.calls
    assert call.policy == '{"Version":"2012-10-17","Statement":[]}'
    assert call.policy_arns == ("arn:aws:iam::aws:policy/ReadOnlyAccess",)
