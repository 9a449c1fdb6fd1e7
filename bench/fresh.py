"""Fresh processes: the time a CI job feels, from ``boto3.Session()`` to the first answer.

Each trial is a new Python process that imports boto3, starts the clock, (for ours)
imports gitlab_botocore, creates a session and a client and makes one call. The two
sides run in alternating pairs (ours first in even pairs, native first in odd ones) so
that a change in the machine's load falls on both; the local STS delays its
``AssumeRoleWithWebIdentity`` answers by each latency in turn. See bench/README.md.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stage import NATIVE, OURS, Stage

LATENCIES_SECONDS = (0.0, 0.05, 0.15)
SERVICES = ("s3", "sts")
TARGET_RATIO = 1.00
CHILD = """
import json, sys, time
import boto3

side, service = sys.argv[1:3]
started, cpu_started = time.perf_counter(), time.process_time()
if side == "ours":
    import gitlab_botocore
session = boto3.Session()
client = session.client(service)
if service == "s3":
    client.list_buckets()
else:
    client.get_caller_identity()
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
method = session.get_credentials().method
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "method": method}))
"""
EXPECTED_METHOD = {OURS: "gitlab-oidc", NATIVE: "assume-role-with-web-identity"}


@dataclass(frozen=True)
class Cell:
    """The trials of one latency and one service."""

    latency: float
    service: str
    ours: tuple[float, ...]
    native: tuple[float, ...]
    ours_cpu: tuple[float, ...]
    native_cpu: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """Median of ours over median of native: the figure the target applies to."""
        return statistics.median(self.ours) / statistics.median(self.native)

    @property
    def cpu_ratio(self) -> float:
        """The same for CPU time (all threads): what each side computes, whatever the load."""
        return statistics.median(self.ours_cpu) / statistics.median(self.native_cpu)

    @property
    def pair_ratios(self) -> list[float]:
        return sorted(o / n for o, n in zip(self.ours, self.native))


def child_environments(stage: Stage, extra_ours: Mapping[str, str]) -> dict[str, dict[str, str]]:
    environments = {}
    for side in (OURS, NATIVE):
        environment = stage.child_environment(side)
        # As installed from a wheel: with compiled bytecode (kept out of the source tree).
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        environment["PYTHONPYCACHEPREFIX"] = str(stage.workdir / "pycache")
        if side == OURS:
            environment.update(extra_ours)
        environments[side] = environment
    return environments


BENCH_DIR = str(Path(__file__).resolve().parent)


def run_child(
    environment: Mapping[str, str],
    side: str,
    service: str,
    cwd: Path | None = None,
) -> tuple[float, float]:
    """Seconds from the clock's start to the first answer in a new process, and the CPU
    seconds the process spent meanwhile."""
    arguments = ["ours" if side == OURS else "native", service]
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *arguments],
        env=dict(environment),
        # Not the source tree: `python -c` puts the working directory first on sys.path.
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"a {side} child failed: {result.stderr}")
    answer = json.loads(result.stdout)
    if answer["method"] != EXPECTED_METHOD[side]:
        raise RuntimeError(f"a {side} child resolved credentials with {answer['method']}")
    return float(answer["seconds"]), float(answer["cpu_seconds"])


def fresh_processes(
    stage: Stage,
    pairs: int,
    *,
    latencies: Sequence[float] = LATENCIES_SECONDS,
    services: Sequence[str] = SERVICES,
    extra_ours: Mapping[str, str] | None = None,
) -> list[Cell]:
    """``pairs`` alternating pairs of children per latency and service.

    ``extra_ours`` adds variables to our side's environment.
    """
    environments = child_environments(stage, extra_ours or {})
    for side in (OURS, NATIVE):  # compiles bytecode; not timed
        run_child(environments[side], side, services[0], stage.workdir)
    cells = []
    try:
        for latency in latencies:
            for service in services:
                stage.reset()
                stage.aws.sts.set_latency(latency)
                times: dict[str, list[float]] = {OURS: [], NATIVE: []}
                cpu: dict[str, list[float]] = {OURS: [], NATIVE: []}
                for pair in range(pairs):
                    order = (OURS, NATIVE) if pair % 2 == 0 else (NATIVE, OURS)
                    for side in order:
                        elapsed, spent = run_child(environments[side], side, service, stage.workdir)
                        times[side].append(elapsed)
                        cpu[side].append(spent)
                if stage.sts_calls != 2 * pairs:  # one exchange per process, either side
                    raise RuntimeError(f"{stage.sts_calls} STS calls for {2 * pairs} processes")
                cells.append(
                    Cell(
                        latency,
                        service,
                        tuple(times[OURS]),
                        tuple(times[NATIVE]),
                        tuple(cpu[OURS]),
                        tuple(cpu[NATIVE]),
                    )
                )
    finally:
        stage.reset()
    return cells


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, high


def table(cells: Sequence[Cell]) -> str:
    header = (
        "STS latency",
        "client",
        "pairs",
        f"{OURS} median",
        f"{NATIVE} median",
        "ours / native",
        "pair ratios p25-p75",
        "target",
        "met",
        "CPU ours / native",
    )
    rows = [header]
    for cell in cells:
        low, high = _quartiles(cell.pair_ratios)
        rows.append(
            (
                f"{cell.latency * 1000:.0f} ms",
                cell.service.upper(),
                str(len(cell.ours)),
                f"{statistics.median(cell.ours) * 1000:.1f} ms",
                f"{statistics.median(cell.native) * 1000:.1f} ms",
                f"{cell.ratio:.3f}",
                f"{low:.3f} to {high:.3f}",
                f"≤ {TARGET_RATIO:.2f} x native",
                "yes" if cell.ratio <= TARGET_RATIO else "NO",
                f"{statistics.median(cell.ours_cpu) * 1000:.0f} / "
                f"{statistics.median(cell.native_cpu) * 1000:.0f} ms = {cell.cpu_ratio:.3f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])
