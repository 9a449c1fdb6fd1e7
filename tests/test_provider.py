"""The provider: one STS call per role and token for the whole process, started early."""

from __future__ import annotations

import datetime
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable

import boto3
import botocore.session
import pytest
import time_machine

import gitlab_botocore
from gitlab_botocore import METHOD, AccessDeniedError, STSError, sts_client
from gitlab_botocore.exceptions import REENTRANT_CALL_MESSAGE
from gitlab_botocore.once import Once
from gitlab_botocore.provider import credentials_registry
from gitlab_botocore.refresh import THREAD_NAME
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.faults import Fault

from .conftest import ACCOUNT_ID, Job
from .waiting import in_forked_child, refresh_in_flight, wait_for


def access_key(session: boto3.Session) -> str:
    """The access key id of the session's credentials (fetched first if need be)."""
    key: str = session.get_credentials().get_frozen_credentials().access_key
    return key


class OwnedSession(botocore.session.Session):  # type: ignore[misc]
    """A botocore session that notes every other thread that builds clients or
    components with it: botocore sessions are not thread-safe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.owner = threading.get_ident()
        self.strangers: list[str] = []
        self.clients: list[str] = []
        super().__init__(*args, **kwargs)

    def _touched(self, what: str) -> None:
        if threading.get_ident() != self.owner:
            self.strangers.append(f"{what} from {threading.current_thread().name}")

    def create_client(self, *args: Any, **kwargs: Any) -> Any:
        self._touched("create_client")
        self.clients.append(args[0] if args else kwargs["service_name"])
        return super().create_client(*args, **kwargs)

    def get_component(self, name: str) -> Any:
        self._touched(f"get_component({name})")
        return super().get_component(name)

    def _get_internal_component(self, name: str) -> Any:
        self._touched(f"_get_internal_component({name})")
        return super()._get_internal_component(name)

    def get_config_variable(self, *args: Any, **kwargs: Any) -> Any:
        self._touched("get_config_variable")
        return super().get_config_variable(*args, **kwargs)


def test_the_sts_call_starts_when_a_session_resolves_credentials(job: Job, aws: FakeAWS) -> None:
    aws.sts.set_latency(2)  # answers are recorded when sent: none before 2 s
    session = boto3.Session()
    client = session.client("sts")  # resolves the credentials
    # The request is out, from a background thread, while the job goes on (issue 13).
    assert refresh_in_flight()
    assert aws.sts.assume_role_calls == 0
    assert ":assumed-role/deploy/" in client.get_caller_identity()["Arn"]  # waited for it
    assert aws.sts.assume_role_calls == 1
    boto3.Session().client("sts").get_caller_identity()
    assert aws.sts.assume_role_calls == 1  # the process's one call


def test_a_refused_early_request_is_raised_on_first_use(job: Job, aws: FakeAWS) -> None:
    """Making the client does not fail; the first use gets the answer of the request made
    then (no second call), with the message a request made on first use gives."""
    job.set(AWS_ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/missing")
    client = boto3.Session().client("sts")
    wait_for(lambda: aws.sts.assume_role_calls == 1)
    with pytest.raises(AccessDeniedError) as early:
        client.get_caller_identity()
    assert aws.sts.assume_role_calls == 1
    with pytest.raises(AccessDeniedError) as on_use:  # a later use asks STS again
        client.get_caller_identity()
    assert aws.sts.assume_role_calls == 2
    assert str(early.value) == str(on_use.value)
    assert "role/missing" in str(early.value)


def test_a_first_use_long_after_an_outage_at_start_up_asks_sts_again(
    job: Job, aws: FakeAWS
) -> None:
    """The early request met an outage that is over when the job, after a long set-up,
    first calls AWS: the call succeeds, as it would have without the early request."""
    job.set(GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="1")
    aws.sts.inject(*[Fault.service_unavailable()] * 50)
    with time_machine.travel(datetime.datetime.now(tz=datetime.timezone.utc)) as traveller:
        client = boto3.Session().client("sts")
        wait_for(lambda: not refresh_in_flight())  # the early fetch gave up
        assert aws.sts.calls
        aws.sts.reset()  # STS is back
        traveller.shift(60)  # the job's set-up takes a minute
        assert ":assumed-role/deploy/" in client.get_caller_identity()["Arn"]
    assert aws.sts.assume_role_calls == 1


def test_a_first_use_right_after_an_outage_at_start_up_gets_its_error(
    job: Job, aws: FakeAWS
) -> None:
    """Used within the back-off that follows a failure, the credentials raise the early
    request's error rather than calling STS again at once."""
    job.set(GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="0")
    aws.sts.inject(Fault.service_unavailable())
    client = boto3.Session().client("sts")
    wait_for(lambda: not refresh_in_flight())
    with pytest.raises(STSError, match="ServiceUnavailable"):
        client.get_caller_identity()
    assert aws.sts.assume_role_calls == 1
    assert ":assumed-role/deploy/" in client.get_caller_identity()["Arn"]  # then asks again
    assert aws.sts.assume_role_calls == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_with_the_cache_a_child_forked_after_the_first_client_is_not_held(
    job: Job, aws: FakeAWS, tmp_path: Path
) -> None:
    """With GITLAB_BOTOCORE_CACHE the first fetch waits for first use: an early request
    would hold the cache's file lock, which a child forked meanwhile would inherit."""
    job.set(GITLAB_BOTOCORE_CACHE=str(tmp_path / "cache"))
    aws.sts.set_latency(1)
    session = boto3.Session()
    session.client("sts")
    assert not refresh_in_flight()
    # Say, multiprocessing's fork start method right after setting up.
    child_key = in_forked_child(
        partial(access_key, session), hung="the child hung on the cache's lock"
    )
    assert child_key.startswith("ASIA")
    # The parent now reads what the child stored in the cache.
    assert access_key(session) == child_key
    assert aws.sts.assume_role_calls == 1


