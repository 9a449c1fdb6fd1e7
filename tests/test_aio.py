"""aiobotocore sessions: ``import gitlab_botocore`` works for them too, over real HTTP.

Skipped where aiobotocore is not installed (it pins a narrow botocore range, so it lives
in its own environment: ``nox -s aiobotocore``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import NoCredentialsError

import gitlab_botocore
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.faults import Fault

from .conftest import ACCOUNT_ID, Job

aiobotocore_session = pytest.importorskip("aiobotocore.session")
aiobotocore_config = pytest.importorskip("aiobotocore.config")

DEPLOY_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/GitLabRunner-42-1001-5001"


async def caller_arn(session: Any, config: Any = None) -> str:
    async with session.create_client("sts", config=config) as sts:
        identity = await sts.get_caller_identity()
    arn: str = identity["Arn"]
    return arn


async def frozen_access_key(session: Any) -> str:
    credentials = await session.get_credentials()
    frozen = await credentials.get_frozen_credentials()
    key: str = frozen.access_key
    return key


def test_a_call_is_made_as_the_assumed_role(job: Job, aws: FakeAWS) -> None:
    async def main() -> tuple[str, str]:
        session = aiobotocore_session.get_session()
        credentials = await session.get_credentials()
        return credentials.method, await caller_arn(session)

    method, arn = asyncio.run(main())
    assert method == "gitlab-oidc"
    assert arn == DEPLOY_ARN
    assert aws.sts.calls[-1].session_name == "GitLabRunner-42-1001-5001"


def test_many_concurrent_tasks_on_one_session_make_one_sts_call(job: Job, aws: FakeAWS) -> None:
    aws.sts.set_latency(0.2)  # every task asks while the first exchange is in flight

    async def main() -> list[str]:
        session = aiobotocore_session.get_session()
        return await asyncio.gather(*(caller_arn(session) for _ in range(16)))

    assert asyncio.run(main()) == [DEPLOY_ARN] * 16
    assert aws.sts.assume_role_calls == 1


def test_many_sessions_in_concurrent_tasks_make_one_sts_call(job: Job, aws: FakeAWS) -> None:
    aws.sts.set_latency(0.2)

    async def main() -> list[str]:
        return await asyncio.gather(
            *(caller_arn(aiobotocore_session.get_session()) for _ in range(6))
        )

    assert asyncio.run(main()) == [DEPLOY_ARN] * 6
    assert aws.sts.assume_role_calls == 1


def test_the_event_loop_keeps_running_while_sts_answers(job: Job, aws: FakeAWS) -> None:
    aws.sts.set_latency(0.3)

    async def main() -> int:
        heartbeats = 0
        fetched = False

        async def heartbeat() -> None:
            nonlocal heartbeats
            while not fetched:
                heartbeats += 1
                await asyncio.sleep(0.01)

        beating = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)
        await frozen_access_key(aiobotocore_session.get_session())
        during_fetch = heartbeats
        fetched = True
        await beating
        return during_fetch

    assert asyncio.run(main()) > 1  # a blocked loop would have beaten once, before the call


@pytest.mark.parametrize("sync_first", [True, False], ids=["sync-first", "async-first"])
def test_sync_and_async_sessions_share_one_sts_call(
    job: Job, aws: FakeAWS, sync_first: bool
) -> None:
    def sync_key() -> str:
        key: str = boto3.Session().get_credentials().get_frozen_credentials().access_key
        return key

    def async_key() -> str:
        return asyncio.run(frozen_access_key(aiobotocore_session.get_session()))

    if sync_first:
        first, second = sync_key(), async_key()
    else:
        first, second = async_key(), sync_key()
    assert first == second
    assert aws.sts.assume_role_calls == 1


def test_two_event_loops_in_sequence_both_work(job: Job, aws: FakeAWS) -> None:
    reused = aiobotocore_session.get_session()

    async def main() -> list[str]:
        fresh = aiobotocore_session.get_session()
        return await asyncio.gather(*(caller_arn(s) for s in (fresh, reused, fresh, reused)))

    assert asyncio.run(main()) == [DEPLOY_ARN] * 4
    assert asyncio.run(main()) == [DEPLOY_ARN] * 4
    assert aws.sts.assume_role_calls == 1


def test_refresh_near_expiry_goes_through_the_shared_credentials(job: Job, aws: FakeAWS) -> None:
    time_machine = pytest.importorskip("time_machine")
    start = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
    with time_machine.travel(start, tick=False) as clock:
        job.token(lifetime_seconds=6 * 3600)
        session = aiobotocore_session.get_session()
        first = asyncio.run(frozen_access_key(session))
        clock.shift(3100)  # inside the last 10 minutes: callers wait for new credentials

        async def after_expiry() -> tuple[list[str], str]:
            keys = await asyncio.gather(*(frozen_access_key(session) for _ in range(8)))
            return keys, await caller_arn(session)

        keys, arn = asyncio.run(after_expiry())
        # A plain boto3 session sees the same refreshed credentials: no further call.
        sync_key = boto3.Session().get_credentials().get_frozen_credentials().access_key

    assert len(set(keys)) == 1
    assert keys[0] != first
    assert sync_key == keys[0]
    assert arn == DEPLOY_ARN
    assert aws.sts.assume_role_calls == 2


def test_register_applies_overrides_to_one_aio_session(job: Job, aws: FakeAWS) -> None:
    job.set(AWS_ROLE_ARN=None)
    session = aiobotocore_session.get_session()
    gitlab_botocore.register(session, role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/reader")

    arn = asyncio.run(caller_arn(session))
    assert arn.startswith(f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/reader/")
    with pytest.raises(NoCredentialsError):  # other sessions have no role configured
        asyncio.run(caller_arn(aiobotocore_session.get_session()))


def test_not_configured_the_chain_moves_on(job: Job, aws: FakeAWS, tmp_path: Path) -> None:
    credentials_file = tmp_path / "static-credentials"
    credentials_file.write_text(
        "[default]\naws_access_key_id = AKIAFROMFILE\naws_secret_access_key = secret\n"
    )
    job.set(AWS_SHARED_CREDENTIALS_FILE=credentials_file)

    async def method() -> str:
        credentials = await aiobotocore_session.get_session().get_credentials()
        found: str = credentials.method
        return found

    job.set(AWS_ROLE_ARN=None)
    assert asyncio.run(method()) == "shared-credentials-file"
    job.set(AWS_ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/deploy", GITLAB_OIDC_TOKEN=None)
    assert asyncio.run(method()) == "shared-credentials-file"
    assert aws.sts.assume_role_calls == 0


def test_a_broken_configuration_raises(job: Job, aws: FakeAWS) -> None:
    job.set(AWS_ROLE_ARN="deploy")

    async def main() -> None:
        await aiobotocore_session.get_session().get_credentials()

    with pytest.raises(gitlab_botocore.ConfigurationError, match="AWS_ROLE_ARN"):
        asyncio.run(main())
    assert aws.sts.assume_role_calls == 0


def test_an_sts_refusal_raises_on_first_use(job: Job, aws: FakeAWS) -> None:
    job.token(project_path="othergroup/other")  # not trusted by the role

    with pytest.raises(gitlab_botocore.STSError) as caught:
        asyncio.run(caller_arn(aiobotocore_session.get_session()))
    assert isinstance(caught.value, gitlab_botocore.GitLabOIDCError)
    assert aws.sts.assume_role_calls == 1


def test_the_httpx_backend_on_trio(job: Job, aws: FakeAWS) -> None:
    trio = pytest.importorskip("trio")
    httpxsession = pytest.importorskip("aiobotocore.httpxsession")
    config = aiobotocore_config.AioConfig(http_session_cls=httpxsession.HttpxSession)

    async def main() -> list[str]:
        session = aiobotocore_session.get_session()
        session.set_default_client_config(config)
        arns: list[str] = []

        async def call() -> None:
            arns.append(await caller_arn(session, config))

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(call)
        return arns

    aws.sts.set_latency(0.2)
    assert trio.run(main) == [DEPLOY_ARN] * 6
    assert aws.sts.assume_role_calls == 1


def test_a_refused_exchange_is_reported_once(
    job: Job, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    aws.sts.inject(Fault.access_denied())

    async def main() -> str:
        return await caller_arn(aiobotocore_session.get_session())

    with caplog.at_level(logging.DEBUG), pytest.raises(gitlab_botocore.AccessDeniedError):
        asyncio.run(main())
    # aiobotocore used to log the same failure first, with its full traceback.
    failures = [
        record
        for record in caplog.records
        if record.levelno >= logging.WARNING and record.exc_info is not None
    ]
    assert failures == []
