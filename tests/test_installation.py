"""Installation into botocore sessions and the place in the provider chain."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import botocore.credentials
import botocore.session
import pytest

import gitlab_botocore

from .conftest import ACCOUNT_ID, Job


def chain(session: Any) -> list[str]:
    botocore_session = getattr(session, "_session", session)
    resolver = botocore_session.get_component("credential_provider")
    return [provider.METHOD for provider in resolver.providers]


def test_import_installs_for_every_kind_of_session(job: Job) -> None:
    assert gitlab_botocore.is_installed()
    assert boto3.Session().get_credentials().method == "gitlab-oidc"
    assert botocore.session.get_session().get_credentials().method == "gitlab-oidc"
    identity = boto3.client("sts").get_caller_identity()
    assert identity["Arn"].endswith(":assumed-role/deploy/GitLabRunner-42-1001-5001")


def test_position_in_chain(job: Job) -> None:
    methods = chain(boto3.Session())
    assert methods.index("env") < methods.index("gitlab-oidc")
    following = methods[methods.index("gitlab-oidc") + 1 :]
    assert following[0] == "assume-role-with-web-identity"
    for method in ("shared-credentials-file", "config-file", "container-role", "iam-role"):
        assert method in following


def test_position_in_chain_with_explicit_profile(job: Job) -> None:
    Path(os.environ["AWS_CONFIG_FILE"]).write_text("[profile x]\nregion = eu-west-1\n")
    methods = chain(boto3.Session(profile_name="x"))
    assert "env" not in methods  # botocore drops it when a profile is chosen in code
    assert methods.index("gitlab-oidc") + 1 == methods.index("assume-role-with-web-identity")


def test_install_is_idempotent(job: Job) -> None:
    gitlab_botocore.install()
    gitlab_botocore.install()
    assert chain(boto3.Session()).count("gitlab-oidc") == 1


def test_static_environment_keys_still_win(job: Job) -> None:
    job.set(AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="static-secret")
    assert boto3.Session().get_credentials().method == "env"


def test_job_identity_wins_over_shared_credentials_file(job: Job) -> None:
    Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret\n"
    )
    assert boto3.Session().get_credentials().method == "gitlab-oidc"
    job.set(AWS_ROLE_ARN=None)
    assert boto3.Session().get_credentials().method == "shared-credentials-file"


class _ContainerCredentials(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {
                "AccessKeyId": "ASIACONTAINER",
                "SecretAccessKey": "container-secret",
                "Token": "container-token",
                "Expiration": "2099-01-01T00:00:00Z",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def runner_role() -> Iterator[str]:
    """A container credentials endpoint, like the role of the machine running the job."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ContainerCredentials)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/credentials"
    server.shutdown()
    server.server_close()


def test_job_identity_wins_over_the_runner_role(job: Job, runner_role: str) -> None:
    job.set(AWS_CONTAINER_CREDENTIALS_FULL_URI=runner_role)
    assert boto3.Session().get_credentials().method == "gitlab-oidc"
    job.set(GITLAB_OIDC_TOKEN=None)  # a job without an ID token keeps the runner's role
    credentials = boto3.Session().get_credentials()
    assert credentials.method == "container-role"
    assert credentials.get_frozen_credentials().access_key == "ASIACONTAINER"


def test_disable_variable_makes_the_import_do_nothing(job: Job) -> None:
    code = (
        "import gitlab_botocore, boto3;"
        "print(gitlab_botocore.is_installed(), boto3.Session().get_credentials())"
    )
    env = {**os.environ, "GITLAB_BOTOCORE_DISABLE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False None"
    env["GITLAB_BOTOCORE_DISABLE"] = "0"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("True <GitLabOIDCCredentials method='gitlab-oidc'")


def test_uninstall_affects_new_sessions_only(job: Job) -> None:
    before = boto3.Session()
    gitlab_botocore.uninstall()
    assert not gitlab_botocore.is_installed()
    assert "gitlab-oidc" not in chain(boto3.Session())
    assert boto3.Session().get_credentials() is None
    assert before.get_credentials().method == "gitlab-oidc"


def test_register_one_session_with_overrides(job: Job) -> None:
    gitlab_botocore.uninstall()
    job.set(AWS_ROLE_ARN=None)
    session = boto3.Session()
    gitlab_botocore.register(
        session, role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/reader", role_session_name="mine"
    )
    arn = session.client("sts").get_caller_identity()["Arn"]
    assert arn.endswith(":assumed-role/reader/mine")
    assert boto3.Session().get_credentials() is None


def test_register_overrides_win_over_environment(job: Job) -> None:
    session = botocore.session.get_session()
    gitlab_botocore.register(
        session, role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/override", duration_seconds=900
    )
    assert chain(session).count("gitlab-oidc") == 1
    arn = session.create_client("sts").get_caller_identity()["Arn"]
    assert ":assumed-role/override/" in arn


def test_register_validates_overrides(job: Job) -> None:
    session = boto3.Session()
    gitlab_botocore.register(session, duration_seconds=5)
    with pytest.raises(gitlab_botocore.ConfigurationError, match="'duration_seconds' argument"):
        session.get_credentials()


def test_broken_configuration_never_breaks_session_creation(job: Job) -> None:
    job.set(AWS_ROLE_ARN="not-an-arn")
    session = boto3.Session()  # creating sessions and clients without credentials still works
    assert session.region_name == "us-east-1"
    with pytest.raises(gitlab_botocore.ConfigurationError):
        session.get_credentials()


# -- import order does not matter ----------------------------------------------------------

BOTO3_FIRST = """
import boto3

boto3.client("sts")  # the default session exists, and found no credentials
import gitlab_botocore

print(boto3.client("sts").get_caller_identity()["Arn"])
"""


def test_boto3_client_before_the_import_gets_the_job_role(job: Job) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BOTO3_FIRST],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(":assumed-role/deploy/GitLabRunner-42-1001-5001")


