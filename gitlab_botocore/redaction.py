"""Keep the ID token and credentials out of botocore's DEBUG logs.

At DEBUG, botocore logs request parameters and bodies (``botocore.endpoint``) and
response bodies (``botocore.parsers``), which for our STS call contain the web
identity token, the secret key and the session token. A filter on those loggers
blanks the values of those fields wherever they appear (XML, form or dict form),
and any other occurrence of a secret the library has handled. Filters only run
for records that pass the level check, so this costs nothing unless DEBUG is on.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable

REDACTED = "<redacted>"
# Loggers whose records can carry request or response bodies, or signed headers.
_BODY_LOGGERS = (
    "botocore.auth",
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.hooks",
    "botocore.retryhandler",
    "botocore.httpsession",
    "botocore.awsrequest",
    "urllib3.connectionpool",
)
_MIN_SECRET_LENGTH = 8  # short strings would redact unrelated text
_FIELDS = "SecretAccessKey|SessionToken|WebIdentityToken"


@functools.cache
def _secret_fields() -> tuple[tuple[re.Pattern[str], str], ...]:
    # Compiled on the first record that passes a DEBUG level check, not at import: a job
    # that logs nothing does not pay for them (about 0.4 ms of its cold start).
    return (
        (re.compile(rf"<({_FIELDS})>[^<]*</"), rf"<\1>{REDACTED}</"),  # XML bodies
        (re.compile(rf"(['\"]({_FIELDS})['\"]:\s*['\"])[^'\"]*"), rf"\1{REDACTED}"),  # dicts
        (re.compile(rf"\b({_FIELDS})=[^&'\"\s]*"), rf"\1={REDACTED}"),  # form bodies
        (re.compile(r"(x-amz-security-token[:=])[^&'\"\s]*", re.I), rf"\1{REDACTED}"),  # signing
    )


class _SecretFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str | None]) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_LENGTH)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            original = message = record.getMessage()
        except Exception:  # a broken record is logging's problem, not ours
            return True
        for pattern, replacement in _secret_fields():
            message = pattern.sub(replacement, message)
        for secret in tuple(self._secrets):
            if secret in message:
                message = message.replace(secret, REDACTED)
        if message != original:
            record.msg, record.args = message, ()
        return True


_filter = _SecretFilter()
# Filters apply only to the logger they are attached to, not to its children: cover the
# known loggers plus every botocore and urllib3 logger that exists by now.
for _name in {
    *_BODY_LOGGERS,
    *(n for n in logging.root.manager.loggerDict if n.startswith(("botocore.", "urllib3."))),
}:
    logging.getLogger(_name).addFilter(_filter)


def redact_in_logs(*values: str | None) -> None:
    """Never let ``values`` appear in the records of botocore's body-logging loggers."""
    _filter.add(values)