@pytest.mark.parametrize("missing", ["AWS_ROLE_ARN", "GITLAB_OIDC_TOKEN"])
def test_no_thread_and_no_call_when_the_provider_does_not_apply(
    job: Job, aws: FakeAWS, missing: str
) -> None:
    job.set(**{missing: None})
    threads_before = set(threading.enumerate())
    session = boto3.Session()
    session.client("sts")
    assert session.get_credentials() is None or session.get_credentials().method != METHOD
    assert set(threading.enumerate()) - threads_before == set()
    assert aws.sts.assume_role_calls == 0


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
    # Repeated: a race between threads building clients shows up only now and then.
    for _ in range(3):
        credentials_registry.clear()
        aws.sts.reset()
        sessions: list[OwnedSession] = []
        with ThreadPoolExecutor(max_workers=8) as pool:
            arns = set(pool.map(partial(_call_aws_in_own_session, sessions), range(16)))
        assert arns == {f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/GitLabRunner-42-1001-5001"}
        assert aws.sts.assume_role_calls == 1
        assert [s.strangers for s in sessions if s.strangers] == []


def _call_aws_in_own_session(sessions: list[OwnedSession], _: int) -> str:
    session = OwnedSession()
    sessions.append(session)
    arn: str = boto3.Session(botocore_session=session).client("sts").get_caller_identity()["Arn"]
    return arn


def test_no_thread_touches_another_threads_session(
    job: Job, aws: FakeAWS, chained_role_arn: str
) -> None:
    # Each thread owns a session; the shared credentials fetch and refresh from whichever
    # thread gets there first, chained roles included (a signed AssumeRole each time).
    job.set(GITLAB_BOTOCORE_CHAIN_ROLE_ARNS=chained_role_arn)
    start = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
    with time_machine.travel(start, tick=False) as clock:
        job.token(lifetime_seconds=6 * 3600)
        for _ in range(15):
            credentials_registry.clear()
            sessions: list[OwnedSession] = []
            keys = _fetch_and_refresh_from_threads(sessions, clock)
            assert len(keys) == 16
            assert len(set(keys)) == 2  # fetched, then refreshed
            assert [s.strangers for s in sessions if s.strangers] == []


def _fetch_and_refresh_from_threads(
    sessions: list[OwnedSession], clock: time_machine.Traveller
) -> list[str]:
    """Eight threads, a session each: load, then use the shared credentials, then use
    them again inside the last 10 minutes. Returns the access keys they got."""
    keys: list[str] = []
    barrier = threading.Barrier(9, timeout=60)

    def worker() -> None:
        session = OwnedSession()
        sessions.append(session)
        credentials = boto3.Session(botocore_session=session).get_credentials()
        barrier.wait()  # every session has loaded its provider
        keys.append(credentials.get_frozen_credentials().access_key)
        barrier.wait()  # the clock moves
        barrier.wait()
        keys.append(credentials.get_frozen_credentials().access_key)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    barrier.wait()
    barrier.wait()
    clock.shift(3100)
    barrier.wait()
    for thread in threads:
        thread.join()
    clock.shift(-3100)
    return keys


JOB_THREAD_NAME = "job"


class ShipsRecordsToAWS(logging.Handler):
    """A synchronous log handler that calls AWS with a session of its own for each record,
    as a hand-written CloudWatch Logs or SNS handler does; it keeps what each call gave.

    It handles the records of the job's thread and of gitlab-botocore's refresh thread,
    told by their names: in a job, STS is remote, but here the servers' threads log in this
    process too (and a thread's ident is reused once it ends).
    """

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.shipped: list[str] = []
        self.failed: list[Exception] = []
        self.loggers = ""  # a prefix of the names of the loggers it ships
        self._busy = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        in_job = record.threadName in (JOB_THREAD_NAME, THREAD_NAME)
        return in_job and record.name.startswith(self.loggers)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "on", False):
            return  # records of its own call
        self._busy.on = True
        try:
            boto3.Session().client("sts").get_caller_identity()
            self.shipped.append(record.getMessage())
        except Exception as error:  # a handler must not raise
            self.failed.append(error)
        finally:
            self._busy.on = False


