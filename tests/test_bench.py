"""The benchmark command runs and prints its tables (quick mode; timings are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
