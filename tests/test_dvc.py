"""DVC on a fresh clone: `dvc repro` rebuilds every stage through Snakemake, `dvc status` is then clean, a
second repro does nothing, and `dvc push` / `dvc pull` restore the outputs from the default local remote."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(cmd, cwd, timeout=1800):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_fresh_clone_repro_status_push_pull(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("needs the git checkout of the project")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO), str(clone)], tmp_path)
    # The seconds-scale overlay: the same stages and rules, tiny data and steps.
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("overlay: null", "overlay: configs/smoke.yaml", 1))
    run(["dvc", "repro"], clone)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone)
    assert "Data and pipelines are up to date" in run(["dvc", "repro"], clone)
    assert (clone / "results/metrics.json").exists() and (clone / "reports/report.md").exists()
    run(["dvc", "push"], clone)
    shutil.rmtree(clone / "models" / "stage1")
    (clone / "work/perception/manifest.jsonl").unlink()
    shutil.rmtree(clone / ".dvc" / "cache")
    run(["dvc", "pull"], clone)
    assert (clone / "models/stage1/model.safetensors").exists() and (clone / "work/perception/manifest.jsonl").exists()
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone)
