"""The ``gitlab-botocore`` console script, run for real in subprocesses."""

from __future__ import annotations

import datetime
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dotenv
import pytest
import trustme

from gitlab_botocore import GitLabOIDCError
from gitlab_botocore.testing.aws import FakeAWS
from gitlab_botocore.testing.faults import Fault
from gitlab_botocore.testing.issuer import FakeGitLab
from gitlab_botocore.testing.sts_wire import credentials_body
from gitlab_botocore.tools import cli, commands

from .conftest import ACCOUNT_ID, Job

BIN = Path(sys.executable).parent
COMMAND = str(BIN / "gitlab-botocore")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env if env is not None else dict(os.environ),
    )


def secrets_of(job: Job) -> list[str]:
    token = job.variables["GITLAB_OIDC_TOKEN"]
    return [token, token.split(".")[2]]


def test_credential_process_prints_the_aws_format(job: Job, aws: FakeAWS) -> None:
    result = run("credential-process")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["Version"] == 1
    assert document["AccessKeyId"].startswith("ASIA")
    assert document["SecretAccessKey"]
    assert document["SessionToken"]
    assert document["Expiration"].endswith("Z")
    assert document["AccountId"] == ACCOUNT_ID
    assert aws.sts.calls[0].session_name == "GitLabRunner-42-1001-5001"


def test_options_override_the_environment(job: Job, aws: FakeAWS) -> None:
    result = run(
        "credential-process",
        "--role-arn",
        f"arn:aws:iam::{ACCOUNT_ID}:role/reader",
        "--session-name",
        "cli-session",
        "--duration-seconds",
        "900",
    )
    assert result.returncode == 0, result.stderr
    (call,) = aws.sts.calls
    assert (call.role_arn, call.session_name, call.duration_seconds) == (
        f"arn:aws:iam::{ACCOUNT_ID}:role/reader",
        "cli-session",
        900,
    )


@pytest.mark.parametrize("position", ["before", "after"])
def test_common_options_go_before_or_after_the_command(
    job: Job, aws: FakeAWS, position: str
) -> None:
    options = ["--role-arn", f"arn:aws:iam::{ACCOUNT_ID}:role/reader", "--session-name", "cli"]
    command = ["credential-process"]
    result = run(*(options + command if position == "before" else command + options))
    assert result.returncode == 0, result.stderr
    (call,) = aws.sts.calls
    assert (call.role_arn, call.session_name) == (f"arn:aws:iam::{ACCOUNT_ID}:role/reader", "cli")


def test_parser_keeps_common_options_from_either_side() -> None:
    from gitlab_botocore.tools.cli import build_parser

    parser = build_parser()
    before = parser.parse_args(["--role-arn", "X", "--duration-seconds", "900", "doctor"])
    after = parser.parse_args(["doctor", "--role-arn", "X", "--duration-seconds", "900"])
    neither = parser.parse_args(["doctor"])
    both = parser.parse_args(["--region", "eu-west-1", "doctor", "--region", "us-east-2"])
    for args in (before, after):
        assert (args.command, args.role_arn, args.duration_seconds) == ("doctor", "X", 900)
        assert args.profile is None
    assert (neither.role_arn, neither.region, neither.role_session_name) == (None, None, None)
    assert both.region == "us-east-2"  # the one nearer the command's own options wins


def test_role_arn_before_doctor_is_not_taken_for_a_command(job: Job) -> None:
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/deploy"
    job.set(AWS_ROLE_ARN=None)
    result = run("--role-arn", role, "doctor")
    assert "invalid choice" not in result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok    Role                {role}" in result.stdout


def test_failure_exits_non_zero_with_the_reason_on_stderr(job: Job) -> None:
    job.set(AWS_ROLE_ARN=None)
    result = run("credential-process")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "No role configured: pass --role-arn, set AWS_ROLE_ARN" in result.stderr


def test_refusal_is_explained_without_secrets(job: Job) -> None:
    job.token(project_path="other/project")
    result = run("credential-process")
    assert result.returncode == 1
    assert "AccessDenied" in result.stderr
    assert "StringLike" in result.stderr
    for secret in secrets_of(job):
        assert secret not in result.stderr


