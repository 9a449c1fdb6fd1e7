"""The benchmark command runs and prints its table (quick mode; figures are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_quick_benchmark_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, str(RUN), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Machine: ")
    assert "quick mode" in lines[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
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