@pytest.fixture
def ships_records_to_aws() -> Any:
    """Attaches a :class:`ShipsRecordsToAWS` at INFO to the root logger."""
    handler = ShipsRecordsToAWS(logging.INFO)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def _in_a_job_thread(work: Callable[[], str]) -> str:
    """``work``, in a thread whose records the handler ships, so that a hang fails the test."""
    answers: list[str] = []
    thread = threading.Thread(
        target=lambda: answers.append(work()), name=JOB_THREAD_NAME, daemon=True
    )
    thread.start()
    thread.join(20)
    assert answers, "the job was still waiting after 20 s"
    wait_for(lambda: not refresh_in_flight())  # and so is its announcement
    return answers[0]


def _assumed(handler: ShipsRecordsToAWS) -> list[str]:
    return [message for message in handler.shipped if message.startswith("Assumed arn:aws:")]


def test_a_log_handler_whose_first_aws_call_is_the_jobs_first_gets_the_credentials(
    job: Job, aws: FakeAWS, ships_records_to_aws: ShipsRecordsToAWS
) -> None:
    """The job logs before calling AWS, so its handler makes the first AWS call. The STS
    call runs in the background and announces the credentials once it has released them:
    the announcement waits for the handler, not the handler for the announcement."""
    handler = ships_records_to_aws

    def job_start() -> str:
        logging.getLogger("deploy").info("Deploying.")
        arn: str = boto3.Session().client("sts").get_caller_identity()["Arn"]
        return arn

    assert ":assumed-role/deploy/" in _in_a_job_thread(job_start)
    assert not handler.failed
    assert handler.shipped[0] == "Deploying."
    assert len(_assumed(handler)) == 1
    assert aws.sts.assume_role_calls == 1


def test_a_log_handler_calling_aws_while_the_credentials_are_made_is_told_why_it_cannot(
    job: Job, aws: FakeAWS, ships_records_to_aws: ShipsRecordsToAWS
) -> None:
    """botocore logs at INFO where it found the STS endpoint while the provider makes its
    STS client. A handler shipping that record asks for the credentials being made: its
    call fails at once, saying why, instead of waiting for itself."""
    handler = ships_records_to_aws

    def job_start() -> str:
        arn: str = boto3.Session().client("sts").get_caller_identity()["Arn"]
        return arn

    assert ":assumed-role/deploy/" in _in_a_job_thread(job_start)
    assert handler.failed
    for error in handler.failed:
        assert isinstance(error, gitlab_botocore.GitLabOIDCError)
        assert str(error) == REENTRANT_CALL_MESSAGE
    assert len(_assumed(handler)) == 1
    assert aws.sts.assume_role_calls == 1


def test_a_log_handler_calling_aws_from_inside_the_sts_call_is_told_why_it_cannot(
    job: Job, aws: FakeAWS, ships_records_to_aws: ShipsRecordsToAWS, tmp_path: Path
) -> None:
    """With the cache, the job's thread makes the STS call itself on first use. A record
    it logs meanwhile (an attempt throttled and retried) is handled in that thread; a
    handler shipping it cannot wait for the call it interrupts, and fails at once."""
    job.set(GITLAB_BOTOCORE_CACHE=str(tmp_path / "cache"))
    aws.sts.inject(Fault.throttling())
    handler = ships_records_to_aws
    handler.loggers = "gitlab_botocore."  # not botocore's records of making clients

    def job_start() -> str:
        arn: str = boto3.Session().client("sts").get_caller_identity()["Arn"]
        return arn

    assert ":assumed-role/deploy/" in _in_a_job_thread(job_start)
    (error,) = handler.failed  # the retry's record
    assert isinstance(error, gitlab_botocore.GitLabOIDCError)
    assert str(error) == REENTRANT_CALL_MESSAGE
    assert handler.shipped == _assumed(handler)
    assert len(handler.shipped) == 1
    assert aws.sts.assume_role_calls == 2  # throttled, then answered


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