def test_env_evaluates_in_a_shell(job: Job) -> None:
    script = f'eval "$({COMMAND} env)" && echo "$AWS_ACCESS_KEY_ID $AWS_CREDENTIAL_EXPIRATION"'
    result = subprocess.run(
        ["/bin/sh", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    key, expiration = result.stdout.split()
    assert key.startswith("ASIA")
    assert expiration.endswith("Z")


@pytest.mark.parametrize("fmt", ["json", "dotenv"])
def test_env_formats(job: Job, fmt: str) -> None:
    result = run("env", "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # into a pipe: no warning
    if fmt == "json":
        variables = json.loads(result.stdout)
    else:
        variables = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert set(variables) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
    }


def test_env_format_has_help() -> None:
    result = run("env", "--help")
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    for fmt in ("sh:", "json:", "dotenv:"):
        assert fmt in help_text


@pytest.mark.parametrize("command", ["env", "credential-process"])
def test_credentials_on_a_terminal_come_with_a_warning(job: Job, command: str) -> None:
    pty = pytest.importorskip("pty")
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [COMMAND, command],
            stdout=terminal,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0, result.stderr
    assert f"gitlab-botocore {command}: warning: this prints live AWS credentials" in (
        result.stderr
    )
    for secret in secrets_of(job):
        assert secret not in result.stderr


def test_whoami(job: Job) -> None:
    result = run("whoami")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["Account"] == ACCOUNT_ID
    assert (
        lines["ARN"] == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/GitLabRunner-42-1001-5001"
    )
    assert lines["Session"] == "GitLabRunner-42-1001-5001"
    assert "min)" in lines["Expires"]
    assert "\033[" not in result.stdout  # no colour into a pipe


def test_whoami_json_via_python_m(job: Job) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gitlab_botocore", "whoami", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    identity = json.loads(result.stdout)
    assert identity["SessionName"] == "GitLabRunner-42-1001-5001"
    assert set(identity) == {"Account", "Arn", "SessionName", "Expiration"}


# -- credential_process with the AWS CLI, and role chaining through source_profile ---------


@pytest.fixture
def aws_config(job: Job, chained_role_arn: str, tmp_path: Path) -> Path:
    chained = chained_role_arn
    job.set(HOME=str(tmp_path))  # the AWS CLI caches assumed roles under ~/.aws/cli/cache
    config = Path(os.environ["AWS_CONFIG_FILE"])
    config.write_text(
        f"[profile gitlab]\ncredential_process = {COMMAND} credential-process\n"
        "region = us-east-1\n\n"
        f"[profile deploy-target]\nrole_arn = {chained}\nsource_profile = gitlab\n"
        "region = us-east-1\n"
    )
    return config


def aws_cli() -> Path:
    """The AWS CLI of the dev group; Python 3.9 has no awscli that bundles its botocore."""
    if not (BIN / "aws").exists():
        pytest.skip("awscli is not installed (the dev group installs it on Python 3.10+)")
    return BIN / "aws"


def test_aws_cli_authenticates_through_credential_process(aws_config: Path) -> None:
    result = subprocess.run(
        [str(aws_cli()), "sts", "get-caller-identity", "--profile", "gitlab", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    arn = json.loads(result.stdout)["Arn"]
    assert arn == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/GitLabRunner-42-1001-5001"


def test_aws_cli_chains_a_role_through_source_profile(aws_config: Path) -> None:
    result = subprocess.run(
        [str(aws_cli()), "sts", "get-caller-identity", "--profile", "deploy-target"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ":assumed-role/chained-target/" in json.loads(result.stdout)["Arn"]


def test_boto3_chains_a_role_through_source_profile(aws_config: Path) -> None:
    import boto3

    arn = boto3.Session(profile_name="deploy-target").client("sts").get_caller_identity()["Arn"]
    assert ":assumed-role/chained-target/" in arn


# -- doctor -------------------------------------------------------------------------------


@dataclass
class HttpsIssuer:
    gitlab: FakeGitLab
    ca_file: Path


def serve_https(tmp_path: Path, *, order: str) -> tuple[FakeGitLab, Path]:
    import ssl

    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("127.0.0.1")
    key = leaf.private_key_pem.bytes()
    leaf_pem, intermediate_pem = (blob.bytes() for blob in leaf.cert_chain_pems[:2])
    served = {
        "good": [leaf_pem, intermediate_pem],
        "reversed": [leaf_pem, root.cert_pem.bytes(), intermediate_pem],
    }[order]
    chain_file = tmp_path / f"chain-{order}.pem"
    chain_file.write_bytes(key + b"".join(served))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain_file)
    ca_file = tmp_path / "ca.pem"
    root.cert_pem.write_to_path(str(ca_file))
    return FakeGitLab(ssl_context=context), ca_file


@pytest.fixture(params=["good", "reversed"])
def https_job(
    request: pytest.FixtureRequest, job: Job, aws: FakeAWS, tmp_path: Path
) -> Iterator[Job]:
    if sys.version_info < (3, 10):
        pytest.skip("the doctor's certificate chain check needs Python 3.10+")
    gitlab, ca_file = serve_https(tmp_path, order=request.param)
    with gitlab:
        host = gitlab.issuer.split("://", 1)[1]
        provider = aws.create_oidc_provider(gitlab.issuer)
        name = f"doctor-{host.replace(':', '-').replace('.', '-')}"
        policy = aws.trust_policy_for(provider, sub="project_path:mygroup/myproject:*", like=True)
        role = aws.create_role(name, policy)
        job.set(
            SSL_CERT_FILE=str(ca_file),  # trust the test CA, here and in the subprocess
            CI_SERVER_URL=gitlab.issuer,
            AWS_ROLE_ARN=role,
            GITLAB_OIDC_TOKEN=gitlab.mint(),
        )
        job.variables["order"] = request.param
        yield job


def test_doctor_checks_each_step(https_job: Job) -> None:
    result = run("doctor")
    output = result.stdout
    for secret in secrets_of(https_job):
        assert secret not in output + result.stderr
    status = {line.split()[1]: line.split()[0] for line in output.splitlines()[:-1]}
    assert status["ID"] == "ok"  # "ID token"
    assert status["Claims"] == "ok"
    assert status["Issuer"] == "ok"
    assert status["Role"] == "ok"
    assert status["Discovery"] == "ok"
    assert status["Signing"] == "ok"
    assert status["STS"] == "ok"
    if https_job.variables["order"] == "good":
        assert status["Certificate"] == "ok"
        assert result.returncode == 0, output
        assert output.endswith("All checks passed.\n")
    else:
        assert status["Certificate"] == "FAIL"
        assert "did not issue certificate 1" in output
        assert "out of order" in output
        assert result.returncode == 1


def test_doctor_json(https_job: Job) -> None:
    result = run("doctor", "--json")
    report = json.loads(result.stdout)
    names = [check["name"] for check in report["checks"]]
    assert names[:4] == ["ID token", "Claims", "Issuer", "Role"]
    assert "STS exchange" in names
    assert report["ok"] is (https_job.variables["order"] == "good")


def test_doctor_pinpoints_an_unreachable_issuer(job: Job, aws: FakeAWS) -> None:
    with FakeGitLab(issuer="https://127.0.0.1:9") as gitlab:
        job.set(
            CI_SERVER_URL="https://127.0.0.1:9",
            GITLAB_OIDC_TOKEN=gitlab.mint(),
            GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="0",
        )
        result = run("doctor")
    assert result.returncode == 1
    assert "FAIL  Discovery document  https://127.0.0.1:9/.well-known/openid-configuration" in (
        result.stdout
    )
    assert "unreachable from here" in result.stdout
    assert "FAIL  STS exchange" in result.stdout


def test_doctor_passes_against_the_local_fakes(job: Job) -> None:
    result = run("doctor")
    assert result.returncode == 0, result.stdout
    assert "skip  Discovery document  skipped: " in result.stdout
    assert "is a local test issuer (HTTP on a loopback address)" in result.stdout
    assert "ok    STS exchange" in result.stdout
    assert result.stdout.endswith("All checks passed.\n")


def test_doctor_fails_a_plain_http_issuer_that_is_not_local(job: Job, aws: FakeAWS) -> None:
    with FakeGitLab(issuer="http://gitlab.example.com") as gitlab:
        job.set(
            CI_SERVER_URL=gitlab.issuer,
            GITLAB_OIDC_TOKEN=gitlab.mint(),
            GITLAB_BOTOCORE_RETRY_BUDGET_SECONDS="0",
        )
        result = run("doctor")
    assert result.returncode == 1
    assert "FAIL  Discovery document  issuer 'http://gitlab.example.com' is not an https://" in (
        result.stdout
    )


def test_doctor_without_token_or_role(job: Job) -> None:
    job.set(GITLAB_OIDC_TOKEN=None, AWS_ROLE_ARN=None)
    result = run("doctor")
    assert result.returncode == 1
    assert "FAIL  ID token" in result.stdout
    assert "No GitLab ID token found" in result.stdout
    assert "no role configured" in result.stdout
    assert "skip  STS exchange" in result.stdout


# -- trust-policy ---------------------------------------------------------------------------


def test_trust_policy_for_this_job(job: Job) -> None:
    result = run("trust-policy")
    assert result.returncode == 0, result.stderr
    policy = json.loads(result.stdout)
    host = job.gitlab.issuer.split("://", 1)[1]
    (statement,) = policy["Statement"]
    assert statement["Principal"]["Federated"] == (
        f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{host}"
    )
    assert statement["Condition"]["StringEquals"][f"{host}:sub"] == [
        "project_path:mygroup/myproject:ref_type:branch:ref:main"
    ]
    assert "StringLike" not in statement["Condition"]


def test_trust_policy_any_branch_uses_string_like(job: Job) -> None:
    result = run("trust-policy", "--any-branch")
    assert result.returncode == 0, result.stderr
    condition = json.loads(result.stdout)["Statement"][0]["Condition"]
    host = job.gitlab.issuer.split("://", 1)[1]
    assert condition["StringLike"][f"{host}:sub"] == [
        "project_path:mygroup/myproject:ref_type:branch:ref:*"
    ]


def test_trust_policy_protected_only_explains_the_aws_limit(job: Job) -> None:
    result = run("trust-policy", "--protected-only")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "protected" in result.stderr


def test_trust_policy_check(job: Job, tmp_path: Path) -> None:
    generated = run("trust-policy", "--any-branch").stdout
    policy_file = tmp_path / "trust.json"
    policy_file.write_text(generated)
    admitted = run("trust-policy", "--check", str(policy_file))
    assert admitted.returncode == 0, admitted.stdout + admitted.stderr
    assert admitted.stdout.startswith("Admits this job")

    job.token(project_path="other/project")
    refused = run("trust-policy", "--check", str(policy_file), "--json")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["admits"] is False


def test_trust_policy_check_flags_a_policy_without_sub(job: Job, tmp_path: Path) -> None:
    policy = json.loads(run("trust-policy").stdout)
    conditions = policy["Statement"][0]["Condition"]
    for operator in list(conditions):
        conditions[operator] = {k: v for k, v in conditions[operator].items() if ":sub" not in k}
        if not conditions[operator]:
            del conditions[operator]
    policy_file = tmp_path / "open.json"
    policy_file.write_text(json.dumps(policy))
    result = run("trust-policy", "--check", str(policy_file), "--json")
    report = json.loads(result.stdout)
    assert report["admits"] is True
    assert any(finding["severity"] == "security" for finding in report["findings"])
    assert result.returncode == 1


# -- failures: one message, never a traceback (issue 10, items 4 and 5) -------------------

DOCTORED_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def doctored_reply(**values: str) -> Fault:
    expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    fields = {
        "access_key": "ASIAEXAMPLEEXAMPLE12",
        "secret_key": DOCTORED_SECRET,
        "session_token": "FwoGZXIvYXdzEXAMPLETOKEN",
        "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **values,
    }
    return Fault.reply(credentials_body(**fields))


BROKEN_STS = [
    pytest.param(
        Fault.reply("<html><body>Proxy login</body></html>", 200, "text/html"), id="html-200"
    ),
    pytest.param(Fault.reply(b""), id="empty-200"),
    pytest.param(doctored_reply(secret_key=DOCTORED_SECRET + "\nAWS_ROLE_ARN=x"), id="newline"),
]


@pytest.mark.parametrize("command", ["credential-process", "env", "whoami"])
@pytest.mark.parametrize("fault", BROKEN_STS)
def test_a_broken_sts_reply_exits_1_with_one_message(
    job: Job, aws: FakeAWS, command: str, fault: Fault
) -> None:
    aws.sts.inject(fault)
    result = run(command)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"gitlab-botocore {command}: AWS STS at {aws.sts.url}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert DOCTORED_SECRET not in result.stderr


def test_an_unreachable_sts_exits_1_quickly_with_one_message(job: Job) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    job.set(AWS_ENDPOINT_URL_STS=f"http://127.0.0.1:{port}")
    result = run("credential-process")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"Could not reach AWS STS at http://127.0.0.1:{port}" in result.stderr
    assert "(after 3 attempts)" in result.stderr


def test_a_bug_says_so_and_how_to_see_the_traceback(
    job: Job, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(context: object, out: object) -> int:
        raise AttributeError("'NoneType' object has no attribute 'claims'")

    monkeypatch.setattr(cli, "cmd_whoami", broken)  # a stand-in for a real bug
    assert cli.main(["whoami"], environ=dict(os.environ)) == 1
    quiet = capsys.readouterr()
    assert "Traceback" not in quiet.err
    assert "unexpected error, AttributeError: 'NoneType' object has no attribute" in quiet.err
    assert "GITLAB_BOTOCORE_DEBUG=1 prints it" in quiet.err
    assert cli.main(["whoami"], environ={**os.environ, "GITLAB_BOTOCORE_DEBUG": "1"}) == 1
    loud = capsys.readouterr()
    assert loud.err.startswith("Traceback (most recent call last):")
    assert "in broken" in loud.err


def test_a_closed_pipe_is_no_traceback(job: Job) -> None:
    # The reader is gone before the credentials are written: the write hits a closed pipe.
    script = f"{COMMAND} env --format json | true"
    result = subprocess.run(
        ["/bin/bash", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr


# -- dotenv output -----------------------------------------------------------------------


def test_dotenv_output_round_trips_through_python_dotenv(job: Job, aws: FakeAWS) -> None:
    # Odd but printable: what a non-AWS STS could hand out, and what naive quoting breaks.
    odd_token = "Fwo'quoted\"$HOME#not-a-comment\\back"
    aws.sts.inject(doctored_reply(session_token=odd_token))
    result = run("env", "--format", "dotenv")
    assert result.returncode == 0, result.stderr
    values = dotenv.dotenv_values(stream=io.StringIO(result.stdout))
    assert values == {
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEEXAMPLE12",
        "AWS_SECRET_ACCESS_KEY": DOCTORED_SECRET,
        "AWS_SESSION_TOKEN": odd_token,
        "AWS_CREDENTIAL_EXPIRATION": values["AWS_CREDENTIAL_EXPIRATION"],
    }
    assert len(result.stdout.splitlines()) == 4


def test_real_dotenv_credentials_work(job: Job, aws: FakeAWS) -> None:
    result = run("env", "--format", "dotenv")
    assert result.returncode == 0, result.stderr
    values = dotenv.dotenv_values(stream=io.StringIO(result.stdout))
    identity = aws.client(
        "sts",
        aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=values["AWS_SESSION_TOKEN"],
    ).get_caller_identity()
    assert identity["Arn"].endswith("/GitLabRunner-42-1001-5001")


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a${HOME}b"])
def test_dotenv_refuses_what_it_cannot_carry(value: str) -> None:
    with pytest.raises(GitLabOIDCError, match="--format json"):
        commands.dotenv_quote(value)
