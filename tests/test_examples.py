"""The examples run, so they cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from gitlab_botocore.settings import EnvVar
from gitlab_botocore.testing.sts import FakeAWS

from .conftest import Job

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
    assert "assumed-role/demo-deploy/GitLabRunner-42-1001-5001" in result.stdout
    assert "STS calls            1 for 11 sessions" in result.stdout
    assert "refused: AccessDeniedError" in result.stdout


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
    }
    for name, body in jobs.items():
        tokens = body.get("id_tokens", {})
        assert tokens, f"{name} declares no id_tokens"
        for token in tokens.values():
            assert token["aud"].startswith("https://")
            assert not token["aud"].endswith("/")
        variables = set(body.get("variables", {}))
        assert EnvVar.ROLE_ARN in variables
        library_variables = {
            v for v in variables | set(tokens) if v.startswith(("AWS_", "GITLAB_"))
        }
        assert library_variables <= readable, library_variables - readable
        for line in body["script"]:
            for word in line.split():
                if word.startswith("examples/"):
                    assert (EXAMPLES.parent / word).exists(), word
