"""The README's main job: `cirasa demo` runs a real finder on a simulated map with nothing external."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_a_finder_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cirasa.cli.main", "demo", "--size", "256", "--sources", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SUCCESS" in result.stderr
    assert "sources found by sep (10 injected)" in result.stdout
