"""The cache under attack: links, FIFOs and forged entries planted where the cache looks.

The attacker here is whoever can write where the cache lives before the job starts: another
user in a shared ``/tmp``, or an earlier job of the same runner user. The cache must never
follow a link, never hang, never trust what it did not write, never delete what is not its
own, and the job must get its credentials from STS whatever was planted.

End-to-end tests go through ``import gitlab_botocore; boto3.Session()`` against the local
GitLab and STS; the unit tests drive :class:`CredentialCache` directly.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore.cache import MAX_ENTRY_BYTES, STALE_AFTER_SECONDS, CredentialCache
from gitlab_botocore.exchange import IssuedCredentials
from gitlab_botocore.testing.aws import FakeAWS

from .conftest import Job

RESOLVE = (
    "import gitlab_botocore, boto3\n"
    "print(boto3.Session().get_credentials().get_frozen_credentials().access_key)\n"
)
# Long enough for a child process on a loaded machine; only a hang reaches it.
HANG_SECONDS = 120
FORGED_ACCESS_KEY = "AKIAATTACKERCHOSEN01"
ANOTHER_USER = 4242


def fresh_process_access_key() -> str:
    """Resolve credentials as a newly started process would."""
    gitlab_botocore.uninstall()
    gitlab_botocore.install()
    key: str = boto3.Session().get_credentials().get_frozen_credentials().access_key
    return key


def snapshot(directory: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every name in ``directory`` with what it is: a file's bytes, a link's target."""
    found: dict[str, tuple[str, bytes | str]] = {}
    for path in directory.iterdir():
        if path.is_symlink():
            found[path.name] = ("link", os.readlink(path))
        elif path.is_dir():
            found[path.name] = ("dir", "")
        else:
            found[path.name] = ("file", path.read_bytes())
    return found


def age(path: Path, seconds: float) -> None:
    """Make ``path`` (not what a link points to) look ``seconds`` old."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def cache_warnings(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING
        and record.name.startswith("gitlab_botocore")
        and str(path) in record.getMessage()
    ]


@pytest.fixture
def stash(tmp_path: Path) -> Path:
    """A directory the attacker chose, holding a victim's files (old enough to prune)."""
    directory = tmp_path / "stash"
    directory.mkdir(mode=0o700)
    (directory / "notes.json").write_text('{"keep": true}')
    (directory / ("f" * 64 + ".json")).write_text('{"victim": "named like an entry"}')
    for path in directory.iterdir():
        age(path, STALE_AFTER_SECONDS + 3600)
    return directory


