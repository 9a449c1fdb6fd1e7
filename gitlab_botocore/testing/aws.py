"""Offline AWS for tests: a moto server with the verifying STS in front of it.

:class:`FakeAWS` starts both servers as one pair and sets up what a job needs in IAM: the
GitLab OIDC provider and roles with trust policies (:func:`trust_policy_for`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from gitlab_botocore.testing._server import StartStop
from gitlab_botocore.testing.sts import (
    DUMMY_ACCESS_KEY,
    DUMMY_SECRET_KEY,
    REGION,
    VerifyingSTS,
)
from gitlab_botocore.tools.trust_policy import build_trust_policy, has_wildcard

__all__ = ["FakeAWS", "trust_policy_for"]


def trust_policy_for(
    provider_arn: str,
    *,
    sub: str | list[str],
    aud: str | list[str] | None = None,
    like: bool | None = None,
) -> dict[str, Any]:
    """The policy :func:`~gitlab_botocore.tools.trust_policy.build_trust_policy` writes, for tests.

    It admits tokens of this provider whose ``sub`` is one of ``sub`` (with ``*`` or ``?``: a
    ``StringLike`` pattern) and whose ``aud`` is ``aud``; ``aud=None`` leaves the audience
    unconditioned, a lax policy that some tests need. ``like=False`` refuses patterns (a
    wildcard compared literally would match only itself).
    """
    subjects = [sub] if isinstance(sub, str) else list(sub)
    if like is False and any(has_wildcard(s) for s in subjects):
        raise ValueError("like=False compares '*' and '?' literally: write that policy by hand")
    policy = build_trust_policy(
        provider_arn=provider_arn,
        audience="unconditioned" if aud is None else aud,
        subjects=subjects,
    )
    if aud is None:
        for statement in policy["Statement"]:
            conditions = statement["Condition"]
            equals = conditions["StringEquals"]
            for key in [k for k in equals if k.endswith(":aud")]:
                del equals[key]
            if not equals:
                del conditions["StringEquals"]
    return policy


class FakeAWS(StartStop):
    """A moto server with a :class:`VerifyingSTS` in front of it.

    ``moto_url`` serves IAM, S3 and the rest; ``sts_url`` is the verifying STS. moto keeps
    its state per process, so names (roles, buckets, providers) must be unique per process.
    """

    account_id: ClassVar[str] = "123456789012"

    def __init__(self) -> None:
        self._moto: Any = None
        self._sts: VerifyingSTS | None = None
        self._iam: Any = None

    def start(self) -> FakeAWS:
        """Start moto on a free port, then the verifying STS."""
        if self._moto is not None:
            raise RuntimeError("FakeAWS is already running")
        from moto.server import ThreadedMotoServer

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        self._moto = moto
        try:
            self._sts = VerifyingSTS(self.moto_url).start()
            self._iam = self.client("iam")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers; calling it again does nothing."""
        sts, moto = self._sts, self._moto
        self._sts = self._moto = self._iam = None
        if sts is not None:
            sts.stop()
        if moto is not None:
            moto.stop()

    @property
    def moto_url(self) -> str:
        if self._moto is None:
            raise RuntimeError("FakeAWS is not running; call start() first")
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    @property
    def sts(self) -> VerifyingSTS:
        """The verifying STS front, for faults, latency and recorded calls."""
        if self._sts is None:
            raise RuntimeError("FakeAWS is not running; call start() first")
        return self._sts

    @property
    def sts_url(self) -> str:
        return self.sts.url

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` on moto; dummy keys unless ``kwargs`` give others.

        Explicit keys mean no credential chain (ours included) is ever consulted.
        """
        import boto3

        options: dict[str, Any] = {
            "endpoint_url": self.moto_url,
            "region_name": REGION,
            "aws_access_key_id": DUMMY_ACCESS_KEY,
            "aws_secret_access_key": DUMMY_SECRET_KEY,
            **kwargs,
        }
        return boto3.session.Session(region_name=options["region_name"]).client(service, **options)

    def create_oidc_provider(self, issuer_url: str, client_ids: Iterable[str] = ()) -> str:
        """Register ``issuer_url`` as an IAM OIDC provider and return its ARN.

        ``client_ids`` (the accepted audiences) default to the issuer URL itself.
        """
        ids = list(client_ids) or [issuer_url]
        response = self._iam_client().create_open_id_connect_provider(
            Url=issuer_url, ClientIDList=ids, ThumbprintList=["0" * 40]
        )
        return str(response["OpenIDConnectProviderArn"])

    def create_role(
        self, name: str, trust_policy: Mapping[str, Any], max_session_duration: int = 3600
    ) -> str:
        """Create an IAM role with ``trust_policy`` and return its ARN."""
        response = self._iam_client().create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust_policy),
            MaxSessionDuration=max_session_duration,
        )
        return str(response["Role"]["Arn"])

    trust_policy_for = staticmethod(trust_policy_for)
    """See :func:`trust_policy_for`."""

    def _iam_client(self) -> Any:
        if self._iam is None:
            raise RuntimeError("FakeAWS is not running; call start() first")
        return self._iam
