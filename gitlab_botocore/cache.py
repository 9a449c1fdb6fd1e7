"""The opt-in cross-process credentials cache (``GITLAB_BOTOCORE_CACHE``).

A job often runs many short Python processes; with the cache, the first one calls
STS and the others read its credentials from disk. Entries are JSON files named by
:func:`cache_key`, a hash that covers the ID token itself: another job, or the same
job with another role, duration or policy, never finds them.

Safety rules (see ``docs/security.md``):

- The cache never follows a symbolic link: the directory is opened with
  ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent, and every file in it is
  opened relative to that descriptor with ``O_NOFOLLOW``.
- The directory is created ``0700`` when missing. An existing one must be a real
  directory owned by the current user with mode exactly ``0700``, in a parent that
  others cannot write to unless it has the sticky bit (as ``/tmp`` does). Anything
  else turns the cache off with one warning naming the path; credentials then come
  from STS as if the cache were not configured.
- Entries are written ``0600`` through a temporary file and an atomic rename. They
  are read with ``O_NONBLOCK`` (a FIFO planted at their path cannot hang the job),
  must be regular private files of the current user no larger than
  :data:`MAX_ENTRY_BYTES`, and are checked field by field: an unreadable, partial,
  corrupt, deeply nested or implausible entry (expiring more than the longest STS
  session ahead) is a miss.
- Pruning removes only regular files whose names are the cache's own (64 hex digits
  and ``.json``, ``.lock`` or a temporary-file suffix).

A process about to call STS holds a lock on the key, so processes starting together
make one call, not one each. The cache needs POSIX (``dir_fd``, ``O_NOFOLLOW`` and
``flock``); elsewhere it stays off.

Freshness: an entry is served while more than ``min(15 min, half its lifetime)`` is
left. Past that point the process that stored it is about to refresh it (refreshes
start ``min(15 min, a quarter of the lifetime)`` before expiry, see
:mod:`gitlab_botocore.refresh`), so serving it would only defer that refresh to
STS; and a process that loads an entry still has at least half of its refresh lead
time to renew it calmly.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from typing import Any, Callable

from .backoff import Backoff
from .exchange import IssuedCredentials
from .id_token import IdToken
from .once import Once
from .redaction import redact_in_logs
from .refresh import ADVISORY_REFRESH_SECONDS
from .settings import MAX_DURATION_SECONDS, EnvVar, Settings, sts_inputs

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
LOCK_WAIT_SECONDS = 30.0
"""How long a process waits for another one's STS call before making its own."""
LOCK_POLL_BACKOFF = Backoff(first=0.005, ceiling=0.05, jitter=0.0)
"""Pauses between tries of a lock another process holds: short, fixed, soon capped."""
MAX_ENTRY_BYTES = 64 * 1024
CLOCK_SKEW_SECONDS = 300
"""Tolerance for clocks that disagree a little (an entry stored by another process)."""
# Entries and locks older than the longest STS session are certainly useless.
STALE_AFTER_SECONDS = MAX_DURATION_SECONDS + 3600
DIRECTORY_MODE = 0o700
ENTRY_MODE = 0o600

_KEY = re.compile(r"[0-9a-f]{64}")
# Only names the cache itself makes: "<key>.json", "<key>.lock" and the temporary
# ".<key>.<pid>.<8 hex>.tmp" of store(); pruning touches nothing else.
_OWN_NAME = re.compile(r"[0-9a-f]{64}\.(?:json|lock)|\.[0-9a-f]{64}\.[0-9]+\.[0-9a-f]{8}\.tmp")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

_SUPPORTED = (
    fcntl is not None
    and hasattr(os, "geteuid")
    and all(hasattr(os, flag) for flag in ("O_NOFOLLOW", "O_DIRECTORY", "O_NONBLOCK"))
    and {os.open, os.mkdir, os.stat, os.rename, os.unlink} <= os.supports_dir_fd  # os.replace too
    and os.stat in os.supports_follow_symlinks
    and os.scandir in os.supports_fd
)
# What makes an entry unusable rather than absent; RecursionError is json.loads on
# "[[[[..." nested deeper than the interpreter allows.
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError)
# What open() says when a link (ELOOP; EMLINK on FreeBSD), a directory or a socket sits
# where the cache expects one of its files.
_PLANTED_ERRNOS = (errno.ELOOP, errno.EMLINK, errno.EISDIR, errno.ENXIO)
_warned = Once()


