"""The stage every benchmark runs on: one CI job, configured two ways.

A local GitLab-like issuer mints the job's ID token; a local STS verifies it as AWS
does (moto behind it issues the credentials and serves S3). The same job can be
played by gitlab-botocore (token in ``GITLAB_OIDC_TOKEN``) or by botocore's own
``AssumeRoleWithWebIdentityProvider`` (token in a file named by
``AWS_WEB_IDENTITY_TOKEN_FILE``, gitlab-botocore uninstalled), in this process or in
child processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import gitlab_botocore
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.issuer import FakeGitLab

OURS = "gitlab-botocore"
NATIVE = "botocore native"
PROJECT = "mygroup/myproject"
TOKEN_LIFETIME_SECONDS = 6 * 3600  # outlives any clock travel in the benchmarks
_OWN_PREFIXES = ("AWS_", "GITLAB_", "CI_", "BOTO_")


class Stage:
    """Servers, the job's variables, and switches between the two providers."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.gitlab = FakeGitLab()
        self.aws = FakeAWS()
        self.token_file = workdir / "web-identity-token"
        self.common: dict[str, str] = {}
        self.token = ""

    def __enter__(self) -> Stage:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request lines
        self.gitlab.start()
        self.aws.start()
        provider_arn = self.aws.create_oidc_provider(self.gitlab.issuer)
        policy = self.aws.trust_policy_for(
            provider_arn, sub=f"project_path:{PROJECT}:*", aud=self.gitlab.issuer, like=True
        )
        role_arn = self.aws.create_role("bench", policy)
        self.token = self.gitlab.mint(project_path=PROJECT, lifetime_seconds=TOKEN_LIFETIME_SECONDS)
        self.token_file.write_text(self.token)
        config = self.workdir / "aws-config"
        config.write_text("")
        self.common = {
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ROLE_ARN": role_arn,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.aws.moto_url,
            "AWS_ENDPOINT_URL_STS": self.aws.sts_url,
            "CI_SERVER_URL": self.gitlab.issuer,
            "CI_PROJECT_ID": "42",
            "CI_PIPELINE_ID": "1001",
            "CI_JOB_ID": "5001",
        }
        for name in list(os.environ):
            if name.startswith(_OWN_PREFIXES) or name == "ROLE_ARN":
                del os.environ[name]
        os.environ.update(self.common)
        self.aws.client("s3").create_bucket(Bucket="bench")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.aws.stop()
        self.gitlab.stop()

    @property
    def sts_calls(self) -> int:
        """``AssumeRoleWithWebIdentity`` calls since the last :meth:`reset`."""
        return self.aws.sts.assume_role_calls

    def reset(self) -> None:
        """Forget recorded STS calls and any latency."""
        self.aws.sts.reset()

    def variables(self, side: str, *, cache_dir: Path | None = None) -> dict[str, str]:
        """The job's variables for one side (added to the common ones)."""
        if side == OURS:
            variables = {"GITLAB_OIDC_TOKEN": self.token}
            if cache_dir is not None:
                variables["GITLAB_BOTOCORE_CACHE"] = str(cache_dir)
            return variables
        return {
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(self.token_file),
            "GITLAB_BOTOCORE_DISABLE": "1",
        }

    def child_environment(self, side: str, *, cache_dir: Path | None = None) -> dict[str, str]:
        """A complete environment for a child process playing ``side``."""
        return {**os.environ, **self.variables(side, cache_dir=cache_dir)}

    @contextlib.contextmanager
    def playing(self, side: str) -> Iterator[None]:
        """In this process, let ``side`` provide the credentials of new sessions.

        Entering always starts afresh: gitlab-botocore forgets its shared credentials.
        """
        saved = dict(os.environ)
        os.environ.update(self.variables(side))
        gitlab_botocore.uninstall()
        if side == OURS:
            gitlab_botocore.install()
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            gitlab_botocore.install()
