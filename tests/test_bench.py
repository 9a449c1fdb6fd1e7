"""The benchmark command runs and prints its tables (quick mode; timings are not checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitlab_botocore.testing.sts import FakeAWS

from .conftest import Job

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_quick_benchmark_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, str(RUN), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Machine: ")
    assert "quick mode" in lines[0]
    tables = _tables(lines)
    assert len(tables) == 2
    rows = tables[0]
    assert rows[0] == [
        "Figure",
        "gitlab-botocore",
        "botocore native",
        "ours / native",
        "target",
        "met",
    ]
    figures = [row[0] for row in rows[2:]]
    assert {figure.split(".")[0] for figure in figures} == {"1", "2", "3", "4", "5", "6"}
    assert all(len(row) == 6 for row in rows)
    # Call counts do not depend on the machine: those targets hold even in quick mode.
    counted = [row for row in rows[2:] if row[0].startswith(("1. STS calls", "6. STS calls"))]
    assert [row[1] for row in counted] == ["1", "3", "1"]
    assert "3. warm process: new session to first signed request, median" in figures

    fresh = tables[1]
    assert fresh[0][:6] == [
        "STS latency",
        "client",
        "pairs",
        "gitlab-botocore median",
        "botocore native median",
        "ours / native",
    ]
    cells = [(row[0], row[1], row[2]) for row in fresh[2:]]
    assert cells == [
        (f"{latency} ms", client, "2") for latency in (0, 50, 150) for client in ("S3", "STS")
    ]
    for row in fresh[2:]:
        ours, native = (float(cell.removesuffix(" ms")) for cell in row[3:5])
        assert float(row[5]) == pytest.approx(ours / native, abs=0.002)


def _tables(lines: list[str]) -> list[list[list[str]]]:
    """The Markdown tables in the output, each a list of rows of stripped cells."""
    tables: list[list[list[str]]] = []
    previous = ""
    for line in lines:
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append([cell.strip() for cell in line.strip("|").split("|")])
        previous = line
    return tables


# -- the overlap experiment (bench/overlap.py): its contracts, in child processes ---------

OVERLAP_CHILD = """
import json, sys, threading
import boto3
import gitlab_botocore
sys.path.insert(0, sys.argv[1])
if sys.argv[2]:
    import overlap
    overlap.install(sys.argv[2])
outcome = {"threads_after_import": threading.active_count()}
def use():
    boto3.Session().client("s3").list_buckets()
try:
    if sys.argv[3] == "threads":
        workers = [threading.Thread(target=use) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        use()
    else:
        outcome["credentials"] = boto3.Session().get_credentials() is not None
        outcome["threads"] = threading.active_count()
        use()
except gitlab_botocore.GitLabOIDCError as error:
    outcome["error"] = f"{type(error).__name__}: {error}"
except Exception as error:
    outcome["other"] = type(error).__name__
print(json.dumps(outcome))
"""


def _overlap_child(mode: str, scenario: str, cwd: Path) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", OVERLAP_CHILD, str(RUN.parent), mode, scenario],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, object] = json.loads(result.stdout)
    return outcome


@pytest.mark.parametrize("mode", ["resolve", "import"])
def test_overlap_experiment_makes_one_call_for_every_thread(
    job: Job, aws: FakeAWS, tmp_path: Path, mode: str
) -> None:
    outcome = _overlap_child(mode, "threads", tmp_path)
    assert "error" not in outcome
    assert "other" not in outcome
    assert aws.sts.assume_role_calls == 1


@pytest.mark.parametrize("mode", ["resolve", "import"])
def test_overlap_experiment_raises_the_same_error_on_first_use(
    job: Job, aws: FakeAWS, tmp_path: Path, mode: str
) -> None:
    job.token(project_path="other/project")  # no role trusts it: AccessDenied
    plain = _overlap_child("", "single", tmp_path)
    calls_without = aws.sts.assume_role_calls
    aws.sts.reset()
    overlapped = _overlap_child(mode, "single", tmp_path)
    assert str(overlapped["error"]).startswith("AccessDeniedError: ")
    assert overlapped["error"] == plain["error"]
    assert aws.sts.assume_role_calls == calls_without


@pytest.mark.parametrize("mode", ["resolve", "import"])
def test_overlap_experiment_starts_nothing_when_the_provider_does_not_apply(
    job: Job, aws: FakeAWS, tmp_path: Path, mode: str
) -> None:
    job.set(AWS_ROLE_ARN=None)  # a token for Vault, say, but no role
    outcome = _overlap_child(mode, "single", tmp_path)
    assert outcome["threads_after_import"] == 1
    assert outcome["credentials"] is False
    assert outcome["threads"] == 1
    assert aws.sts.assume_role_calls == 0


FORK_CHILD = """
import os, signal, sys
import boto3
import gitlab_botocore
sys.path.insert(0, sys.argv[1])
import overlap
overlap.install("resolve")
client = boto3.Session().client("s3")  # the request is now in flight (STS is slow)
pid = os.fork()
if pid == 0:
    signal.alarm(60)  # should it hang, it must not outlive the test
    client.list_buckets()  # the forked child has no sending thread: it must fetch itself
    os._exit(0)
client.list_buckets()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_overlap_experiment_child_forked_mid_request_fetches_for_itself(
    job: Job, aws: FakeAWS, tmp_path: Path
) -> None:
    aws.sts.set_latency(1.0)
    result = subprocess.run(
        [sys.executable, "-c", FORK_CHILD, str(RUN.parent)],
        capture_output=True,
        text=True,
        timeout=120,  # a child waiting for the parent's thread would hang here
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert aws.sts.assume_role_calls == 2  # one for the parent, one for the forked child
