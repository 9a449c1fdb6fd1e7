"""The opt-in cross-process credentials cache (``GITLAB_BOTOCORE_CACHE``).

A job often runs many short Python processes; with the cache, the first one calls
STS and the others read its credentials from disk. Entries are JSON files named by
:func:`cache_key`, a hash that covers the ID token itself: another job, or the same
job with another role, duration or policy, never finds them.

Safety rules: the directory must be owned by the current user and closed to group
and others (it is created 0700 when missing; an open one is refused with one
warning and the cache stays off); entries are written 0600 through a temporary file
and an atomic rename; an unreadable, partial or corrupt entry is a cache miss. A
process about to call STS holds a lock on the key, so processes starting together
make one call, not one each. The cache needs POSIX (``dir_fd`` and ``flock``);
elsewhere it stays off.

Freshness: an entry is served while more than ``min(15 min, half its lifetime)`` is
left. Past that point the process that stored it is about to refresh it (refreshes
start ``min(15 min, a quarter of the lifetime)`` before expiry, see
:mod:`gitlab_botocore.credentials`), so serving it would only defer that refresh to
STS; and a process that loads an entry still has at least half of its refresh lead
time to renew it calmly.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

from .credentials import ADVISORY_REFRESH_SECONDS
from .exchange import IssuedCredentials
from .id_token import IdToken
from .redaction import redact_in_logs
from .settings import MAX_DURATION_SECONDS, Settings

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
LOCK_WAIT_SECONDS = 30.0
"""How long a process waits for another one's STS call before making its own."""
MAX_ENTRY_BYTES = 64 * 1024
# Entries and locks older than the longest STS session are certainly useless.
STALE_AFTER_SECONDS = MAX_DURATION_SECONDS + 3600
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

_SUPPORTED = (
    fcntl is not None
    and hasattr(os, "geteuid")
    and {os.open, os.rename, os.unlink} <= os.supports_dir_fd  # os.replace too
    and os.scandir in os.supports_fd
)
_warned: set[str] = set()
_warned_lock = threading.Lock()


def cache_key(settings: Settings, token: IdToken) -> str:
    """The file name stem for these settings and this token: a SHA-256, hex.

    Covers everything that changes what STS would return: the token (raw), role,
    session name, duration, policies, chained roles, region, endpoint and the CI job id.
    """
    material = {
        "version": FORMAT_VERSION,
        "token": token.raw,
        "role_arn": settings.role_arn,
        "role_session_name": settings.role_session_name,
        "duration_seconds": settings.duration_seconds,
        "policy": settings.policy,
        "policy_arns": list(settings.policy_arns),
        "chain_role_arns": list(settings.chain_role_arns),
        "region": settings.region,
        "endpoint_url": settings.endpoint_url,
        "job_id": token.job_id,
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _warn_once(directory: str, message: str, *args: object) -> None:
    with _warned_lock:
        if directory in _warned:
            return
        _warned.add(directory)
    logger.warning(message, *args)


class CredentialCache:
    """Credentials on disk in ``directory``, shared by the processes of one user.

    Never raises for cache trouble: every failure is logged and turns into a miss.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    # -- the public operations -----------------------------------------------------------

    def load(self, key: str) -> IssuedCredentials | None:
        """The entry for ``key`` if it exists, is intact and is fresh enough; else ``None``."""
        with self._directory() as dir_fd:
            if dir_fd is None:
                return None
            try:
                entry = self._read(dir_fd, f"{key}.json")
                if entry is None:
                    return None
                issued, stored_at = entry
                expires = issued.expiration.timestamp()
            except FileNotFoundError:
                return None
            except (OSError, ValueError, KeyError, TypeError, OverflowError) as error:
                logger.debug("Ignoring cache entry %s...: %s.", key[:12], type(error).__name__)
                return None
        margin = min(ADVISORY_REFRESH_SECONDS, max(expires - stored_at, 0.0) / 2)
        if expires - time.time() <= margin:
            logger.debug("Ignoring cache entry %s...: close to expiry.", key[:12])
            return None
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
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW,
                    0o600,
                    dir_fd=dir_fd,
                )
                with os.fdopen(fd, "wb") as file:
                    file.write(payload)
                os.replace(temporary, f"{key}.json", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as error:
                logger.warning(
                    "Could not write to the credentials cache in %s (%s); continuing without.",
                    self.directory,
                    error.strerror or type(error).__name__,
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

        Working relative to one descriptor means the directory checked is the one used.
        """
        if not _SUPPORTED:
            _warn_once(
                self.directory,
                "The gitlab-botocore credentials cache needs a POSIX system; it is off.",
            )
            yield None
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            _warn_once(
                self.directory,
                "Cannot use %s as the gitlab-botocore credentials cache (%s); the cache is off.",
                self.directory,
                error.strerror or type(error).__name__,
            )
            yield None
            return
        try:
            info = os.fstat(dir_fd)
            if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                _warn_once(
                    self.directory,
                    "Not using %s as the gitlab-botocore credentials cache: it must be owned "
                    "by the current user and closed to group and others (chmod 700). The "
                    "cache is off.",
                    self.directory,
                )
                yield None
                return
            yield dir_fd
        finally:
            os.close(dir_fd)

    @staticmethod
    def _read(dir_fd: int, name: str) -> tuple[IssuedCredentials, float] | None:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
        try:
            info = os.fstat(fd)
            if (
                not stat.S_ISREG(info.st_mode)
                or info.st_uid != os.geteuid()
                or info.st_mode & 0o077
            ):
                logger.debug("Ignoring cache entry %s: not a private regular file.", name[:12])
                return None
            payload = os.read(fd, MAX_ENTRY_BYTES + 1)
        finally:
            os.close(fd)
        if len(payload) > MAX_ENTRY_BYTES:
            raise ValueError("entry too large")
        document: Any = json.loads(payload.decode("utf-8"))
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

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key`` (best effort: after a long wait, go ahead)."""
        with self._directory() as dir_fd:
            if dir_fd is None:
                yield
                return
            try:
                fd = os.open(
                    f"{key}.lock", os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600, dir_fd=dir_fd
                )
            except OSError as error:
                logger.debug("No cache lock (%s); fetching without.", type(error).__name__)
                yield
                return
            try:
                _acquire(fd)
                yield
            finally:
                os.close(fd)  # also releases the lock

    def _prune(self, dir_fd: int) -> None:
        """Remove entries, locks and temporary files too old to be of any use."""
        cutoff = time.time() - STALE_AFTER_SECONDS
        try:
            with os.scandir(dir_fd) as entries:
                stale = [
                    entry.name
                    for entry in entries
                    if entry.name.endswith((".json", ".lock", ".tmp"))
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff
                ]
            for name in stale:
                os.unlink(name, dir_fd=dir_fd)
        except OSError as error:
            logger.debug("Could not prune the credentials cache: %s", type(error).__name__)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def _acquire(fd: int) -> None:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                logger.debug(
                    "Waited %.0f s for the cache lock; fetching anyway.", LOCK_WAIT_SECONDS
                )
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        except OSError as error:  # e.g. a file system without locks
            logger.debug("Cache lock unavailable (%s); fetching without.", type(error).__name__)
            return
