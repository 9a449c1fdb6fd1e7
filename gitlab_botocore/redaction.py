"""Keep the ID token and credentials out of botocore's DEBUG logs.

At DEBUG, botocore logs request parameters and bodies (``botocore.endpoint``) and
response bodies (``botocore.parsers``), which for our STS call contain the web
identity token, the secret key and the session token. A filter on those loggers
replaces every secret the library has seen with ``<redacted>``. Filters only run
for records that pass the level check, so this costs nothing unless DEBUG is on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

REDACTED = "<redacted>"
# Loggers whose records can carry request or response bodies.
_BODY_LOGGERS = (
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.hooks",
    "botocore.retryhandler",
    "botocore.httpsession",
    "botocore.awsrequest",
    "urllib3.connectionpool",
)
_MIN_SECRET_LENGTH = 8  # short strings would redact unrelated text


class _SecretFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__("gitlab_botocore")
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str | None]) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_LENGTH)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        found = [secret for secret in tuple(secrets) if secret in message]
        for secret in found:
            message = message.replace(secret, REDACTED)
        if found:
            record.msg, record.args = message, ()
        return True


_filter = _SecretFilter()
for _name in _BODY_LOGGERS:
    logging.getLogger(_name).addFilter(_filter)


def redact_in_logs(*values: str | None) -> None:
    """Never let ``values`` appear in the records of botocore's body-logging loggers."""
    _filter.add(values)
