"""Scripted misbehaviour of the local STS: errors, garbage, latency, dropped connections.

Queue :class:`Fault` values with ``VerifyingSTS.inject`` (or the pytest plugin's
``fake_gitlab_aws.inject``); each ``AssumeRoleWithWebIdentity`` request consumes one.
"""

from __future__ import annotations

import dataclasses

from gitlab_botocore.testing.sts_wire import MSG_NOT_AUTHORIZED, MSG_VERIFICATION_KEY

__all__ = [
    "ACCESS_DENIED",
    "DROPPED_CONNECTION",
    "IDP_COMMUNICATION_ERROR",
    "INTERNAL_FAILURE",
    "SERVICE_UNAVAILABLE",
    "THROTTLING",
    "VERIFICATION_KEY_UNAVAILABLE",
    "Fault",
]


@dataclasses.dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour for the next ``AssumeRoleWithWebIdentity`` request.

    ``delay`` is slept first. Then ``drop`` closes the connection without an answer,
    ``body`` is sent as it is (with ``status`` and ``content_type``: an error page, garbage,
    a doctored STS document), a non-empty ``code`` is answered as an STS error, and
    otherwise the request proceeds.
    """

    code: str | None
    message: str = "Injected fault"
    status: int = 400
    delay: float = 0.0
    drop: bool = False
    body: bytes | None = None
    content_type: str = "text/xml"

    @classmethod
    def reply(cls, body: bytes | str, status: int = 200, content_type: str = "text/xml") -> Fault:
        """Answer with exactly ``body``, as a proxy, a captive portal or a broken STS might."""
        data = body.encode() if isinstance(body, str) else body
        return cls(code=None, status=status, body=data, content_type=content_type)

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Only slow the request down."""
        return cls(code=None, delay=seconds)

    @classmethod
    def throttling(cls) -> Fault:
        return cls("Throttling", "Rate exceeded", 400)

    @classmethod
    def idp_communication_error(cls) -> Fault:
        return cls(
            "IDPCommunicationError",
            "The request could not be fulfilled because the identity provider is not reachable.",
            400,
        )

    @classmethod
    def verification_key_unavailable(cls) -> Fault:
        return cls("InvalidIdentityToken", MSG_VERIFICATION_KEY, 400)

    @classmethod
    def access_denied(cls) -> Fault:
        return cls("AccessDenied", MSG_NOT_AUTHORIZED, 403)

    @classmethod
    def internal_failure(cls) -> Fault:
        return cls("InternalFailure", "An internal error occurred.", 500)

    @classmethod
    def service_unavailable(cls) -> Fault:
        return cls("ServiceUnavailable", "Service is unavailable.", 503)

    @classmethod
    def dropped_connection(cls) -> Fault:
        return cls(code=None, drop=True)


THROTTLING = Fault.throttling()
IDP_COMMUNICATION_ERROR = Fault.idp_communication_error()
VERIFICATION_KEY_UNAVAILABLE = Fault.verification_key_unavailable()
ACCESS_DENIED = Fault.access_denied()
INTERNAL_FAILURE = Fault.internal_failure()
SERVICE_UNAVAILABLE = Fault.service_unavailable()
DROPPED_CONNECTION = Fault.dropped_connection()
