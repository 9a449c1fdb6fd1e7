"""pytest fixtures for code that uses gitlab-botocore (``pip install gitlab-botocore[testing]``).

The ``pytest11`` entry point loads them from :mod:`gitlab_botocore_pytest`, which does
not import this package until a test asks for a fixture; ``pytest -p no:gitlab_botocore``
turns the plugin off. This module holds what they are made of.

- ``fake_gitlab_aws`` (session): an offline GitLab and AWS on 127.0.0.1. GitLab mints ID
  tokens in GitLab's claim shape and publishes its keys; STS verifies them as AWS does
  (signature, issuer, audience, expiry, the role's trust policy) and its credentials work
  for every service moto serves.
- ``gitlab_ci_env``: the environment of a GitLab CI job wired to that pair, so that code
  calling ``boto3.Session()`` gets the job's role.
- ``gitlab_aws_session``: in a real GitLab job, a ``boto3.Session`` authenticated by the
  job's ID token; the test is skipped where there is no token or no role.

Nothing is imported, and no provider installed, until a test asks for one of these
fixtures: suites that do not use them run as before. A test using them leaves no
provider behind unless the suite imported ``gitlab_botocore`` itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gitlab_botocore.settings import EnvVar
from gitlab_botocore_pytest import fake_gitlab_aws, gitlab_aws_session, gitlab_ci_env

if TYPE_CHECKING:
    import boto3

    from .aws import FakeAWS
    from .faults import Fault
    from .issuer import FakeGitLab
    from .sts import AssumeRoleCall

__all__ = [
    "FakeGitLabAWS",
    "GitLabCIJob",
    # Re-exported for suites that list this module in ``pytest_plugins``.
    "fake_gitlab_aws",
    "gitlab_aws_session",
    "gitlab_ci_env",
]

DEFAULT_PROJECT_PATH = "mygroup/myproject"
DEFAULT_ROLE_NAME = "gitlab-ci-job"
DEFAULT_REGION = "us-east-1"

# Removed before a fake job starts: anything that could make botocore or the library
# pick credentials, a profile, a token or an endpoint other than the fakes'.
_STRAY_PREFIXES = ("AWS_", "GITLAB_BOTOCORE_", "BOTO_")
_STRAY_NAMES = frozenset(
    {
        EnvVar.TUTORIAL_ROLE_ARN,
        EnvVar.GITLAB_OIDC_TOKEN,
        EnvVar.LEGACY_JOB_JWT,
        EnvVar.LEGACY_JOB_JWT_V1,
        EnvVar.CI_SERVER_URL,
        EnvVar.CI_PROJECT_ID,
        EnvVar.CI_PIPELINE_ID,
        EnvVar.CI_JOB_ID,
    }
)


_AMBIENT_CONFIG = ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


class FakeGitLabAWS:
    """An offline GitLab and AWS pair, with helpers for the usual test set-ups.

    ``gitlab`` (:class:`~gitlab_botocore.testing.issuer.FakeGitLab`: key rotation, outages)
    and ``aws`` (:class:`~gitlab_botocore.testing.aws.FakeAWS`: moto and the verifying STS)
    give access to everything else. moto keeps one state per process, so role names are
    shared by every test of the session.
    """

    def __init__(self, gitlab: FakeGitLab, aws: FakeAWS) -> None:
        self.gitlab = gitlab
        self.aws = aws
        self._iam_client: Any = None
        self.provider_arn = aws.create_oidc_provider(gitlab.issuer)
        """The IAM OIDC provider for ``issuer``; its audience is the issuer URL."""
        self.default_role_arn = self.role(DEFAULT_ROLE_NAME)
        """The role ``gitlab_ci_env`` names: it trusts any ref of ``mygroup/myproject``."""

    @property
    def issuer(self) -> str:
        """The GitLab instance URL: the ``iss`` and default ``aud`` of minted tokens."""
        return self.gitlab.issuer

    @property
    def moto_url(self) -> str:
        """Endpoint of every AWS service but STS."""
        return self.aws.moto_url

    @property
    def sts_url(self) -> str:
        """Endpoint of the verifying STS."""
        return self.aws.sts_url

    @property
    def account_id(self) -> str:
        return self.aws.account_id

    def mint(self, **claims: Any) -> str:
        """A signed ID token; see :func:`~gitlab_botocore.testing.issuer.gitlab_claims`.

        For example ``mint(project_path="other/project", ref="feature", audience="sts")``;
        a claim given as ``None`` is left out.
        """
        return self.gitlab.mint(**claims)

    def create_oidc_provider(self, issuer_url: str, audiences: Iterable[str] = ()) -> str:
        """Register another identity provider; ``audiences`` default to ``issuer_url``."""
        return self.aws.create_oidc_provider(issuer_url, client_ids=audiences)

    def role(
        self,
        name: str,
        *,
        sub: str | list[str] = f"project_path:{DEFAULT_PROJECT_PATH}:*",
        like: bool | None = None,
        aud: str | list[str] | None = None,
        trust_policy: Mapping[str, Any] | None = None,
        max_session_duration: int = 3600,
    ) -> str:
        """Create (or redefine) role ``name`` and return its ARN.

        Its trust policy admits tokens of this GitLab whose ``sub`` matches ``sub``
        (``StringLike`` if ``like``, which defaults to whether ``sub`` has a wildcard) and
        whose ``aud`` is ``aud`` (default: the issuer, as minted tokens have).
        ``trust_policy`` replaces that policy entirely.
        """
        if trust_policy is None:
            wildcard = any("*" in s or "?" in s for s in ([sub] if isinstance(sub, str) else sub))
            trust_policy = self.aws.trust_policy_for(
                self.provider_arn,
                sub=sub,
                aud=self.issuer if aud is None else aud,
                like=wildcard if like is None else like,
            )
        from botocore.exceptions import ClientError

        try:
            return self.aws.create_role(name, trust_policy, max_session_duration)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
                raise
        iam = self._iam()
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust_policy))
        iam.update_role(RoleName=name, MaxSessionDuration=max_session_duration)
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])

    @property
    def calls(self) -> list[AssumeRoleCall]:
        """The ``AssumeRoleWithWebIdentity`` requests STS answered (role, session name,
        claims, outcome), oldest first; ``gitlab_ci_env`` starts each test with none."""
        return self.aws.sts.calls

    def inject(self, *faults: Fault) -> None:
        """Make the next STS exchanges fail, one fault each; see
        :class:`~gitlab_botocore.testing.faults.Fault` (``Fault.throttling()``, ...)."""
        self.aws.sts.inject(*faults)

    def reset(self) -> None:
        """Forget recorded calls, pending faults and latency; bring GitLab back up."""
        self.aws.sts.reset()
        self.gitlab.set_down(False)
        self.gitlab.set_delay(0)

    def client(self, service: str, **kwargs: Any) -> Any:
        """An administrator's boto3 client on moto, outside any credential chain and
        AWS profile, to create buckets or check what the code under test did."""
        import boto3
        import botocore.session

        from .sts import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, REGION

        # session_vars without environment names: the ambient profile and files are ignored.
        core = botocore.session.Session(
            session_vars={
                "profile": (None, None, None, None),
                "config_file": (None, None, os.devnull, None),
                "credentials_file": (None, None, os.devnull, None),
            }
        )
        options: dict[str, Any] = {
            "endpoint_url": self.moto_url,
            "region_name": REGION,
            "aws_access_key_id": DUMMY_ACCESS_KEY,
            "aws_secret_access_key": DUMMY_SECRET_KEY,
            **kwargs,
        }
        return boto3.Session(botocore_session=core).client(service, **options)

    def _iam(self) -> Any:
        if self._iam_client is None:
            self._iam_client = self.client("iam")
        return self._iam_client


class GitLabCIJob:
    """The variables of a fake GitLab CI job, set in ``os.environ`` for one test.

    ``variables`` holds what this object set; ``config_file`` is the job's (empty) AWS
    config file, for tests of named profiles.
    """

    def __init__(
        self, fake: FakeGitLabAWS, monkeypatch: pytest.MonkeyPatch, config_file: Path
    ) -> None:
        self.fake = fake
        self.monkeypatch = monkeypatch
        self.config_file = config_file
        self.variables: dict[str, str] = {}

    @property
    def gitlab(self) -> FakeGitLab:
        return self.fake.gitlab

    @property
    def role_arn(self) -> str | None:
        return self.variables.get(EnvVar.ROLE_ARN)

    def set(self, **variables: object) -> None:
        """Set variables; ``None`` removes one. Restored after the test."""
        for name, value in variables.items():
            if value is None:
                self.monkeypatch.delenv(name, raising=False)
                self.variables.pop(name, None)
            else:
                self.monkeypatch.setenv(name, str(value))
                self.variables[name] = str(value)

    def token(self, **claims: Any) -> str:
        """Mint an ID token (see :meth:`FakeGitLabAWS.mint`) into ``GITLAB_OIDC_TOKEN``."""
        token = self.fake.mint(**claims)
        self.set(**{EnvVar.GITLAB_OIDC_TOKEN: token})
        return token

    def __repr__(self) -> str:
        return f"<GitLabCIJob role_arn={self.role_arn!r} issuer={self.fake.issuer!r}>"


@contextlib.contextmanager
def fake_gitlab_and_aws() -> Iterator[FakeGitLabAWS]:
    """What ``fake_gitlab_aws`` yields: the fakes, started, then stopped."""
    from .aws import FakeAWS
    from .issuer import FakeGitLab

    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:
            # The fakes' own clients must not depend on the machine's AWS profile.
            for name in _AMBIENT_CONFIG:
                patch.setenv(name, os.devnull)
            patch.delenv("AWS_PROFILE", raising=False)
            patch.delenv("AWS_DEFAULT_PROFILE", raising=False)
            gitlab = stack.enter_context(FakeGitLab())
            aws = stack.enter_context(FakeAWS())
            fake = FakeGitLabAWS(gitlab, aws)
        yield fake


@contextlib.contextmanager
def gitlab_ci_job(
    fake_gitlab_aws: FakeGitLabAWS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[GitLabCIJob]:
    """What ``gitlab_ci_env`` yields: a job environment, with the provider installed
    for the test and the previous installation state restored after it."""
    import boto3

    from gitlab_botocore import installation

    for name in list(os.environ):
        if name.startswith(_STRAY_PREFIXES) or name in _STRAY_NAMES:
            monkeypatch.delenv(name)
    config_dir = tmp_path / "gitlab-ci-job-aws"
    config_dir.mkdir()
    config_file = config_dir / "config"
    config_file.write_text("")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # boto3.client() builds a fresh one

    was_installed = installation.is_installed()
    installation.uninstall()  # also forgets credentials shared by earlier tests
    installation.install()
    fake_gitlab_aws.reset()

    job = GitLabCIJob(fake_gitlab_aws, monkeypatch, config_file)
    job.set(
        CI="true",
        GITLAB_CI="true",
        CI_SERVER_URL=fake_gitlab_aws.issuer,
        CI_PROJECT_PATH=DEFAULT_PROJECT_PATH,
        CI_PROJECT_ID="42",
        CI_PIPELINE_ID="1001",
        CI_JOB_ID="5001",
        CI_COMMIT_REF_NAME="main",
        AWS_ROLE_ARN=fake_gitlab_aws.default_role_arn,
        AWS_ENDPOINT_URL=fake_gitlab_aws.moto_url,
        AWS_ENDPOINT_URL_STS=fake_gitlab_aws.sts_url,
        AWS_DEFAULT_REGION=DEFAULT_REGION,
        AWS_CONFIG_FILE=config_file,
        AWS_SHARED_CREDENTIALS_FILE=config_dir / "credentials",
        # Without this, an empty chain would spend seconds probing for instance metadata.
        AWS_EC2_METADATA_DISABLED="true",
    )
    job.token()
    try:
        yield job
    finally:
        # Faults and delays cleared first: a fetch still retrying then ends at its next try.
        fake_gitlab_aws.reset()
        _wait_for_background_fetches()
        installation.uninstall()
        if was_installed:
            installation.install()
        fake_gitlab_aws.reset()


def _wait_for_background_fetches(timeout: float = 30.0) -> None:
    """Let the STS requests a test left running in the background end (a client made but
    never used, a refresh under way), so that none lands in the next test's record."""
    from gitlab_botocore.refresh import THREAD_NAME

    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name == THREAD_NAME:
            thread.join(max(0.0, deadline - time.monotonic()))


def job_session() -> boto3.Session:
    """What ``gitlab_aws_session`` returns (or the skip it raises)."""
    import boto3
    import botocore.session
    from botocore.credentials import CredentialResolver

    from gitlab_botocore.exceptions import TokenNotFoundError
    from gitlab_botocore.provider import GitLabOIDCProvider
    from gitlab_botocore.settings import ROLE_ARN_ROW, settings_for_session
    from gitlab_botocore.token_source import EnvironmentTokenSource

    core = botocore.session.get_session()
    settings = settings_for_session(core, {}, os.environ)
    if settings is None:
        pytest.skip(
            f"gitlab_aws_session needs an IAM role to assume: set {EnvVar.ROLE_ARN} "
            f"(or {ROLE_ARN_ROW.profile_key} in the selected AWS profile)"
        )
    source = EnvironmentTokenSource(
        settings.token_variable, settings.ci_server_url, audiences=settings.audiences
    )
    try:
        source.get_token()
    except TokenNotFoundError as error:
        pytest.skip(f"gitlab_aws_session needs a GitLab ID token: {error}")
    core.register_component("credential_provider", CredentialResolver([GitLabOIDCProvider(core)]))
    return boto3.Session(botocore_session=core)
