"""gitlab-botocore's pytest fixtures: what the ``pytest11`` entry point loads.

This module lives outside the ``gitlab_botocore`` package on purpose: importing that
package installs the credential provider, and every pytest run on a machine where
gitlab-botocore is installed loads this plugin. Loading it imports nothing but pytest
and the standard library, so a test suite that neither uses the fixtures nor imports
``gitlab_botocore`` runs exactly as it would without it (``pytest -p no:gitlab_botocore``
turns the plugin off altogether).

The fixtures import the library when a test first asks for one, without installing the
provider; ``gitlab_ci_env`` installs it for its test only. The fake GitLab and AWS need
``pip install "gitlab-botocore[testing]"``. Helper classes and documentation:
:mod:`gitlab_botocore.testing.pytest_plugin`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import boto3

    from gitlab_botocore.testing.pytest_plugin import FakeGitLabAWS, GitLabCIJob

__all__ = ["fake_gitlab_aws", "gitlab_aws_session", "gitlab_ci_env"]

_DISABLE = "GITLAB_BOTOCORE_DISABLE"  # settings.EnvVar.DISABLE, without importing the package


def _test_kit() -> ModuleType:
    """``gitlab_botocore.testing.pytest_plugin``, imported without installing the provider.

    If the suite has not imported ``gitlab_botocore``, this import is the plugin's doing,
    not the suite's: it must not leave the provider behind for later tests.
    """
    if "gitlab_botocore" not in sys.modules:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(_DISABLE, "1")
            import gitlab_botocore  # noqa: F401
    from gitlab_botocore.testing import pytest_plugin

    return pytest_plugin


@pytest.fixture(scope="session")
def fake_gitlab_aws() -> Iterator[FakeGitLabAWS]:
    """An offline GitLab and AWS on 127.0.0.1 for the whole test session.

    GitLab mints ID tokens and publishes its keys; STS verifies them as AWS does and
    its credentials work for every service moto serves. Needs
    ``pip install "gitlab-botocore[testing]"``.
    """
    kit = _test_kit()
    with contextlib.ExitStack() as stack:
        try:
            fake = stack.enter_context(kit.fake_gitlab_and_aws())
        except ImportError as error:
            missing = str(error)
        else:
            yield fake
            return
    pytest.fail(
        "fake_gitlab_aws needs gitlab-botocore's test kit: "
        f'pip install "gitlab-botocore[testing]" ({missing})',
        pytrace=False,
    )


@pytest.fixture
def gitlab_ci_env(
    fake_gitlab_aws: FakeGitLabAWS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[GitLabCIJob]:
    """Make this test a GitLab CI job: CI variables, a fresh ID token in
    ``GITLAB_OIDC_TOKEN``, ``AWS_ROLE_ARN`` of a role that trusts it, AWS endpoints on the
    fakes, no other AWS configuration. The provider is installed (as ``import
    gitlab_botocore`` does) for this test only; shared credentials and the environment
    are reset after it.
    """
    with _test_kit().gitlab_ci_job(fake_gitlab_aws, monkeypatch, tmp_path) as job:
        yield job


@pytest.fixture
def gitlab_aws_session() -> boto3.Session:
    """A ``boto3.Session`` whose credentials come from this GitLab job's ID token, through
    gitlab-botocore's provider only (static keys in the environment do not shadow it).

    Skips the test when no role or no ID token is configured; other configuration
    problems fail it. No STS call happens until the session's credentials are used.
    """
    session: boto3.Session = _test_kit().job_session()
    return session