def test_first_use_makes_one_sts_client_from_the_callers_session(
    job: Job, aws: FakeAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No more work on the way to the first request than botocore's own provider does:
    # one STS client from the session, no private session.
    def private_client(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a private session made a client")

    monkeypatch.setattr(sts_client.PrivateSession, "create_client", private_client)
    session = OwnedSession()
    boto3.Session(botocore_session=session).client("s3").list_buckets()
    assert sorted(session.clients) == ["s3", "sts"]
    assert aws.sts.assume_role_calls == 1
    assert session.strangers == []


# -- the ID token over plain http:// ------------------------------------------------------


@pytest.fixture
def through_proxy(job: Job, aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> Job:
    """Requests to any http:// host reach the local STS, as a CI service such as
    LocalStack would be reached by name; warnings already given are forgotten."""
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", aws.sts.url)
    monkeypatch.setattr(sts_client, "_warned_plain_http", Once())
    return job


def plain_http_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == sts_client.plain_http_logger.name]


def test_plain_http_to_another_host_warns_once_per_endpoint(
    through_proxy: Job, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    through_proxy.set(AWS_ENDPOINT_URL_STS="http://localstack:4566")
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        for _ in range(2):  # two sends of the token to the same endpoint
            credentials_registry.clear()
            assert boto3.Session().get_credentials().get_frozen_credentials().access_key
        through_proxy.set(AWS_ENDPOINT_URL_STS="http://sts-mirror.example.com:8080/")
        # The endpoint is the session's, not a setting: equal settings share credentials.
        credentials_registry.clear()
        boto3.Session().get_credentials().get_frozen_credentials()
    assert aws.sts.assume_role_calls == 3
    (localstack, mirror) = plain_http_warnings(caplog)
    assert "http://localstack:4566 over plain HTTP" in localstack
    assert "LocalStack" in localstack
    assert "logging.getLogger('gitlab_botocore.sts_client.plain_http')" in localstack
    assert "http://sts-mirror.example.com:8080 over plain HTTP" in mirror
    assert os.environ["GITLAB_OIDC_TOKEN"] not in caplog.text


def test_plain_http_warning_can_be_silenced(
    through_proxy: Job, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    through_proxy.set(AWS_ENDPOINT_URL_STS="http://localstack:4566")
    monkeypatch.setattr(sts_client.plain_http_logger, "level", logging.ERROR)
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        boto3.Session().get_credentials().get_frozen_credentials()
    assert plain_http_warnings(caplog) == []


def test_plain_http_to_this_machine_does_not_warn(
    through_proxy: Job, aws: FakeAWS, caplog: pytest.LogCaptureFixture
) -> None:
    port = aws.sts.url.rsplit(":", 1)[1]
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        for host in ("127.0.0.1", "localhost", "127.0.0.5"):
            credentials_registry.clear()
            through_proxy.set(AWS_ENDPOINT_URL_STS=f"http://{host}:{port}")
            boto3.Session().get_credentials().get_frozen_credentials()
    assert aws.sts.assume_role_calls == 3
    assert plain_http_warnings(caplog) == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localstack", False),
        ("localhost.example.com", False),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("::2", False),
        ("", False),
    ],
)
def test_what_counts_as_this_machine(host: str, loopback: bool) -> None:
    assert sts_client.is_loopback(host) is loopback


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Forking while the early request is in flight is the very case under test.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_the_early_request_is_in_flight_fetches_for_itself(
    job: Job, aws: FakeAWS
) -> None:
    aws.sts.set_latency(2)
    session = boto3.Session()
    session.client("sts")  # the request is in flight, its thread holds the fetch lock
    assert refresh_in_flight()
    # The child has no such thread: it must not wait for it.
    child_key = in_forked_child(
        partial(access_key, session), hung="the child hung on the parent's early request"
    )
    parent_key = access_key(session)
    assert child_key.startswith("ASIA")
    assert child_key != parent_key  # each process made its own call
    assert aws.sts.assume_role_calls == 2
