"""The STS wire format the local STS speaks: AWS's messages, reply documents, validation.

What :class:`~gitlab_botocore.testing.sts.VerifyingSTS` answers and what a
:class:`~gitlab_botocore.testing.faults.Fault` can send must read like real STS: the
``AssumeRoleWithWebIdentityResponse`` and ``ErrorResponse`` documents, AWS's wording of its
refusals, and the parameter checks STS makes before it looks at the token.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from xml.sax.saxutils import escape

__all__ = [
    "ACTION",
    "MSG_AUDIENCE",
    "MSG_BAD_SIGNATURE",
    "MSG_MAX_SESSION",
    "MSG_NOT_AUTHORIZED",
    "MSG_NOT_A_JWT",
    "MSG_NO_PROVIDER",
    "MSG_VERIFICATION_KEY",
    "STS_NAMESPACE",
    "ReplyError",
    "credentials_body",
    "error_body",
    "validation_problems",
]

ACTION = "AssumeRoleWithWebIdentity"
STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"

MSG_NO_PROVIDER = "No OpenIDConnect provider found in your account for {}"
# The double space is in AWS's own message.
MSG_VERIFICATION_KEY = (
    "Couldn't retrieve verification key from your identity provider,  please reference "
    "AssumeRoleWithWebIdentity documentation for requirements"
)
MSG_NOT_AUTHORIZED = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
MSG_BAD_SIGNATURE = "Signature verification failed"
MSG_NOT_A_JWT = (
    "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)"
)
MSG_AUDIENCE = "Incorrect token audience"
MSG_MAX_SESSION = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."

_SESSION_NAME = re.compile(r"[\w+=,.@-]*", re.ASCII)


class ReplyError(Exception):
    """An error reply of the local STS: STS error code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def credentials_body(
    access_key: str,
    secret_key: str,
    session_token: str,
    expiration: str,
    *,
    assumed_role_arn: str = "arn:aws:sts::123456789012:assumed-role/deploy/session",
    action: str = ACTION,
) -> bytes:
    """Render a successful ``AssumeRoleWithWebIdentity`` (or ``action``) answer, values as given.

    For doctored answers: ``Fault.reply(credentials_body(...))``.
    """
    return (
        f'<{action}Response xmlns="{STS_NAMESPACE}"><{action}Result>'
        f"<Credentials><AccessKeyId>{escape(access_key)}</AccessKeyId>"
        f"<SecretAccessKey>{escape(secret_key)}</SecretAccessKey>"
        f"<SessionToken>{escape(session_token)}</SessionToken>"
        f"<Expiration>{escape(expiration)}</Expiration></Credentials>"
        f"<AssumedRoleUser><Arn>{escape(assumed_role_arn)}</Arn>"
        "<AssumedRoleId>AROAEXAMPLE:session</AssumedRoleId></AssumedRoleUser>"
        f"</{action}Result><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
        f"</ResponseMetadata></{action}Response>"
    ).encode()


def error_body(code: str, message: str, status: int, request_id: str) -> bytes:
    """Render an STS ``ErrorResponse`` document."""
    kind = "Receiver" if status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}">'
        f"<Error><Type>{kind}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()


def validation_problems(params: Mapping[str, str]) -> list[str]:
    """What STS's parameter checks refuse in ``params``, in its words (empty: all good)."""
    problems: list[str] = []

    def bad(name: str, shown: str, constraint: str) -> None:
        problems.append(f"Value {shown} at '{name}' failed to satisfy constraint: {constraint}")

    def length(name: str, value: str | None, low: int, high: int, *, secret: bool = False) -> None:
        shown = "null" if value is None else "'***'" if secret else f"'{value}'"
        if value is None:
            bad(name, shown, "Member must not be null")
        elif len(value) < low:
            bad(name, shown, f"Member must have length greater than or equal to {low}")
        elif len(value) > high:
            bad(name, shown, f"Member must have length less than or equal to {high}")

    length("roleArn", params.get("RoleArn"), 20, 2048)
    session_name = params.get("RoleSessionName")
    length("roleSessionName", session_name, 2, 64)
    if session_name is not None and not _SESSION_NAME.fullmatch(session_name):
        bad(
            "roleSessionName",
            f"'{session_name}'",
            r"Member must satisfy regular expression pattern: [\w+=,.@-]*",
        )
    length("webIdentityToken", params.get("WebIdentityToken"), 4, 20000, secret=True)
    policy = params.get("Policy")
    if policy is not None:
        length("policy", policy, 1, 2048, secret=True)
    duration = params.get("DurationSeconds")
    if duration is not None:
        try:
            seconds = int(duration)
        except ValueError:
            bad("durationSeconds", f"'{duration}'", "Member must be an integer")
        else:
            if seconds < 900:
                bad(
                    "durationSeconds",
                    f"'{duration}'",
                    "Member must have value greater than or equal to 900",
                )
            elif seconds > 43200:
                bad(
                    "durationSeconds",
                    f"'{duration}'",
                    "Member must have value less than or equal to 43200",
                )
    return problems
