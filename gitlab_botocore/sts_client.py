"""Making the STS clients without sharing a caller's botocore session across threads,
and warning before the ID token travels unencrypted.

botocore sessions are not thread-safe (botocore 1.27's ``ComponentLocator`` raises
``KeyError`` when two threads build the same component), while botocore clients are.
The exchange runs in whichever thread refreshes, so it uses the caller's session only
when it is built, in the caller's thread; later clients come from a
:class:`PrivateSession` configured like the caller's.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import weakref
from typing import Any
from urllib.parse import urlsplit

import botocore.session
from botocore.config import Config

from .once import Once
from .settings import EnvVar

plain_http_logger = logging.getLogger(f"{__name__}.plain_http")
"""Warns when the ID token is sent over plain ``http://``; silence it by its level."""

LOOPBACK_NAMES = frozenset({"localhost"})


class PrivateSession:
    """A botocore session of our own, configured like a caller's session.

    Built from what code set on the caller's session (profile, region, CA bundle,
    config file, default client config) and its user agent, read at construction in the
    caller's thread; the environment and config file it reads itself. Clients are made
    one at a time, from any thread, without touching the caller's session. Event
    handlers registered on the caller's session do not apply.
    """

    def __init__(self, session: Any) -> None:
        self._variables = dict(session.instance_variables())
        default_config = session.get_default_client_config()
        # aiobotocore's AioConfig carries options a plain botocore session does not know.
        self._default_config = default_config if type(default_config) is Config else None
        self._user_agent = (
            session.user_agent_name,
            session.user_agent_version,
            session.user_agent_extra,
        )
        self._session: botocore.session.Session | None = None
        self._lock = threading.Lock()  # botocore sessions are not thread-safe
        _PRIVATE_SESSIONS.add(self)

    def create_client(self, *args: Any, **kwargs: Any) -> Any:
        """``create_client`` of the private session; the session is made on first use."""
        with self._lock:
            if self._session is None:
                session = botocore.session.Session()
                for name, value in self._variables.items():
                    session.set_config_variable(name, value)
                if self._default_config is not None:
                    session.set_default_client_config(self._default_config)
                name, version, extra = self._user_agent
                session.user_agent_name = name
                session.user_agent_version = version
                session.user_agent_extra = extra
                self._session = session
            return self._session.create_client(*args, **kwargs)


_PRIVATE_SESSIONS: weakref.WeakSet[PrivateSession] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held a lock while it made a client.
    for private in list(_PRIVATE_SESSIONS):
        private._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_warned_plain_http = Once()


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost``, 127.0.0.0/8 or ::1."""
    host = host.strip("[]").rstrip(".").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def warn_if_plain_http(endpoint_url: str) -> None:
    """Warn once per process and endpoint before the ID token goes out unencrypted."""
    parts = urlsplit(endpoint_url)
    if parts.scheme.lower() != "http" or is_loopback(parts.hostname or ""):
        return
    endpoint = f"http://{parts.netloc}"
    if not _warned_plain_http.first(endpoint):
        return
    plain_http_logger.warning(
        "The GitLab ID token is sent to STS at %s over plain HTTP: anyone on the network "
        "path can read it and use it until it expires. Use an https:// endpoint (%s, %s). "
        "If this is intended, as for LocalStack running as a CI service, silence this "
        "warning with logging.getLogger(%r).setLevel(logging.ERROR).",
        endpoint,
        EnvVar.ENDPOINT_URL_STS,
        EnvVar.ENDPOINT_URL,
        plain_http_logger.name,
    )