@pytest.mark.parametrize("used", [False, True], ids=["not-resolved-yet", "resolved-to-nothing"])
def test_install_adopts_boto3_default_session(job: Job, used: bool) -> None:
    gitlab_botocore.uninstall()
    boto3.setup_default_session()
    if used:
        assert boto3.DEFAULT_SESSION.get_credentials() is None
    gitlab_botocore.install()
    assert (
        boto3.client("sts")
        .get_caller_identity()["Arn"]
        .endswith(":assumed-role/deploy/GitLabRunner-42-1001-5001")
    )
    gitlab_botocore.install()  # idempotent: still one provider in the chain
    assert chain(boto3.DEFAULT_SESSION).count("gitlab-oidc") == 1


def test_an_adopted_default_session_puts_a_required_job_role_first(job: Job) -> None:
    # Leaked keys in the environment, and a job that must run as its GitLab role only.
    job.set(
        AWS_ACCESS_KEY_ID="AKIAEXAMPLEEXAMPLE12",
        AWS_SECRET_ACCESS_KEY="x" * 40,
        GITLAB_BOTOCORE_REQUIRE="1",
    )
    gitlab_botocore.uninstall()
    boto3.setup_default_session()
    gitlab_botocore.install()
    assert chain(boto3.DEFAULT_SESSION)[0] == "gitlab-oidc"
    assert boto3.DEFAULT_SESSION.get_credentials().method == "gitlab-oidc"


def test_install_leaves_a_default_session_with_credentials_alone(
    job: Job, caplog: pytest.LogCaptureFixture
) -> None:
    gitlab_botocore.uninstall()
    Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret\n"
    )
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION.get_credentials().method == "shared-credentials-file"
    with caplog.at_level("DEBUG", logger="gitlab_botocore"):
        gitlab_botocore.install()
    assert "gitlab-oidc" not in chain(boto3.DEFAULT_SESSION)
    assert boto3.DEFAULT_SESSION.get_credentials().method == "shared-credentials-file"
    assert any(
        "already has credentials (shared-credentials-file)" in r.getMessage()
        for r in caplog.records
    )
    assert boto3.Session().get_credentials().method == "gitlab-oidc"  # new sessions do


def test_import_does_not_import_boto3(job: Job) -> None:
    code = "import sys, gitlab_botocore; print('boto3' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip() == "False", result.stderr


# -- a narrowed chain ---------------------------------------------------------------------


class _OnlyProvider(botocore.credentials.CredentialProvider):  # type: ignore[misc]
    METHOD = "custom-only"
    CANONICAL_NAME = "custom-only"

    def load(self) -> botocore.credentials.Credentials:
        return botocore.credentials.Credentials("AKIDONLY", "only-secret", method=self.METHOD)


@pytest.mark.parametrize("register", [False, True], ids=["import", "register"])
def test_a_narrowed_chain_is_left_alone(
    job: Job, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, register: bool
) -> None:
    # As botocore's own tests do: code builds the chain with a single provider of its own.
    def one_provider_chain(*args: Any, **kwargs: Any) -> Any:
        return botocore.credentials.CredentialResolver(providers=[_OnlyProvider()])

    monkeypatch.setattr(botocore.credentials, "create_credential_resolver", one_provider_chain)
    session = boto3.Session()
    if register:
        gitlab_botocore.register(session, role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/reader")
    with caplog.at_level(logging.DEBUG, logger="gitlab_botocore"):
        assert chain(session) == ["custom-only"]
        assert session.get_credentials().method == "custom-only"
    assert "leaves this credential chain alone" in caplog.text


def test_a_chain_with_only_env_gets_the_provider_after_it(
    job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    def env_only_chain(*args: Any, **kwargs: Any) -> Any:
        return botocore.credentials.CredentialResolver(
            providers=[botocore.credentials.EnvProvider(), _OnlyProvider()]
        )

    monkeypatch.setattr(botocore.credentials, "create_credential_resolver", env_only_chain)
    session = boto3.Session()
    assert chain(session) == ["env", "gitlab-oidc", "custom-only"]
    assert session.get_credentials().method == "gitlab-oidc"
