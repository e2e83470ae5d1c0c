"""A minimal paper-shape rehearsal (benchmarks/bench_rehearsal.py): the narrow Qwen2.5-VL with the real
151,936-token vocabulary, the paper's pixel limit (1920x1080), G = 8, two 12 MP JPEGs (one prompt per process), one Stage-2 step through
the project's stage function on two processes (`accelerate launch`). Rollouts are shortened to 8 tokens to
stay within minutes; `make rehearsal` runs the full lengths and both stages."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_rehearsal.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.distributed
def test_minimal_rehearsal_trains_on_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(SCRIPT), "prepare", "--work", str(tmp_path), "--images", "2"], env=env,
                   check=True, capture_output=True, text=True, timeout=300)
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(ROOT / "configs" / "accelerate" / "cpu.yaml"), "--num_processes", "2",
                           "--main_process_port", str(_port()), str(SCRIPT), "train", "--work", str(tmp_path),
                           "--stage", "stage2", "--tag", "N", "--steps", "1", "--completion", "8"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"rehearsal failed (rc {proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}")
    figs = [json.loads((tmp_path / "figures" / f"N-stage2-rank{k}.json").read_text()) for k in range(2)]
    assert [f["world"] for f in figs] == [2, 2]
    assert len(figs[0]["step_time_s"]) == 1 and figs[0]["images"] == 2  # one prompt per process
    assert all(f["peak_rss_mib"] > 0 for f in figs)
    assert (tmp_path / "models" / "N-stage2" / "config.json").exists()
