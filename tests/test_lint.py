"""Static checks that would otherwise only fail at run time: pyflakes errors and Snakemake's linter."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_no_errors():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "workflow_scripts", "benchmarks"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
