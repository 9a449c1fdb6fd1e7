"""The examples run, so they cannot rot."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitlab_botocore.settings import EnvVar
from gitlab_botocore.testing.aws import FakeAWS

from .conftest import ACCOUNT_ID, Job

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_demo_runs_offline() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        "Identity  arn:aws:sts::123456789012:assumed-role/demo-deploy/GitLabRunner-42-1001-5001"
        in lines
    )
    assert "Sharing   10 more boto3 sessions uploaded to s3://demo-site: 1 STS call in all" in lines
    assert "renewed in the background, 2 STS calls" in result.stdout
    assert "Refused   a job of other/project: AccessDeniedError" in lines
    assert "project_path:other/project:ref_type:branch:ref:main" in result.stdout  # explained
    assert len(lines) < 25  # a few readable lines


DOCS = EXAMPLES.parent / "docs"
TESTED_BLOCK = "<!-- tests/test_examples.py runs this block -->\n```python\n"


def marked_code_block(page: Path) -> str:
    """The code block of a docs page that follows the marker saying this test runs it."""
    text = page.read_text()
    assert text.count(TESTED_BLOCK) == 1, f"{page.name}: one marked python block expected"
    return text.split(TESTED_BLOCK, 1)[1].split("\n```\n", 1)[0]


def test_the_fixtures_example_of_the_testing_page_runs(tmp_path: Path) -> None:
    # As a user runs it: a file of its own, in an empty directory, with the plugin installed.
    (tmp_path / "test_publish.py").write_text(marked_code_block(DOCS / "testing.md"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_publish.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The last test needs a real job; every other one passes offline.
    assert "6 passed, 1 skipped" in result.stdout, result.stdout


ROOT = EXAMPLES.parent
README = ROOT / "README.md"
REPOSITORY_URL = "https://gitlab.com/gitlab-botocore/gitlab-botocore/-/"
_INLINE_LINK = re.compile(r"\]\(([^)\s]+)\)")
_REFERENCE_LINK = re.compile(r"^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def links(page: Path) -> list[str]:
    text = page.read_text()
    return _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)


def in_repository(link: str) -> Path:
    """The file of this repository that an absolute README link names."""
    path = link.removeprefix(REPOSITORY_URL).split("#", 1)[0]
    for prefix in ("blob/main/", "tree/main/"):
        if path.startswith(prefix):
            return ROOT / path.removeprefix(prefix)
    raise AssertionError(f"not a link to a file on main: {link}")


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, "the README is the front page: reference material goes to docs/"
    first_demo = next(n for n, line in enumerate(lines) if "make demo" in line)
    assert first_demo < 40, "the two set-up commands belong near the top"
    assert any("make test" in line for line in lines[first_demo : first_demo + 3])
    # A package index page shows the README without the repository: relative links break.
    assert [link for link in links(README) if not link.startswith("https://")] == []
    linked = {in_repository(link) for link in links(README) if link.startswith(REPOSITORY_URL)}
    assert set((ROOT / "docs").glob("*.md")) <= linked, "every docs page is linked"


@pytest.mark.parametrize(
    "link", [link for link in links(README) if link.startswith(REPOSITORY_URL)]
)
def test_readme_links_exist(link: str) -> None:
    assert in_repository(link).exists(), link


@pytest.mark.parametrize(
    ("page", "link"),
    [
        (page.name, link)
        for page in sorted((ROOT / "docs").glob("*.md"))
        for link in links(page)
        if not link.startswith(("https://", "http://", "#"))
    ],
)
def test_docs_links_exist(page: str, link: str) -> None:
    assert (ROOT / "docs" / link.split("#", 1)[0]).exists(), f"{page}: {link}"


def test_deploy_script_uploads_with_the_job_identity(
    job: Job, aws: FakeAWS, tmp_path: Path
) -> None:
    site = tmp_path / "public"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<h1>hello</h1>")
    (site / "css" / "site.css").write_text("h1 {}")
    aws.client("s3").create_bucket(Bucket="example-site")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "deploy.py"), "example-site", str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "Deploying as arn:aws:sts::123456789012:assumed-role/deploy/GitLabRunner-42-1001-5001"
        in result.stdout
    )
    assert "Uploaded 2 file(s)." in result.stdout
    keys = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket="example-site")["Contents"]]
    assert sorted(keys) == ["css/site.css", "index.html"]


def test_deploy_script_explains_a_refusal(job: Job, tmp_path: Path) -> None:
    job.token(project_path="someone/else")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "deploy.py"), "example-site", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Cannot get AWS credentials" in result.stderr
    assert "AccessDenied" in result.stderr


def test_gitlab_ci_example_matches_the_library() -> None:
    pipeline = yaml.safe_load((EXAMPLES / ".gitlab-ci.yml").read_text())
    jobs = {name: body for name, body in pipeline.items() if isinstance(body, dict)}
    assert jobs
    readable = {
        EnvVar.ROLE_ARN,
        EnvVar.TUTORIAL_ROLE_ARN,
        EnvVar.REGION,
        EnvVar.AWS_ID_TOKEN,
        EnvVar.GITLAB_OIDC_TOKEN,
        EnvVar.DURATION_SECONDS,
        EnvVar.ROLE_SESSION_NAME,
        *BOTOCORE_VARIABLES,
    }
    for name, body in jobs.items():
        tokens = body.get("id_tokens", {})
        assert tokens, f"{name} declares no id_tokens"
        for token in tokens.values():
            assert token["aud"].startswith("https://")
            assert not token["aud"].endswith("/")
        variables = set(body.get("variables", {}))
        profiles = _profiles(body.get("variables", {}))
        if EnvVar.ROLE_ARN not in variables:  # then profiles of its config file name the roles
            assert profiles, f"{name} names no role"
            assert any("gitlab_role_arn" in p for p in profiles.values()), name
        if "AWS_PROFILE" in variables:
            assert body["variables"]["AWS_PROFILE"] in profiles
        library_variables = {
            v for v in variables | set(tokens) if v.startswith(("AWS_", "GITLAB_"))
        }
        assert library_variables <= readable, library_variables - readable
        for line in body["script"]:
            for word in line.split():
                if word.startswith("examples/"):
                    assert (EXAMPLES.parent / word).exists(), word


BOTOCORE_VARIABLES = ("AWS_CONFIG_FILE", "AWS_PROFILE", "AWS_DEFAULT_REGION")
"""Variables that botocore itself reads, and jobs may set."""


def _profiles(variables: dict[str, str]) -> dict[str, dict[str, str]]:
    """The profiles of the AWS config file a job names in AWS_CONFIG_FILE."""
    path = variables.get("AWS_CONFIG_FILE")
    if path is None:
        return {}
    config = configparser.ConfigParser()
    assert path.startswith("$CI_PROJECT_DIR/"), path
    assert config.read(EXAMPLES.parent / path.removeprefix("$CI_PROJECT_DIR/")), path
    return {
        section.removeprefix("profile "): dict(config[section]) for section in config.sections()
    }


def _pipeline_job(name: str) -> dict[str, Any]:
    jobs: dict[str, dict[str, Any]] = yaml.safe_load((EXAMPLES / ".gitlab-ci.yml").read_text())
    return jobs[name]


def run_ci_job(name: str) -> subprocess.CompletedProcess[str]:
    """Run a job of examples/.gitlab-ci.yml here, with the current (fake) job's variables
    plus the job's own, and its script minus the ``pip install`` lines."""
    body = _pipeline_job(name)
    project_dir = str(EXAMPLES.parent)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "CI_PROJECT_DIR": project_dir,
        "PYTEST_ADDOPTS": "-p no:cacheprovider",
    }
    for variable, value in body.get("variables", {}).items():
        env[variable] = str(value).replace("$CI_PROJECT_DIR", project_dir)
    script = [line for line in body["script"] if not line.startswith("pip install")]
    return subprocess.run(
        ["/bin/sh", "-ec", "\n".join(script)],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("whoami", "assumed-role/ci-read-only/GitLabRunner-42-1001-5001"),
        ("aws-cli-env", "assumed-role/ci-read-only/GitLabRunner-42-1001-5001"),
        ("aws-cli-profile", "ci-read-only-listing"),  # `aws s3 ls` lists the bucket
        ("pytest-suite", "4 passed"),  # its real-job test runs too: there is a token here
        ("django-report", "Published s3://my-reports-bucket/reports/pipeline-1001.txt"),
    ],
)
def test_gitlab_ci_job_runs(name: str, expected: str, job: Job, aws: FakeAWS) -> None:
    # The roles and buckets the jobs name, in the fake account (which is the file's too).
    job.fake.role("ci-read-only")
    s3 = aws.client("s3")
    for bucket in ("ci-read-only-listing", "my-reports-bucket"):
        s3.create_bucket(Bucket=bucket)
    result = run_ci_job(name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected in result.stdout


def test_two_accounts_script_uses_one_role_per_profile(job: Job, aws: FakeAWS) -> None:
    # Like examples/aws-config, with roles of the fake account.
    job.config_file.write_text(
        f"[profile staging]\ngitlab_role_arn = arn:aws:iam::{ACCOUNT_ID}:role/staging\n"
        f"[profile production]\ngitlab_role_arn = arn:aws:iam::{ACCOUNT_ID}:role/prod\n"
        "duration_seconds = 900\n"
    )
    job.set(AWS_ROLE_ARN=None)
    s3 = aws.client("s3")
    for bucket in ("two-accounts-staging", "two-accounts-production"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="two-accounts-staging", Key="app.tar.gz", Body=b"build 7")

    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "two_accounts.py"),
            "two-accounts-staging",
            "two-accounts-production",
            "app.tar.gz",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    session = "GitLabRunner-42-1001-5001"
    assert f"staging    account {ACCOUNT_ID} as " in result.stdout
    assert f":assumed-role/staging/{session}\n" in result.stdout
    assert f":assumed-role/prod/{session}\n" in result.stdout
    copied = s3.get_object(Bucket="two-accounts-production", Key="app.tar.gz")
    assert copied["Body"].read() == b"build 7"
    calls = sorted((c.role_arn.rsplit("/", 1)[-1], c.duration_seconds) for c in aws.sts.calls)
    assert calls == [("prod", 900), ("staging", 3600)]


def test_example_aws_config_matches_the_library() -> None:
    profiles = _profiles({"AWS_CONFIG_FILE": "$CI_PROJECT_DIR/examples/aws-config"})
    for name in ("staging", "production"):
        assert profiles[name]["gitlab_role_arn"].startswith("arn:aws:iam::")
        assert "role_arn" not in profiles[name]  # botocore's assume-role provider would claim it
    assert shlex.split(profiles["gitlab"]["credential_process"]) == [
        "gitlab-botocore",
        "credential-process",
    ]
