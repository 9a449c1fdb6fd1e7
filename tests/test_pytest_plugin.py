"""The pytest plugin, seen from the test suites of its users (run by pytester)."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from gitlab_botocore.testing.aws import FakeAWS

from .conftest import ACCOUNT_ID, Job

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _users_own_project(request: pytest.FixtureRequest) -> None:
    """Each inner suite is a user's project with its own (empty) configuration.

    Without it, pytest looks for an ini file upwards from the temporary directory, and when
    that lies inside this checkout (nox puts TMPDIR under .nox/) it finds this project's
    pyproject.toml, whose filterwarnings imports gitlab_botocore.
    """
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester").makeini("[pytest]\n")


SUITE_WITH_THE_FAKES = """
import os

import boto3
import pytest

import gitlab_botocore
from gitlab_botocore.testing.faults import Fault

REUSED = {}


def test_code_under_test_assumes_the_job_role(gitlab_ci_env, fake_gitlab_aws):
    REUSED["token"] = os.environ["GITLAB_OIDC_TOKEN"]
    gitlab_ci_env.set(LEAKED="from the first test")
    identity = boto3.Session().client("sts").get_caller_identity()
    assert identity["Arn"] == (
        "arn:aws:sts::123456789012:assumed-role/gitlab-ci-job/GitLabRunner-42-1001-5001"
    )
    assert [(c.role_arn, c.outcome) for c in fake_gitlab_aws.calls] == [
        (gitlab_ci_env.role_arn, "ok")
    ]


def test_environment_and_credentials_do_not_leak(gitlab_ci_env, fake_gitlab_aws):
    assert "LEAKED" not in os.environ
    assert fake_gitlab_aws.calls == []
    gitlab_ci_env.set(GITLAB_OIDC_TOKEN=REUSED["token"])  # same role, same token
    boto3.client("sts").get_caller_identity()
    assert len(fake_gitlab_aws.calls) == 1  # not served from the first test's credentials


def test_trust_policy_decides(gitlab_ci_env, fake_gitlab_aws):
    arn = fake_gitlab_aws.role(
        "main-only", sub="project_path:mygroup/myproject:ref_type:branch:ref:main"
    )
    gitlab_ci_env.set(AWS_ROLE_ARN=arn)
    gitlab_ci_env.token(ref="feature")
    with pytest.raises(gitlab_botocore.AccessDeniedError):
        boto3.Session().client("sts").get_caller_identity()
    gitlab_ci_env.token(ref="main")
    assert ":assumed-role/main-only/" in boto3.Session().client("sts").get_caller_identity()["Arn"]
    # Redefining the role replaces its trust policy.
    assert arn == fake_gitlab_aws.role(
        "main-only", sub="project_path:mygroup/myproject:ref_type:branch:ref:feature"
    )
    gitlab_ci_env.token(ref="feature")
    boto3.Session().client("sts").get_caller_identity()
    assert [c.outcome for c in fake_gitlab_aws.calls] == ["AccessDenied", "ok", "ok"]


def test_audience_condition(gitlab_ci_env, fake_gitlab_aws):
    gitlab_ci_env.set(AWS_ROLE_ARN=fake_gitlab_aws.role("aud-checked", aud="other"))
    with pytest.raises(gitlab_botocore.AccessDeniedError):
        boto3.Session().client("sts").get_caller_identity()


def test_a_second_gitlab_instance(gitlab_ci_env, fake_gitlab_aws):
    from gitlab_botocore.testing.issuer import FakeGitLab

    with FakeGitLab() as other:
        provider = fake_gitlab_aws.create_oidc_provider(other.issuer)
        policy = fake_gitlab_aws.aws.trust_policy_for(provider, sub="project_path:*", like=True)
        gitlab_ci_env.set(
            AWS_ROLE_ARN=fake_gitlab_aws.role("other-instance", trust_policy=policy),
            CI_SERVER_URL=other.issuer,
            GITLAB_OIDC_TOKEN=other.mint(),
        )
        arn = boto3.Session().client("sts").get_caller_identity()["Arn"]
    assert ":assumed-role/other-instance/" in arn


