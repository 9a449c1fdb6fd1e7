"""Benchmarks: gitlab-botocore against botocore's own web identity provider.

Both run in the same invocation against the same local STS; the first table shows
each figure for both and their ratio (ours / native), the second the time a fresh
process takes to its first answered call, at three STS latencies. Figures, not
assertions: the "met" column compares with the targets of issues 6 and 13. See
bench/README.md.

    python bench/run.py                  # the full run (several minutes on 2 cores)
    python bench/run.py --quick          # smaller numbers, for a smoke test
    python bench/run.py --fresh-only --pairs 60   # only the fresh-process table
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore
import time_machine
from fresh import fresh_processes
from fresh import table as fresh_table
from stage import NATIVE, OURS, Stage

import gitlab_botocore

STS_LATENCY_SECONDS = 0.5
WAITED_SECONDS = STS_LATENCY_SECONDS / 2
"""A call this slow during a refresh waited for it (the STS answer takes 0.5 s)."""
HEAVY_MODULES = ("jwt", "cryptography", "moto", "werkzeug", "requests")
CHILD_RESOLVES = (
    "import gitlab_botocore, boto3\n"
    "credentials = boto3.Session().get_credentials()\n"
    "credentials.get_frozen_credentials()\n"
    "print(credentials.method)\n"
)


@dataclass(frozen=True)
class Sizes:
    sessions: int
    threads: int
    hot_calls: int
    cold_trials: int
    import_runs: int
    load_seconds: float
    processes: int
    fresh_pairs: int


FULL = Sizes(200, 8, 200_000, 25, 7, 2.0, 20, 30)
QUICK = Sizes(12, 4, 20_000, 3, 2, 1.0, 3, 2)


@dataclass(frozen=True)
class Row:
    figure: str
    ours: str
    native: str
    ratio: str
    target: str
    met: bool | None


def ratio(ours: float, native: float) -> str:
    return f"{ours / native:.3f}" if native else "n/a"


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else "yes" if met else "NO"


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def millis(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def micros(value: float) -> str:
    return f"{value * 1e6:.2f} µs"


# -- 1. many sessions across threads -------------------------------------------------------


def sessions_across_threads(stage: Stage, sizes: Sizes) -> list[Row]:
    def one_session(_: int) -> str:
        session = boto3.Session()
        session.client("s3")
        credentials = session.get_credentials()
        credentials.get_frozen_credentials()
        return str(credentials.method)

    results: dict[str, tuple[int, float]] = {}
    for side in (OURS, NATIVE):
        with stage.playing(side):
            stage.reset()
            started = time.perf_counter()
            with ThreadPoolExecutor(sizes.threads) as pool:
                methods = set(pool.map(one_session, range(sizes.sessions)))
            results[side] = (stage.sts_calls, time.perf_counter() - started)
            expected = "gitlab-oidc" if side == OURS else "assume-role-with-web-identity"
            assert methods == {expected}, f"{side} resolved credentials with {methods}"
    (ours_calls, ours_time), (native_calls, native_time) = results[OURS], results[NATIVE]
    shape = f"{sizes.sessions} sessions x {sizes.threads} threads"
    return [
        Row(
            f"1. STS calls, {shape}",
            str(ours_calls),
            str(native_calls),
            ratio(ours_calls, native_calls),
            "1 call",
            ours_calls == 1,
        ),
        Row(
            f"1. wall time, {shape}",
            seconds(ours_time),
            seconds(native_time),
            ratio(ours_time, native_time),
            "",
            None,
        ),
    ]


# -- 2. the hot path -------------------------------------------------------------------------


def hot_path(stage: Stage, sizes: Sizes) -> list[Row]:
    getters: dict[str, Callable[[], Any]] = {}
    for side in (OURS, NATIVE):
        with stage.playing(side):
            credentials = boto3.Session().get_credentials()
            credentials.get_frozen_credentials()  # warm
            getters[side] = credentials.get_frozen_credentials
    samples: dict[str, list[float]] = {OURS: [], NATIVE: []}
    overhead = statistics.median(_time_each(lambda: None, 10_000))
    block = 1000
    gc.disable()  # collections would land at random in either side's samples
    try:
        for _ in range(max(sizes.hot_calls // block, 1)):
            for side in (OURS, NATIVE):
                samples[side].extend(t - overhead for t in _time_each(getters[side], block))
    finally:
        gc.enable()
    rows = []
    for name, pick in (("median", statistics.median), ("p99", _p99)):
        ours, native = pick(samples[OURS]), pick(samples[NATIVE])
        rows.append(
            Row(
                f"2. hot path get_frozen_credentials(), {name}",
                micros(ours),
                micros(native),
                ratio(ours, native),
                "≤ 1.10 x native",
                ours <= 1.10 * native,
            )
        )
    return rows


def _time_each(function: Callable[[], Any], count: int) -> list[float]:
    clock = time.perf_counter_ns
    durations = [0.0] * count
    for index in range(count):
        started = clock()
        function()
        durations[index] = (clock() - started) / 1e9
    return durations


def _p99(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=100)[-1]


# -- 3. warm process ---------------------------------------------------------------------------


def warm_first_request(stage: Stage, sizes: Sizes) -> list[Row]:
    timings: dict[str, list[float]] = {OURS: [], NATIVE: []}
    for trial in range(sizes.cold_trials + 1):
        for side in (OURS, NATIVE):
            with stage.playing(side):
                # A collection of the garbage of earlier figures would land on whichever
                # side allocated last, in step with the alternation.
                gc.collect()
                gc.disable()
                try:
                    started = time.perf_counter()
                    boto3.Session().client("s3").list_buckets()
                    elapsed = time.perf_counter() - started
                finally:
                    gc.enable()
                if trial:  # the first round warms imports and connections
                    timings[side].append(elapsed)
    rows = []
    for name, pick in (("median", statistics.median), ("best", min)):
        ours, native = pick(timings[OURS]), pick(timings[NATIVE])
        rows.append(
            Row(
                f"3. warm process: new session to first signed request, {name}",
                millis(ours),
                millis(native),
                ratio(ours, native),
                "≤ 1.05 x native",
                ours <= 1.05 * native,
            )
        )
    return rows


# -- 4. import cost ---------------------------------------------------------------------------


def import_cost(stage: Stage, sizes: Sizes) -> list[Row]:
    environment = stage.child_environment(OURS)
    # As installed from a wheel: with compiled bytecode (kept out of the source tree).
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    environment["PYTHONPYCACHEPREFIX"] = str(stage.workdir / "pycache")
    command = [sys.executable, "-X", "importtime", "-c", "import boto3, gitlab_botocore"]
    subprocess.run(command, env=environment, check=True, capture_output=True)  # compile
    costs = []
    for _ in range(sizes.import_runs):
        result = subprocess.run(command, env=environment, check=True, capture_output=True)
        costs.append(_imported_after_boto3(result.stderr.decode()))
    cost = statistics.median(costs)
    probe = (
        "import json, sys, boto3\n"
        "before = set(sys.modules)\n"
        "import gitlab_botocore\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=environment, check=True, capture_output=True
    )
    added = json.loads(result.stdout)
    heavy = sorted({name.split(".")[0] for name in added} & set(HEAVY_MODULES))
    return [
        Row(
            "4. import gitlab_botocore after boto3 (median)",
            millis(cost),
            "0 (nothing to import)",
            "",
            "< 2 ms",
            cost < 0.002,
        ),
        Row(
            "4. heavy modules imported by the import",
            ", ".join(heavy) or "none",
            "",
            "",
            f"none of {', '.join(HEAVY_MODULES)}",
            not heavy,
        ),
    ]


def _imported_after_boto3(report: str) -> float:
    """Seconds spent on top-level imports after boto3 in a ``-X importtime`` report."""
    total, after_boto3 = 0, False
    for line in report.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if name.startswith("  "):
            continue  # imported by something else
        if after_boto3:
            total += int(cumulative)
        after_boto3 = after_boto3 or name.strip() == "boto3"
    return total / 1e6


# -- 5. refresh under load --------------------------------------------------------------------


def refresh_under_load(stage: Stage, sizes: Sizes) -> list[Row]:
    results = {side: _calls_during_refresh(stage, side, sizes) for side in (OURS, NATIVE)}
    (ours_max, ours_waited), (native_max, native_waited) = results[OURS], results[NATIVE]
    shape = f"{sizes.threads} threads, STS slowed to {STS_LATENCY_SECONDS:g} s"
    return [
        Row(
            f"5. refresh under load: slowest call ({shape})",
            millis(ours_max),
            millis(native_max),
            ratio(ours_max, native_max),
            "no caller waits",
            ours_waited == 0,
        ),
        Row(
            f"5. refresh under load: calls that waited ≥ {WAITED_SECONDS:g} s",
            str(ours_waited),
            str(native_waited),
            "",
            "0",
            ours_waited == 0,
        ),
    ]


def _calls_during_refresh(stage: Stage, side: str, sizes: Sizes) -> tuple[float, int]:
    """Slowest call and number of calls that waited, while a refresh was due."""
    now = datetime.datetime.now(datetime.timezone.utc)
    with stage.playing(side), time_machine.travel(now, tick=True) as clock:
        stage.reset()
        credentials = boto3.Session().get_credentials()
        first = credentials.get_frozen_credentials().access_key
        stage.aws.sts.set_latency(STS_LATENCY_SECONDS)
        # 12 minutes before expiry: both providers see a refresh as due (advisory,
        # from 15 minutes) but the credentials as still valid (mandatory from 10).
        clock.shift(datetime.timedelta(minutes=48))
        latencies: list[float] = []
        lock = threading.Lock()
        deadline = time.monotonic() + sizes.load_seconds

        def caller() -> None:
            mine = []
            while time.monotonic() < deadline:
                started = time.perf_counter()
                credentials.get_frozen_credentials()
                mine.append(time.perf_counter() - started)
                time.sleep(0.001)  # a caller does some work between calls
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=caller) for _ in range(sizes.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _wait_until(lambda: credentials.get_frozen_credentials().access_key != first)
        assert stage.sts_calls == 2, f"{side}: {stage.sts_calls} STS calls"
    return max(latencies), sum(latency >= WAITED_SECONDS for latency in latencies)


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the refresh did not complete")
        time.sleep(0.01)


# -- 6. many processes ------------------------------------------------------------------------


def many_processes(stage: Stage, sizes: Sizes) -> list[Row]:
    cache_dir = stage.workdir / "credentials-cache"
    native_calls, native_time = _resolve_in_processes(stage, NATIVE, None, sizes.processes)
    plain_calls, _ = _resolve_in_processes(stage, OURS, None, sizes.processes)
    cached_calls, cached_time = _resolve_in_processes(stage, OURS, cache_dir, sizes.processes)
    shape = f"{sizes.processes} processes at once"
    return [
        Row(
            f"6. STS calls, {shape}, no cache",
            str(plain_calls),
            str(native_calls),
            ratio(plain_calls, native_calls),
            "",
            None,
        ),
        Row(
            f"6. STS calls, {shape}, GITLAB_BOTOCORE_CACHE",
            str(cached_calls),
            str(native_calls),
            ratio(cached_calls, native_calls),
            "1 call",
            cached_calls == 1,
        ),
        Row(
            f"6. wall time, {shape}, GITLAB_BOTOCORE_CACHE",
            seconds(cached_time),
            seconds(native_time),
            ratio(cached_time, native_time),
            "",
            None,
        ),
    ]


def _resolve_in_processes(
    stage: Stage, side: str, cache_dir: Path | None, count: int
) -> tuple[int, float]:
    environment = stage.child_environment(side, cache_dir=cache_dir)
    stage.reset()
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD_RESOLVES],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    expected = "gitlab-oidc" if side == OURS else "assume-role-with-web-identity"
    for child in children:
        stdout, stderr = child.communicate(timeout=120)
        if child.returncode or stdout.decode().strip() != expected:
            raise RuntimeError(f"a {side} child failed: {stdout.decode()} {stderr.decode()}")
    return stage.sts_calls, time.perf_counter() - started


# -- the table --------------------------------------------------------------------------------

FIGURES: list[tuple[str, Callable[[Stage, Sizes], list[Row]]]] = [
    ("sessions across threads", sessions_across_threads),
    ("hot path", hot_path),
    ("warm process, first request", warm_first_request),
    ("import cost", import_cost),
    ("refresh under load", refresh_under_load),
    ("many processes", many_processes),
]


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"botocore {botocore.__version__}, boto3 {boto3.__version__}, "
        f"gitlab-botocore {gitlab_botocore.__version__}"
    )


def table(rows: list[Row]) -> str:
    header = ("Figure", OURS, NATIVE, "ours / native", "target", "met")
    cells = [header] + [
        (r.figure, r.ours, r.native, r.ratio, r.target, verdict(r.met)) for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in cells[1:])])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--fresh-only", action="store_true", help="only the fresh-process table")
    parser.add_argument("--pairs", type=int, help="alternating pairs per fresh-process cell")
    parser.add_argument(
        "--latencies",
        default="0,50,150",
        help="STS latencies of the fresh-process table, in ms (default: 0,50,150)",
    )
    parser.add_argument(
        "--ours-source",
        metavar="DIR",
        help="our side imports gitlab_botocore from DIR (e.g. an older revision's tree)",
    )
    arguments = parser.parse_args(argv)
    sizes = QUICK if arguments.quick else FULL
    pairs = arguments.pairs or sizes.fresh_pairs
    figures = [] if arguments.fresh_only else FIGURES
    rows: list[Row] = []
    scratch = tempfile.TemporaryDirectory(prefix="gitlab-botocore-bench-")
    with scratch as workdir, Stage(Path(workdir)) as stage:
        for number, (name, figure) in enumerate(figures, 1):
            started = time.perf_counter()
            rows.extend(figure(stage, sizes))
            spent = time.perf_counter() - started
            print(f"[{number}/{len(figures)}] {name}: {spent:.1f} s", file=sys.stderr)
        started = time.perf_counter()
        cells = fresh_processes(
            stage,
            pairs,
            latencies=[float(ms) / 1000 for ms in arguments.latencies.split(",")],
            extra_ours={"PYTHONPATH": arguments.ours_source} if arguments.ours_source else {},
        )
        spent = time.perf_counter() - started
        print(f"fresh processes, {pairs} pairs per cell: {spent:.1f} s", file=sys.stderr)
    print(f"Machine: {machine()}{' (quick mode)' if arguments.quick else ''}")
    if rows:
        print()
        print(table(rows))
    print()
    print(
        "Fresh processes: boto3 imported, then the clock runs from `import gitlab_botocore` "
        "(ours only) and `boto3.Session()` to the first answered call."
    )
    print()
    print(fresh_table(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
