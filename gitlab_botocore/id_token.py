"""The GitLab ID token as a value object; :mod:`gitlab_botocore.token_source` finds it.

Claims are decoded *without* checking the signature: AWS STS verifies the token
against the issuer's keys; we only read it to choose a session name, fail early on an
expired token and explain errors. Decoding needs only base64url and JSON, so it does
not import PyJWT, which imports ``cryptography`` when that is installed (tens of
milliseconds of a job's cold start). It checks the token's form as PyJWT does and
refuses what PyJWT refuses, with the same reasons.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .exceptions import TokenError, TokenExpiredError

JOB_TIMEOUT_HINT = (
    "A GitLab ID token lives until the job's timeout and cannot be re-minted inside the job: "
    "raise the job's timeout or split the work into shorter jobs."
)
_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SUPPORTED_CRITICAL_HEADERS = frozenset({"b64"})


class IdToken:
    """A GitLab ID token and its (unverified) claims. ``repr`` never shows the token."""

    __slots__ = ("_claims", "_raw", "variable")

    def __init__(self, raw: str, claims: Mapping[str, Any], variable: str | None = None):
        self._raw = raw
        self._claims = dict(claims)
        self.variable = variable
        """The environment variable it was read from, if any."""

    @classmethod
    def parse(cls, raw: str, variable: str | None = None) -> IdToken:
        """Decode ``raw``; raise :class:`TokenError` naming ``variable`` if it is no JWT."""
        where = variable or "The ID token"
        raw = raw.strip()
        try:
            claims = _unverified_claims(raw)
        except _MalformedTokenError as error:
            # The reasons are fixed phrases; anything after a colon may quote the input.
            reason = str(error).split(":", 1)[0] or type(error).__name__
            raise TokenError(
                f"{where} does not hold a JSON Web Token ({reason}). It should be the value "
                "GitLab sets for a name declared under 'id_tokens:' in .gitlab-ci.yml, "
                "passed through unchanged.",
                variable=variable,
            ) from None
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not _is_timestamp(exp):
            raise TokenError(
                f"{where} has no valid 'exp' claim, so it is not a GitLab ID token. Declare "
                "the token under 'id_tokens:' in .gitlab-ci.yml.",
                variable=variable,
            )
        return cls(raw, claims, variable)

    @property
    def raw(self) -> str:
        """The encoded token. Secret: never log it."""
        return self._raw

    @property
    def claims(self) -> Mapping[str, Any]:
        return self._claims

    def _text(self, name: str) -> str | None:
        value = self._claims.get(name)
        return None if value is None else str(value)

    @property
    def issuer(self) -> str | None:
        return self._text("iss")

    @property
    def subject(self) -> str | None:
        return self._text("sub")

    @property
    def audience(self) -> tuple[str, ...]:
        aud = self._claims.get("aud")
        if aud is None:
            return ()
        return tuple(str(a) for a in aud) if isinstance(aud, list) else (str(aud),)

    @property
    def expires_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._claims["exp"], tz=datetime.timezone.utc)

    @property
    def project_id(self) -> str | None:
        return self._text("project_id")

    @property
    def pipeline_id(self) -> str | None:
        return self._text("pipeline_id")

    @property
    def job_id(self) -> str | None:
        return self._text("job_id")

    def has_audience_in(self, accepted: Iterable[str]) -> bool:
        """Whether one of the token's audiences is in ``accepted`` (trailing ``/`` ignored)."""
        wanted = {a.rstrip("/") for a in accepted}
        return any(a.rstrip("/") in wanted for a in self.audience)

    def seconds_left(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return (self.expires_at - now).total_seconds()

    def ensure_not_expired(self, now: datetime.datetime | None = None) -> None:
        """Raise :class:`TokenExpiredError` (saying when and why) if the token has expired."""
        left = self.seconds_left(now)
        if left > 0:
            return
        raise TokenExpiredError(
            f"The GitLab ID token in {self.variable or 'use'} expired at "
            f"{self.expires_at:%Y-%m-%d %H:%M:%S} UTC, {_duration(-left)} ago. " + JOB_TIMEOUT_HINT,
            variable=self.variable,
        )

    def describe(self) -> str:
        """The claims a person needs to debug a trust policy (none of them secret)."""
        return (
            f"iss={self.issuer!r}, aud={', '.join(self.audience) or None!r}, "
            f"sub={self.subject!r}, expires {self.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )

    def __repr__(self) -> str:
        return f"IdToken(variable={self.variable!r}, {self.describe()})"


class _MalformedTokenError(ValueError):
    """Why a string is not a compact JSON Web Token (PyJWT's ``DecodeError`` phrases)."""


def _unverified_claims(raw: str) -> dict[str, Any]:
    """The claims of the compact JWS ``raw``; its signature is not checked.

    Mirrors what ``jwt.decode(raw, options={"verify_signature": False})`` of PyJWT 2.15
    accepts and refuses, check for check and in the same order, so the error a user sees
    for a malformed token does not depend on whether PyJWT was imported.
    """
    # Lone surrogates (os.environ decodes undecodable bytes to them) must not escape as a
    # UnicodeEncodeError: kept as bytes, they fail the alphabet check below.
    token = raw.encode("utf-8", "surrogatepass")
    try:
        signing_input, signature_segment = token.rsplit(b".", 1)
        header_segment, payload_segment = signing_input.split(b".", 1)
    except ValueError:
        raise _MalformedTokenError("Not enough segments") from None
    header = _json_object(_base64url_segment(header_segment, "header"), "header")
    detached = header.get("b64", True) is False
    if detached and payload_segment:
        raise _MalformedTokenError("Payload segment must be empty when 'b64' is false.")
    payload = b"" if detached else _base64url_segment(payload_segment, "payload")
    _base64url_segment(signature_segment, "crypto")
    _check_header(header)
    if detached:
        critical = header.get("crit") or []
        if not isinstance(critical, list) or "b64" not in critical:
            raise _MalformedTokenError(
                "The 'b64' header parameter requires 'b64' to be listed in 'crit'."
            )
        # A detached payload travels beside the token: there are no claims to read.
        raise _MalformedTokenError(
            'It is required that you pass in a value for the "detached_payload" argument '
            "to decode a message having the b64 header set to false."
        )
    return _json_object(payload, "payload")


def _base64url_segment(segment: bytes, name: str) -> bytes:
    """Decode one segment; only canonical unpadded (or correctly padded) base64url passes."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if (
        padding > 2
        or (padding and len(segment) % 4)
        or len(stripped) % 4 == 1
        or stripped.translate(None, _BASE64URL_ALPHABET)  # any byte outside the alphabet
    ):
        raise _MalformedTokenError(f"Invalid {name} padding")
    try:
        decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    except (TypeError, binascii.Error):
        raise _MalformedTokenError(f"Invalid {name} padding") from None
    # Unused low bits set in the last character: another string for the same bytes.
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped:
        raise _MalformedTokenError(f"Invalid {name} padding")
    return decoded


def _json_object(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise _MalformedTokenError(f"Invalid {name} string: {error}") from None
    if not isinstance(value, dict):
        raise _MalformedTokenError(f"Invalid {name} string: must be a json object")
    return value


def _check_header(header: Mapping[str, Any]) -> None:
    if "kid" in header and not isinstance(header["kid"], str):
        raise _MalformedTokenError("Key ID header parameter must be a string")
    if "crit" not in header:
        return
    critical = header["crit"]
    if not isinstance(critical, list) or not critical:
        raise _MalformedTokenError("Invalid 'crit' header: must be a non-empty list")
    for extension in critical:
        if not isinstance(extension, str):
            raise _MalformedTokenError("Invalid 'crit' header: values must be strings")
        if extension not in _SUPPORTED_CRITICAL_HEADERS:
            raise _MalformedTokenError(f"Unsupported critical extension: {extension}")
        if extension not in header:
            raise _MalformedTokenError(f"Critical extension '{extension}' is missing from headers")


def _is_timestamp(value: float) -> bool:
    try:
        datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return False
    return True


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
