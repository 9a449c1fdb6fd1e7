"""Keep the ID token and credentials out of logs, error messages and tracebacks.

At DEBUG, botocore logs request parameters and bodies (``botocore.endpoint``) and
response bodies (``botocore.parsers``), which for our STS call contain the web
identity token, the secret key and the session token. A filter on those loggers
blanks the values of those fields wherever they appear (XML, form or dict form),
and any other occurrence of a secret the library has handled. Filters only run
for records that pass the level check, so this costs nothing unless DEBUG is on.

:func:`redact` applies the same rules to text we put into exceptions (STS error
messages, excerpts of unexpected replies). :class:`Secret` makes a secret safe to
hold in a local variable: tools that print locals (``pytest --showlocals``, error
trackers) show its ``repr``, which is redacted.
"""

from __future__ import annotations

import functools
import logging
import os
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
    # Compiled on first use (a DEBUG record, an error message), not at import: a job that
    # logs nothing and fails nothing does not pay for them.
    return (
        # XML bodies: everything up to the element's end tag, whatever the content's shape
        # (CDATA sections, child elements; botocore's parser reads all of them as the
        # secret), the tag's attributes or namespace prefix. An element cut short (a
        # truncated reply) is blanked to the end of the text; an empty one (<x/>) is left.
        # [^<>] keeps the scan for the tag's end linear on text full of unclosed tags.
        (
            re.compile(
                rf"(<(?:[\w.-]+:)?({_FIELDS})\b[^<>]*(?<!/)>).*?(?=</(?:[\w.-]+:)?\2\s*>|\Z)",
                re.S,
            ),
            rf"\1{REDACTED}",
        ),
        (re.compile(rf"(['\"]({_FIELDS})['\"]:\s*['\"])[^'\"]*"), rf"\1{REDACTED}"),  # dicts
        (re.compile(rf"\b({_FIELDS})=[^&'\"\s]*"), rf"\1={REDACTED}"),  # form bodies
        (re.compile(r"(x-amz-security-token[:=])[^&'\"\s]*", re.I), rf"\1{REDACTED}"),  # signing
        # Anything shaped like a JWT (header and payload are base64url JSON objects).
        (re.compile(r"\beyJ[\w-]{2,}\.eyJ[\w-]{2,}\.[\w-]*"), REDACTED),
    )


class Secret(str):
    """A string whose ``repr`` never shows it; ``str()``, ``==`` and encoding are unchanged.

    botocore accepts it wherever a ``str`` parameter goes and sends the real value.
    Operations that build new strings (slicing, concatenation) return plain ``str``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return REDACTED


class _SecretFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str | None]) -> None:
        with self._lock:
            self._secrets.update(str(v) for v in values if v and len(v) >= _MIN_SECRET_LENGTH)

    def redact(self, text: str) -> str:
        for pattern, replacement in _secret_fields():
            text = pattern.sub(replacement, text)
        for secret in tuple(self._secrets):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            original = record.getMessage()
        except Exception:  # a broken record is logging's problem, not ours
            return True
        message = self.redact(original)
        if message != original:
            record.msg, record.args = message, ()
        return True


_filter = _SecretFilter()


def _after_fork_in_child() -> None:
    _filter._lock = threading.Lock()  # a refresh thread of the parent may have held it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
# Filters apply only to the logger they are attached to, not to its children: cover the
# known loggers plus every botocore and urllib3 logger that exists by now.
for _name in {
    *_BODY_LOGGERS,
    *(n for n in logging.root.manager.loggerDict if n.startswith(("botocore.", "urllib3."))),
}:
    logging.getLogger(_name).addFilter(_filter)


def redact_in_logs(*values: str | None) -> None:
    """Never let ``values`` appear in the records of botocore's body-logging loggers,
    nor in text passed through :func:`redact`."""
    _filter.add(values)


def redact(text: str) -> str:
    """``text`` without secret fields, JWTs or any secret registered with :func:`redact_in_logs`."""
    return _filter.redact(text)