# -- the directory ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["existing", "not-yet-existing"])
def test_symlink_planted_at_the_cache_path_is_never_followed(
    *,
    job: Job,
    aws: FakeAWS,
    tmp_path: Path,
    stash: Path,
    caplog: pytest.LogCaptureFixture,
    target: str,
) -> None:
    """The issue's attack: `GITLAB_BOTOCORE_CACHE=/tmp/gitlab-botocore-$CI_JOB_ID` with a
    link planted at that path beforehand."""
    before = snapshot(stash)
    destination = stash if target == "existing" else stash / "made-for-the-attacker"
    planted = tmp_path / "gitlab-botocore-5001"
    planted.symlink_to(destination)
    job.set(GITLAB_BOTOCORE_CACHE=str(planted))

    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        first = fresh_process_access_key()
        second = fresh_process_access_key()

    assert first.startswith(("AKIA", "ASIA"))
    assert second != first  # no cache: each process went to STS
    assert aws.sts.assume_role_calls == 2
    assert snapshot(stash) == before  # nothing written, nothing pruned, nothing created
    assert planted.is_symlink()
    (warning,) = cache_warnings(caplog, planted)
    assert "symbolic link" in warning
    assert "Remove the link" in warning


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o710, 0o500])
def test_directory_with_any_mode_but_0700_is_refused_with_one_warning(
    job: Job, aws: FakeAWS, tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    directory.chmod(mode)
    job.set(GITLAB_BOTOCORE_CACHE=str(directory))
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        assert fresh_process_access_key() != fresh_process_access_key()
    assert aws.sts.assume_role_calls == 2
    assert list(directory.iterdir()) == []
    assert stat.S_IMODE(directory.stat().st_mode) == mode  # refused, not silently changed
    (warning,) = cache_warnings(caplog, directory)
    assert f"{mode:04o}" in warning
    assert f"chmod 700 {directory}" in warning


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory away")
def test_directory_owned_by_another_user_is_refused_with_one_warning(
    job: Job, aws: FakeAWS, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Root here stands in for the attacker: it hands a 0700 directory to another uid,
    as a user who created `/tmp/gitlab-botocore-<next job id>` first would own it."""
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, ANOTHER_USER, ANOTHER_USER)
    job.set(GITLAB_BOTOCORE_CACHE=str(directory))
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        assert fresh_process_access_key() != fresh_process_access_key()
    assert aws.sts.assume_role_calls == 2
    assert list(directory.iterdir()) == []
    (warning,) = cache_warnings(caplog, directory)
    assert f"uid {ANOTHER_USER}" in warning


def test_parent_writable_by_everyone_needs_the_sticky_bit(
    job: Job, aws: FakeAWS, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    directory = shared / "gitlab-botocore-5001"
    job.set(GITLAB_BOTOCORE_CACHE=str(directory))
    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        fresh_process_access_key()
        fresh_process_access_key()
    assert aws.sts.assume_role_calls == 2
    assert not directory.exists()
    (warning,) = cache_warnings(caplog, directory)
    assert "sticky" in warning

    shared.chmod(0o1777)  # as /tmp is: others may not rename or remove our directory
    first = fresh_process_access_key()
    assert fresh_process_access_key() == first
    assert aws.sts.assume_role_calls == 3
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_directory_made_under_a_strict_umask_is_still_usable(
    job: Job, aws: FakeAWS, tmp_path: Path
) -> None:
    directory = tmp_path / "cache"
    job.set(GITLAB_BOTOCORE_CACHE=str(directory))
    previous = os.umask(0o277)  # would leave the new directory r-x for its owner
    try:
        first = fresh_process_access_key()
        assert fresh_process_access_key() == first
    finally:
        os.umask(previous)
    assert aws.sts.assume_role_calls == 1
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- entries and locks -----------------------------------------------------------------------


@pytest.fixture
def cache_dir(job: Job, tmp_path: Path) -> Path:
    directory = tmp_path / "cache"
    job.set(GITLAB_BOTOCORE_CACHE=str(directory))
    return directory


def only_entry(directory: Path) -> Path:
    (entry,) = directory.glob("*.json")
    return entry


def forged_entry(genuine: Path) -> bytes:
    """A well-formed entry carrying credentials the attacker chose."""
    document = json.loads(genuine.read_bytes())
    document["access_key"] = FORGED_ACCESS_KEY
    return json.dumps(document).encode()


def test_symlink_at_an_entry_path_is_not_followed(
    cache_dir: Path, aws: FakeAWS, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A link from the entry's name to a forged entry elsewhere: the job would use the
    attacker's account (and upload its data there) if the cache followed it."""
    fresh_process_access_key()
    entry = only_entry(cache_dir)
    forged = tmp_path / "forged.json"
    forged_bytes = forged_entry(entry)
    forged.write_bytes(forged_bytes)
    forged.chmod(0o600)
    entry.unlink()
    entry.symlink_to(forged)

    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        renewed = fresh_process_access_key()
    assert renewed != FORGED_ACCESS_KEY
    assert aws.sts.assume_role_calls == 2
    assert forged.read_bytes() == forged_bytes  # not written through the link
    assert not entry.is_symlink()  # the renewed entry replaced the link itself
    assert json.loads(entry.read_bytes())["access_key"] == renewed
    (warning,) = cache_warnings(caplog, cache_dir)
    assert "a symbolic link" in warning


@pytest.mark.parametrize("plant", ["symlink", "fifo"])
def test_lock_path_must_be_a_regular_file(
    cache_dir: Path,
    aws: FakeAWS,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    plant: str,
) -> None:
    fresh_process_access_key()
    entry = only_entry(cache_dir)
    lock = entry.with_suffix(".lock")
    lock.unlink()
    entry.unlink()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    if plant == "symlink":
        lock.symlink_to(victim)
    else:
        os.mkfifo(lock, 0o600)

    with caplog.at_level(logging.WARNING, logger="gitlab_botocore"):
        first = fresh_process_access_key()
        assert fresh_process_access_key() == first  # entries still work
    assert aws.sts.assume_role_calls == 2
    assert victim.read_text() == "keep me"
    (warning,) = cache_warnings(caplog, cache_dir)
    assert ("a symbolic link" if plant == "symlink" else "a FIFO") in warning


def test_fifo_at_the_entry_path_does_not_hang_a_process(cache_dir: Path, aws: FakeAWS) -> None:
    """Opening a FIFO for reading waits for a writer that never comes, unless the cache
    opens entries non-blocking. The child process would hang until the job times out."""
    fresh_process_access_key()
    entry = only_entry(cache_dir)
    entry.unlink()
    os.mkfifo(entry, 0o600)
    try:
        child = subprocess.run(
            [sys.executable, "-c", RESOLVE],
            capture_output=True,
            timeout=HANG_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a FIFO at the entry path hung the process")
    assert child.returncode == 0, child.stderr.decode()
    assert child.stdout.decode().startswith(("AKIA", "ASIA"))
    assert aws.sts.assume_role_calls == 2
    assert stat.S_ISREG(entry.lstat().st_mode)  # replaced by a real entry


@pytest.mark.parametrize(
    "content",
    [b"[" * 60000, b'{"a":' * 12000, b"{" + b" " * MAX_ENTRY_BYTES + b"}"],
    ids=["nested-lists", "nested-objects", "oversized"],
)
def test_hostile_entry_content_is_a_miss(
    cache_dir: Path, aws: FakeAWS, job: Job, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    fresh_process_access_key()
    entry = only_entry(cache_dir)
    entry.write_bytes(content)
    renewed = fresh_process_access_key()  # main raised RecursionError for the nested ones
    assert aws.sts.assume_role_calls == 2
    assert json.loads(entry.read_bytes())["access_key"] == renewed
    assert "Ignoring cache entry" in caplog.text


@pytest.mark.parametrize(
    "change",
    [
        {"expiration": datetime.timedelta(hours=13)},  # past STS's 12-hour maximum
        {"expiration": datetime.timedelta(days=3650)},
        {"stored_at": datetime.timedelta(hours=2)},  # written "in the future"
        {"session_name": "line\nAWS_SECRET_ACCESS_KEY=injected"},
    ],
    ids=["13-hours-ahead", "10-years-ahead", "stored-in-the-future", "control-characters"],
)
def test_implausible_entry_is_a_miss(
    cache_dir: Path, aws: FakeAWS, change: dict[str, object]
) -> None:
    fresh_process_access_key()
    entry = only_entry(cache_dir)
    document = json.loads(entry.read_bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    for name, value in change.items():
        if name == "expiration" and isinstance(value, datetime.timedelta):
            document[name] = (now + value).isoformat()
        elif name == "stored_at" and isinstance(value, datetime.timedelta):
            document[name] = (now + value).timestamp()
        else:
            document[name] = value
    document["access_key"] = FORGED_ACCESS_KEY
    entry.write_bytes(json.dumps(document).encode())

    assert fresh_process_access_key() != FORGED_ACCESS_KEY
    assert aws.sts.assume_role_calls == 2


def test_entry_valid_for_the_longest_session_is_still_served(
    cache_dir: Path, job: Job, aws: FakeAWS
) -> None:
    """The plausibility bound does not reject what STS really issues."""
    job.set(GITLAB_BOTOCORE_DURATION_SECONDS="43200")
    first = fresh_process_access_key()
    assert fresh_process_access_key() == first
    assert aws.sts.assume_role_calls == 1


# -- pruning ---------------------------------------------------------------------------------


def issued(hours: float = 1) -> IssuedCredentials:
    return IssuedCredentials(
        access_key="ASIAEXAMPLEEXAMPLE01",
        secret_key="secret/example+key",
        token="session-token-example",
        expiration=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours),
        assumed_role_arn="arn:aws:sts::123456789012:assumed-role/deploy/example",
        session_name="example",
    )


KEY = "0123456789abcdef" * 4
OTHER_KEY = "fedcba9876543210" * 4


@pytest.fixture
def private_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "private"
    directory.mkdir(mode=0o700)
    return directory


def test_pruning_removes_only_the_cache_own_stale_regular_files(
    private_dir: Path, tmp_path: Path
) -> None:
    """A directory the user pointed the cache at may hold other files: they stay."""
    outside = tmp_path / "outside.json"
    outside.write_text("victim")
    theirs = {
        "backup.json": "user data",
        "notes.lock": "user data",
        "draft.tmp": "user data",
        f"{OTHER_KEY}.json.bak": "user data",
        f"{OTHER_KEY.upper()}.json": "upper-case hex is not a cache name",
    }
    for name, text in theirs.items():
        (private_dir / name).write_text(text)
    (private_dir / f"{'a' * 64}.json").mkdir()  # a directory with an entry's name
    (private_dir / f"{'b' * 64}.json").symlink_to(outside)  # a link with an entry's name
    ours = [f"{OTHER_KEY}.json", f"{OTHER_KEY}.lock", f".{OTHER_KEY}.123.0badc0de.tmp"]
    for name in ours:
        (private_dir / name).write_text("{}")
    for path in private_dir.iterdir():
        age(path, STALE_AFTER_SECONDS + 60)

    CredentialCache(str(private_dir)).store(KEY, issued())

    remaining = {path.name for path in private_dir.iterdir()}
    assert remaining == {*theirs, f"{'a' * 64}.json", f"{'b' * 64}.json", f"{KEY}.json"}
    for name, text in theirs.items():
        assert (private_dir / name).read_text() == text
    assert outside.read_text() == "victim"


def test_recent_entries_of_other_keys_are_kept(private_dir: Path) -> None:
    (private_dir / f"{OTHER_KEY}.json").write_text("{}")
    CredentialCache(str(private_dir)).store(KEY, issued())
    assert (private_dir / f"{OTHER_KEY}.json").exists()


# -- fast unit tests of CredentialCache ------------------------------------------------------


def test_round_trip(private_dir: Path) -> None:
    cache = CredentialCache(str(private_dir))
    cache.store(KEY, issued())
    loaded = cache.load(KEY)
    assert loaded is not None
    assert loaded.access_key == "ASIAEXAMPLEEXAMPLE01"
    assert loaded.secret_key == "secret/example+key"


def test_key_that_is_not_a_cache_key_is_rejected(private_dir: Path) -> None:
    cache = CredentialCache(str(private_dir))
    with pytest.raises(ValueError, match="64 lowercase hex"):
        cache.load("../../etc/passwd")


@pytest.fixture
def opened_fifos() -> Iterator[list[Path]]:
    """FIFOs a test made; any reader still blocked on one is released at the end."""
    fifos: list[Path] = []
    yield fifos
    for fifo in fifos:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO when no reader waits
        except OSError:
            continue
        os.close(fd)


def test_load_from_a_fifo_returns(private_dir: Path, opened_fifos: list[Path]) -> None:
    fifo = private_dir / f"{KEY}.json"
    os.mkfifo(fifo, 0o600)
    opened_fifos.append(fifo)
    result: list[object] = []
    reader = threading.Thread(
        target=lambda: result.append(CredentialCache(str(private_dir)).load(KEY)), daemon=True
    )
    reader.start()
    reader.join(HANG_SECONDS)
    assert not reader.is_alive(), "load() blocked on a FIFO"
    assert result == [None]


def test_deeply_nested_entry_is_a_miss(private_dir: Path) -> None:
    (private_dir / f"{KEY}.json").write_bytes(b"[" * 60000)
    (private_dir / f"{KEY}.json").chmod(0o600)
    assert CredentialCache(str(private_dir)).load(KEY) is None


def test_entry_expiring_beyond_the_sts_maximum_is_a_miss(private_dir: Path) -> None:
    cache = CredentialCache(str(private_dir))
    cache.store(KEY, issued(hours=12 + 1))
    assert cache.load(KEY) is None
    cache.store(KEY, issued(hours=12))
    assert cache.load(KEY) is not None


def test_symlinked_directory_is_refused(private_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(private_dir)
    cache = CredentialCache(str(link))
    cache.store(KEY, issued())
    assert cache.load(KEY) is None
    assert list(private_dir.iterdir()) == []


def test_directory_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    cache = CredentialCache(str(path))
    cache.store(KEY, issued())
    assert cache.load(KEY) is None
    assert path.read_text() == ""