def test_injected_fault(gitlab_ci_env, fake_gitlab_aws):
    fake_gitlab_aws.inject(Fault.access_denied())
    with pytest.raises(gitlab_botocore.AccessDeniedError):
        boto3.Session().client("sts").get_caller_identity()


def test_other_services_accept_the_credentials(gitlab_ci_env, fake_gitlab_aws):
    fake_gitlab_aws.client("s3").create_bucket(Bucket="plugin-bucket")
    boto3.client("s3").put_object(Bucket="plugin-bucket", Key="k", Body=b"v")
    body = fake_gitlab_aws.client("s3").get_object(Bucket="plugin-bucket", Key="k")["Body"]
    assert body.read() == b"v"


def test_zz_after_the_fixture(pytestconfig):
    assert "AWS_ROLE_ARN" not in os.environ
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIDOUTSIDE"
    assert not gitlab_botocore.is_installed()  # as GITLAB_BOTOCORE_DISABLE=1 left it
"""


def test_the_entry_point_names_the_plugin() -> None:
    if sys.version_info >= (3, 10):
        found = entry_points(group="pytest11")
    else:
        found = entry_points().get("pytest11", ())
    plugins = {ep.name: ep.value for ep in found}
    # Outside the package: loading the plugin must not run ``gitlab_botocore/__init__``.
    assert plugins.get("gitlab_botocore") == "gitlab_botocore_pytest"


def test_fixtures_give_an_offline_gitlab_ci_job(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a developer's machine may hold: the fixture must hide it and give it back.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDOUTSIDE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "outside")
    monkeypatch.setenv("AWS_PROFILE", "outside")
    monkeypatch.setenv("GITLAB_BOTOCORE_DISABLE", "1")
    pytester.makepyfile(test_suite=SUITE_WITH_THE_FAKES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)


def test_suites_that_do_not_use_it_load_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_untouched="""
        import os
        import sys

        def test_nothing_loaded(pytestconfig):
            assert pytestconfig.pluginmanager.hasplugin("gitlab_botocore")
            heavy = (
                "moto",
                "jwt",
                "cryptography",
                "gitlab_botocore.testing.sts",
                "gitlab_botocore.testing.aws",
            )
            for module in heavy:
                assert module not in sys.modules, module
            assert os.environ["AWS_ROLE_ARN"] == "arn:aws:iam::111111111111:role/unrelated"
        """
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ROLE_ARN", "arn:aws:iam::111111111111:role/unrelated")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_fixtures_are_documented_and_can_be_turned_off(pytester: pytest.Pytester) -> None:
    listing = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    listing.stdout.fnmatch_lines(
        [
            "fake_gitlab_aws [[]session scope[]]*",
            "*offline GitLab and AWS*",
            "gitlab_ci_env*",
            "*Make this test a GitLab CI job*",
            "gitlab_aws_session*",
            "*credentials come from this GitLab job's ID token*",
        ]
    )
    pytester.makepyfile(test_uses="def test_it(gitlab_ci_env): pass")
    off = pytester.runpytest("-p", "no:gitlab_botocore", "-p", "no:cacheprovider")
    off.assert_outcomes(errors=1)
    off.stdout.fnmatch_lines(["*fixture 'gitlab_ci_env' not found*"])


REAL_JOB_SUITE = """
import pytest


@pytest.fixture(autouse=True, params=["job", "no role", "no token"])
def situation(request, monkeypatch):
    monkeypatch.delenv(
        {"no role": "AWS_ROLE_ARN", "no token": "GITLAB_OIDC_TOKEN"}.get(request.param, "NONE"),
        raising=False,
    )


def test_real_job(gitlab_aws_session):
    identity = gitlab_aws_session.client("sts").get_caller_identity()
    assert identity["Arn"] == "{arn}"
    assert gitlab_aws_session.get_credentials().method == "gitlab-oidc"
