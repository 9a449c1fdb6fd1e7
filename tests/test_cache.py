"""The opt-in cross-process cache: one STS call for many processes, kept private and fresh.

"A new process" is simulated in-process by ``uninstall()`` + ``install()``, which forgets
the credentials shared inside the process; real processes are used where it matters.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
import time_machine

import gitlab_botocore
from gitlab_botocore.testing.aws import FakeAWS

from .conftest import ACCOUNT_ID, Job

START = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
RESOLVE = (
    "import gitlab_botocore, boto3\n"
    "credentials = boto3.Session().get_credentials()\n"
    "print(credentials.method, credentials.get_frozen_credentials().access_key)\n"
)


@pytest.fixture
def cache_dir(job: Job, tmp_path: Path) -> Path:
    directory = tmp_path / "cache" / "gitlab-botocore"
    job.set(GITLAB_BOTOCORE_CACHE=str(directory))
    return directory


def fresh_process_access_key() -> str:
    """Resolve credentials as a newly started process would."""
    gitlab_botocore.uninstall()
    gitlab_botocore.install()
    key: str = boto3.Session().get_credentials().get_frozen_credentials().access_key
    return key


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json"))


def test_separate_processes_share_one_sts_call(cache_dir: Path, aws: FakeAWS) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RESOLVE], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(5)
    ]
    outputs = []
    for child in children:
        stdout, stderr = child.communicate(timeout=60)
        assert child.returncode == 0, stderr.decode()
        outputs.append(stdout.decode().split())
    assert {method for method, _ in outputs} == {"gitlab-oidc"}
    assert len({key for _, key in outputs}) == 1
    assert aws.sts.assume_role_calls == 1


def test_cache_is_off_by_default(
    job: Job, aws: FakeAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    job.set(XDG_CACHE_HOME=str(tmp_path / "xdg"))
    first = fresh_process_access_key()
    assert fresh_process_access_key() != first
    assert aws.sts.assume_role_calls == 2
    assert not (tmp_path / "xdg").exists()
    assert not (tmp_path / "home").exists()


def test_cache_1_uses_the_user_cache_directory(job: Job, aws: FakeAWS, tmp_path: Path) -> None:
    job.set(GITLAB_BOTOCORE_CACHE="1", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    first = fresh_process_access_key()
    assert fresh_process_access_key() == first
    assert aws.sts.assume_role_calls == 1
    assert len(entries(tmp_path / "xdg" / "gitlab-botocore")) == 1


def test_directory_and_files_are_private(cache_dir: Path, job: Job, aws: FakeAWS) -> None:
    previous = os.umask(0)  # the modes must not depend on a strict umask
    try:
        fresh_process_access_key()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    files = list(cache_dir.iterdir())
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_uid == os.geteuid()
    (entry,) = entries(cache_dir)
    assert job.variables["GITLAB_OIDC_TOKEN"] not in entry.read_text()
    assert not list(cache_dir.glob("*.tmp"))


def test_open_directory_is_refused_with_one_warning(
    job: Job, aws: FakeAWS, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    job.set(GITLAB_BOTOCORE_CACHE=str(directory))
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        first = fresh_process_access_key()
        assert fresh_process_access_key() != first  # no cache: STS again
    assert aws.sts.assume_role_calls == 2
    assert list(directory.iterdir()) == []
    warnings = [r for r in caplog.records if str(directory) in r.getMessage()]
    assert len(warnings) == 1
    assert "chmod 700" in warnings[0].getMessage()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_directory_of_another_user_is_refused(job: Job, aws: FakeAWS, tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 4242, -1)
    job.set(GITLAB_BOTOCORE_CACHE=str(directory))
    fresh_process_access_key()
    fresh_process_access_key()
    assert aws.sts.assume_role_calls == 2
    assert list(directory.iterdir()) == []


def test_unusable_path_is_not_fatal(job: Job, aws: FakeAWS, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    job.set(GITLAB_BOTOCORE_CACHE=str(not_a_directory))
    assert fresh_process_access_key()
    assert aws.sts.assume_role_calls == 1


CHANGES: dict[str, Callable[[Job], object]] = {
    "token": lambda job: job.token(),
    "job": lambda job: job.token(job_id=5002),
    "role": lambda job: job.set(AWS_ROLE_ARN=f"arn:aws:iam::{ACCOUNT_ID}:role/staging"),
    "duration": lambda job: job.set(GITLAB_BOTOCORE_DURATION_SECONDS="900"),
    "session-name": lambda job: job.set(AWS_ROLE_SESSION_NAME="other-session"),
    "policy-arns": lambda job: job.set(
        GITLAB_BOTOCORE_POLICY_ARNS="arn:aws:iam::aws:policy/ReadOnlyAccess"
    ),
    "region": lambda job: job.set(AWS_DEFAULT_REGION="eu-west-1"),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_key_covers_what_changes_the_credentials(
    cache_dir: Path, job: Job, aws: FakeAWS, change: Callable[[Job], object]
) -> None:
    first = fresh_process_access_key()
    assert fresh_process_access_key() == first
    assert aws.sts.assume_role_calls == 1

    original = dict(job.variables)
    change(job)
    assert fresh_process_access_key() != first
    assert aws.sts.assume_role_calls == 2
    assert len(entries(cache_dir)) == 2

    job.set(**{name: original.get(name) for name in {*original, *job.variables}})
    assert fresh_process_access_key() == first  # the first entry still serves
    assert aws.sts.assume_role_calls == 2


@pytest.fixture
def clock(job: Job) -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        job.token(lifetime_seconds=6 * 3600)
        yield traveller


@pytest.mark.parametrize(
    "window",
    [
        (3600, 44 * 60, 46 * 60),  # ignored within 15 minutes of expiry
        (900, 7 * 60, 8 * 60),  # short credentials: ignored past half their lifetime
    ],
)
def test_entries_close_to_expiry_are_ignored(
    cache_dir: Path,
    job: Job,
    aws: FakeAWS,
    clock: time_machine.Traveller,
    window: tuple[int, int, int],
) -> None:
    duration, still_served_at, ignored_at = window
    job.set(GITLAB_BOTOCORE_DURATION_SECONDS=str(duration))
    first = fresh_process_access_key()
    clock.move_to(START + datetime.timedelta(seconds=still_served_at))
    assert fresh_process_access_key() == first
    assert aws.sts.assume_role_calls == 1

    clock.move_to(START + datetime.timedelta(seconds=ignored_at))
    second = fresh_process_access_key()
    assert second != first
    assert aws.sts.assume_role_calls == 2
    assert fresh_process_access_key() == second  # the renewed entry replaced the old one
    assert aws.sts.assume_role_calls == 2
    assert len(entries(cache_dir)) == 1


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"{not json",
        b'{"version": 1}',
        b'{"version": 1, "access_key": 7}',
        b"\xff\xfe binary",
        None,  # truncated in the middle
    ],
    ids=["empty", "garbage", "missing-fields", "wrong-types", "not-utf8", "truncated"],
)
def test_corrupt_entry_is_ignored_and_replaced(
    cache_dir: Path,
    job: Job,
    aws: FakeAWS,
    caplog: pytest.LogCaptureFixture,
    damage: bytes | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    fresh_process_access_key()
    (entry,) = entries(cache_dir)
    original = entry.read_bytes()
    secrets = [json.loads(original)[name] for name in ("secret_key", "token")]
    entry.write_bytes(original[: len(original) // 2] if damage is None else damage)

    second = fresh_process_access_key()
    assert aws.sts.assume_role_calls == 2
    assert json.loads(entry.read_bytes())["access_key"] == second
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert fresh_process_access_key() == second
    assert aws.sts.assume_role_calls == 2
    assert "Ignoring cache entry" in caplog.text
    for secret in [*secrets, job.variables["GITLAB_OIDC_TOKEN"]]:
        assert secret not in caplog.text


def test_entry_readable_by_others_is_ignored(cache_dir: Path, aws: FakeAWS) -> None:
    fresh_process_access_key()
    (entry,) = entries(cache_dir)
    entry.chmod(0o644)
    fresh_process_access_key()
    assert aws.sts.assume_role_calls == 2
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