def cache_key(settings: Settings, token: IdToken) -> str:
    """The file name stem for these settings and this token: a SHA-256, hex.

    Covers everything that changes what STS would return: the token (raw), the CI job
    id and the settings marked as STS inputs in their table (role, session name,
    duration, policies, chained roles, region, endpoint override).
    """
    material = {
        **sts_inputs(settings),
        "version": FORMAT_VERSION,
        "token": token.raw,
        "job_id": token.job_id,
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _warn_once(directory: str, topic: str, message: str, *args: object) -> None:
    if _warned.first((directory, topic)):
        logger.warning(message, *args)


class _UnsafeDirectoryError(Exception):
    """The directory is not safe to use; ``reason`` says why and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CredentialCache:
    """Credentials on disk in ``directory``, shared by the processes of one user.

    Never raises for cache trouble: every failure is logged and turns into a miss.
    """

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)

    # -- the public operations -----------------------------------------------------------

    def load(self, key: str) -> IssuedCredentials | None:
        """The entry for ``key`` if it exists, is intact and is fresh enough; else ``None``."""
        name = f"{_checked_key(key)}.json"
        with self._directory() as dir_fd:
            if dir_fd is None:
                return None
            try:
                entry = self._read(dir_fd, name)
            except FileNotFoundError:
                return None
            except _UNREADABLE as error:
                logger.debug("Ignoring cache entry %s...: %s.", key[:12], _describe(error))
                return None
        if entry is None or not _fresh(key, *entry):
            return None
        issued = entry[0]
        redact_in_logs(issued.secret_key, issued.token)
        logger.info(
            "Using cached credentials for %s from %s; they expire at %s.",
            issued.assumed_role_arn,
            self.directory,
            issued.expiration.isoformat(),
        )
        return issued

    def store(self, key: str, issued: IssuedCredentials) -> None:
        """Write the entry for ``key`` atomically (0600); failures are logged, not raised."""
        name = f"{_checked_key(key)}.json"
        document = {
            "version": FORMAT_VERSION,
            "access_key": issued.access_key,
            "secret_key": issued.secret_key,
            "token": issued.token,
            "expiration": issued.expiration.isoformat(),
            "assumed_role_arn": issued.assumed_role_arn,
            "session_name": issued.session_name,
            "stored_at": time.time(),
        }
        payload = json.dumps(document).encode("utf-8")
        with self._directory() as dir_fd:
            if dir_fd is None:
                return
            temporary = f".{key}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(
                    temporary,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                    ENTRY_MODE,
                    dir_fd=dir_fd,
                )
                with os.fdopen(fd, "wb") as file:
                    # The mode given to open() is narrowed by the umask, never widened;
                    # fchmod makes it exactly 0600 whatever the umask.
                    os.fchmod(file.fileno(), ENTRY_MODE)
                    file.write(payload)
                # rename() replaces whatever is at the entry's name (a planted symbolic
                # link included) and never follows it.
                os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as error:
                logger.warning(
                    "Could not write to the credentials cache in %s (%s); continuing without.",
                    self.directory,
                    _describe(error),
                )
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=dir_fd)
                return
            self._prune(dir_fd)

    def get_or_fetch(self, key: str, fetch: Callable[[], IssuedCredentials]) -> IssuedCredentials:
        """The cached entry, else ``fetch()`` (stored afterwards).

        Processes missing the same key at the same time take turns: the first fetches,
        the others then find its entry.
        """
        cached = self.load(key)
        if cached is not None:
            return cached
        with self._locked(key):
            cached = self.load(key)  # stored while we waited for the lock
            if cached is not None:
                return cached
            issued = fetch()
            self.store(key, issued)
            return issued

    # -- the directory ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _directory(self) -> Iterator[int | None]:
        """An open descriptor of the checked directory, or ``None`` when the cache is off.

        Working relative to one descriptor means the directory checked is the one used,
        whatever happens to its path meanwhile.
        """
        if not _SUPPORTED:
            _warn_once(
                self.directory,
                "platform",
                "The gitlab-botocore credentials cache needs a POSIX system; it is off.",
            )
            yield None
            return
        try:
            dir_fd = self._open_directory()
        except (_UnsafeDirectoryError, OSError) as refusal:
            reason = (
                refusal.reason
                if isinstance(refusal, _UnsafeDirectoryError)
                else f"it cannot be checked ({_describe(refusal)})."
            )
            _warn_once(
                self.directory,
                "directory",
                "Not using %s as the gitlab-botocore credentials cache: %s The cache is off; "
                "credentials come from STS.",
                self.directory,
                reason,
            )
            yield None
            return
        try:
            yield dir_fd
        finally:
            os.close(dir_fd)

    def _open_directory(self) -> int:
        """Open the cache directory (creating it 0700) without following a link; check it."""
        parent, name = os.path.split(self.directory)
        if name in ("", ".", ".."):
            raise _UnsafeDirectoryError(
                f"it names no directory of its own. Set {EnvVar.CACHE} to one."
            )
        try:
            # The parents may be links (``~/.cache`` on another disk); the last component,
            # the one this library creates and trusts, never is.
            os.makedirs(parent, mode=DIRECTORY_MODE, exist_ok=True)
            parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise _UnsafeDirectoryError(
                f"its parent directory cannot be used ({_describe(error)}). "
                f"Point {EnvVar.CACHE} at a directory of your own."
            ) from None
        try:
            _check_parent(parent_fd, parent)
            created = False
            try:
                # mkdir never follows a link at its last component: a planted link makes it
                # fail with EEXIST, and the open below refuses the link.
                os.mkdir(name, DIRECTORY_MODE, dir_fd=parent_fd)
                created = True
            except FileExistsError:
                pass
            except OSError as error:
                raise _UnsafeDirectoryError(
                    f"it cannot be created ({_describe(error)}). "
                    f"Point {EnvVar.CACHE} at a directory you can create."
                ) from None
            try:
                dir_fd = os.open(
                    name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd
                )
            except OSError as error:
                raise _UnsafeDirectoryError(_why_not_a_directory(parent_fd, name, error)) from None
        finally:
            os.close(parent_fd)
        try:
            _check_directory(dir_fd, self.directory, created)
        except BaseException:
            os.close(dir_fd)
            raise
        return dir_fd

    # -- the files ---------------------------------------------------------------------------

    def _read(self, dir_fd: int, name: str) -> tuple[IssuedCredentials, float] | None:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError as error:
            if error.errno in _PLANTED_ERRNOS:
                self._warn_planted_at(dir_fd, name)
            raise
        try:
            info = os.fstat(fd)
            if not _private_regular_file(info):
                self._warn_planted(name, info)
                return None
            if info.st_size > MAX_ENTRY_BYTES:
                raise ValueError("entry too large")
            payload = os.read(fd, MAX_ENTRY_BYTES + 1)
        finally:
            os.close(fd)
        if len(payload) > MAX_ENTRY_BYTES:
            raise ValueError("entry too large")
        document: Any = json.loads(payload.decode("utf-8"))
        if not isinstance(document, dict):
            raise TypeError("entry is not a JSON object")
        if document["version"] != FORMAT_VERSION:
            raise ValueError("other format version")
        expiration = datetime.datetime.fromisoformat(_text(document["expiration"]))
        if expiration.tzinfo is None:
            raise ValueError("expiration without time zone")
        issued = IssuedCredentials(
            access_key=_text(document["access_key"]),
            secret_key=_text(document["secret_key"]),
            token=_text(document["token"]),
            expiration=expiration.astimezone(datetime.timezone.utc),
            assumed_role_arn=_text(document["assumed_role_arn"]),
            session_name=_text(document["session_name"]),
        )
        stored_at = document["stored_at"]
        if isinstance(stored_at, bool) or not isinstance(stored_at, (int, float)):
            raise TypeError("stored_at")
        return issued, float(stored_at)

    def _warn_planted(self, name: str, info: os.stat_result) -> None:
        """Something the cache did not make sits at one of its names: say so once."""
        _warn_once(
            self.directory,
            name,
            "Ignoring %s in the gitlab-botocore credentials cache %s: it is %s, not a private "
            "regular file of the current user. Something else wrote there; remove it and "
            "check who can write to the directory.",
            name[:12] + "..." + name[64:],
            self.directory,
            _kind(info),
        )

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key`` (best effort: after a long wait, go ahead)."""
        name = f"{_checked_key(key)}.lock"
        with self._directory() as dir_fd:
            if dir_fd is None:
                yield
                return
            try:
                fd = os.open(
                    name,
                    os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                    ENTRY_MODE,
                    dir_fd=dir_fd,
                )
            except OSError as error:
                if error.errno in _PLANTED_ERRNOS:
                    self._warn_planted_at(dir_fd, name)
                logger.debug("No cache lock (%s); fetching without.", _describe(error))
                yield
                return
            try:
                info = os.fstat(fd)
                if not _private_regular_file(info):
                    self._warn_planted(name, info)
                    yield
                    return
                if stat.S_IMODE(info.st_mode) != ENTRY_MODE:
                    with contextlib.suppress(OSError):  # a strict umask: keep it usable
                        os.fchmod(fd, ENTRY_MODE)
                _acquire(fd)
                yield
            finally:
                os.close(fd)  # also releases the lock

    def _warn_planted_at(self, dir_fd: int, name: str) -> None:
        with contextlib.suppress(OSError):
            self._warn_planted(name, os.stat(name, dir_fd=dir_fd, follow_symlinks=False))

    def _prune(self, dir_fd: int) -> None:
        """Remove the cache's own entries, locks and temporary files too old to be of use.

        Anything else in the directory (another program's files, links, subdirectories)
        is left alone.
        """
        cutoff = time.time() - STALE_AFTER_SECONDS
        try:
            with os.scandir(dir_fd) as entries:
                stale = []
                for entry in entries:
                    if not _OWN_NAME.fullmatch(entry.name):
                        continue
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                        stale.append(entry.name)
            for name in stale:
                os.unlink(name, dir_fd=dir_fd)
        except OSError as error:
            logger.debug("Could not prune the credentials cache: %s", _describe(error))


def _checked_key(key: str) -> str:
    # A key is only ever a cache_key(); anything else could name a path outside the cache.
    if not _KEY.fullmatch(key):
        raise ValueError("a cache key is 64 lowercase hex digits")
    return key


def _check_parent(parent_fd: int, parent: str) -> None:
    info = os.fstat(parent_fd)
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        # Anyone could rename the cache directory away and put something else in its place.
        raise _UnsafeDirectoryError(
            f"its parent {parent} is writable by every user and lacks the sticky bit. "
            "Use a directory under your home or the job's own directory, or "
            f"`chmod +t {parent}`."
        )


def _why_not_a_directory(parent_fd: int, name: str, error: OSError) -> str:
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        return f"it cannot be opened ({_describe(error)})."
    if stat.S_ISLNK(info.st_mode):
        return (
            "it is a symbolic link, and the cache never follows one (it could lead the "
            "credentials into a directory someone else chose). Remove the link, or point "
            f"{EnvVar.CACHE} at a directory that no other user or job can create first."
        )
    if not stat.S_ISDIR(info.st_mode):
        kind = "a file" if stat.S_ISREG(info.st_mode) else _kind(info)
        return f"it is {kind}, not a directory. Point {EnvVar.CACHE} elsewhere."
    return f"it cannot be opened ({_describe(error)})."


def _check_directory(dir_fd: int, path: str, created: bool) -> None:
    info = os.fstat(dir_fd)
    if info.st_uid != os.geteuid():
        raise _UnsafeDirectoryError(
            f"it is owned by uid {info.st_uid}, not by the current user (uid {os.geteuid()}). "
            f"Point {EnvVar.CACHE} at a directory of your own."
        )
    mode = stat.S_IMODE(info.st_mode)
    if created and mode != DIRECTORY_MODE and not mode & 0o077:
        # A strict umask took owner bits from the directory just made; give them back.
        os.fchmod(dir_fd, DIRECTORY_MODE)
        mode = DIRECTORY_MODE
    if mode != DIRECTORY_MODE:
        raise _UnsafeDirectoryError(
            f"its mode is {mode:04o}; it must be exactly 0700 (owner only). "
            f"Run `chmod 700 {path}` or point {EnvVar.CACHE} at a private directory."
        )


def _private_regular_file(info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077


def _fresh(key: str, issued: IssuedCredentials, stored_at: float) -> bool:
    expires = issued.expiration.timestamp()
    now = time.time()
    # No STS session lasts longer than 12 hours: an entry promising more was not written
    # by this library (or the clock jumped), and is not trusted.
    longest = MAX_DURATION_SECONDS + CLOCK_SKEW_SECONDS
    if not (
        stored_at <= now + CLOCK_SKEW_SECONDS
        and stored_at < expires
        and expires - stored_at <= longest
        and expires - now <= longest
    ):
        logger.debug(
            "Ignoring cache entry %s...: stored in the future or expiring more than %d s ahead.",
            key[:12],
            MAX_DURATION_SECONDS,
        )
        return False
    margin = min(ADVISORY_REFRESH_SECONDS, max(expires - stored_at, 0.0) / 2)
    if expires - now <= margin:
        logger.debug("Ignoring cache entry %s...: close to expiry.", key[:12])
        return False
    return True


_FILE_TYPES = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def _kind(info: os.stat_result) -> str:
    for is_type, kind in _FILE_TYPES:
        if is_type(info.st_mode):
            return kind
    if info.st_uid != os.geteuid():
        return f"a file of uid {info.st_uid}"
    return f"a file with mode {stat.S_IMODE(info.st_mode):04o}"


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    if _CONTROL_CHARACTERS.search(value):
        # A newline in a value would become a new line in `env --format dotenv` output.
        raise ValueError("control character in a cached value")
    return value


def _acquire(fd: int) -> None:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                logger.debug(
                    "Waited %.0f s for the cache lock; fetching anyway.", LOCK_WAIT_SECONDS
                )
                return
            time.sleep(LOCK_POLL_BACKOFF.seconds(attempt))
        except OSError as error:  # e.g. a file system without locks
            logger.debug("Cache lock unavailable (%s); fetching without.", _describe(error))
            return