"""


def test_gitlab_aws_session_uses_the_job_token_or_skips(
    pytester: pytest.Pytester, job: Job
) -> None:
    # Static keys come first in botocore's chain; the fixture must still use the token.
    job.set(AWS_ACCESS_KEY_ID="AKIDSTATIC", AWS_SECRET_ACCESS_KEY="static")
    arn = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/GitLabRunner-42-1001-5001"
    pytester.makepyfile(test_real=REAL_JOB_SUITE.replace("{arn}", arn))
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED*needs an IAM role to assume: set AWS_ROLE_ARN*",
            "SKIPPED*needs a GitLab ID token: No GitLab ID token found*id_tokens:*",
        ]
    )


# -- installing the package does not change an unrelated test suite ------------------------

UNRELATED_SUITE = """
import sys

import pytest


def test_loading_the_plugin_imported_nothing(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("gitlab_botocore")
    loaded = [
        name
        for name in sys.modules
        if name.split(".")[0] in ("gitlab_botocore", "botocore", "boto3", "moto", "jwt")
    ]
    assert loaded == []


def test_expects_no_credentials():
    import boto3
    from botocore.exceptions import NoCredentialsError

    with pytest.raises(NoCredentialsError):
        boto3.client("sts").get_caller_identity()
"""


def test_an_unrelated_suite_in_a_job_gets_no_credentials(
    pytester: pytest.Pytester, job: Job, aws: FakeAWS
) -> None:
    # The job's role, its ID token and a reachable STS are all there: only an installed
    # provider could find credentials.
    pytester.makepyfile(test_unrelated=UNRELATED_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert aws.sts.calls == []


FIXTURE_THEN_PLAIN_TEST = """
{import_line}
import boto3
import pytest
from botocore.exceptions import NoCredentialsError

JOB = {{}}


def test_with_the_fixture(gitlab_ci_env):
    JOB.update(gitlab_ci_env.variables)
    assert ":assumed-role/gitlab-ci-job/" in boto3.client("sts").get_caller_identity()["Arn"]


def test_after_it_in_the_same_environment(monkeypatch):
    for name, value in JOB.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    {expectation}
"""


def test_a_fixture_leaves_no_provider_behind(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_suite=FIXTURE_THEN_PLAIN_TEST.format(
            import_line="",
            expectation="with pytest.raises(NoCredentialsError):\n"
            '        boto3.client("sts").get_caller_identity()',
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_suite_that_imports_the_library_keeps_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_suite=FIXTURE_THEN_PLAIN_TEST.format(
            import_line="import gitlab_botocore",
            expectation='assert boto3.Session().get_credentials().method == "gitlab-oidc"',
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_base_package_without_test_extras_keeps_pytest_working(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As if `pip install gitlab-botocore` without [testing]: no moto, no cryptography.
    blocked = tmp_path / "not-installed"
    for module in ("moto", "cryptography"):
        (blocked / module).mkdir(parents=True)
        (blocked / module / "__init__.py").write_text(
            f'raise ModuleNotFoundError("No module named {module}", name="{module}")\n'
        )
    monkeypatch.setenv("PYTHONPATH", str(blocked))
    pytester.makepyfile(
        test_base="""
        def test_unrelated():
            import boto3

            assert boto3.Session().region_name is None or True

        def test_asks_for_the_fakes(fake_gitlab_aws):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ['*fake_gitlab_aws needs*pip install "gitlab-botocore[[]testing[]]" (No module named *)']
    )


CLIENT_LEFT_UNUSED_WHILE_STS_FAILS = """
import threading

import boto3

from gitlab_botocore.refresh import THREAD_NAME
from gitlab_botocore.testing.faults import Fault


def test_makes_a_client_while_sts_fails_and_never_uses_it(gitlab_ci_env, fake_gitlab_aws):
    fake_gitlab_aws.aws.sts.inject(*[Fault.service_unavailable()] * 100)
    assert boto3.Session().client("s3").meta.region_name == "us-east-1"


def test_the_next_test_starts_clean(gitlab_ci_env, fake_gitlab_aws):
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]
    assert fake_gitlab_aws.calls == []
"""


def test_a_client_left_unused_makes_no_call_in_the_next_test(pytester: pytest.Pytester) -> None:
    # The STS call a session starts in the background ends with the test that made it, even
    # when that test left STS failing.
    pytester.makepyfile(test_suite=CLIENT_LEFT_UNUSED_WHILE_STS_FAILS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--durations=0")
    result.assert_outcomes(passed=2)
