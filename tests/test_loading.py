"""Model loading at scale: each process loads onto its own device, and with DeepSpeed ZeRO-3 the weights are
partitioned AT LOAD (the DeepSpeed config exists before `from_pretrained`), never materialized whole per rank.

The two-process test runs DeepSpeed ZeRO-3 for real on the CPU (DeepSpeed 0.19 picks its CPU accelerator and
gloo; the first run compiles its shared-memory op, ~1 minute, cached afterwards).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from refine_iqa.io_utils import atomic_write_json, read_json

ROOT = Path(__file__).resolve().parents[1]


def test_local_device_follows_local_rank(monkeypatch):
    from refine_iqa.model.loading import local_device

    monkeypatch.setenv("LOCAL_RANK", "3")
    assert local_device("cuda") == "cuda:3"
    assert local_device("cpu") == "cpu"
    assert local_device("cuda:1") == "cuda:1"
    monkeypatch.delenv("LOCAL_RANK")
    assert local_device("cuda") == "cuda:0"


def test_training_args_come_before_the_model(monkeypatch, tiny_model_dir):
    """stages.common._load_for_training creates the GRPOConfig (which sets up DeepSpeed) before from_pretrained."""
    from refine_iqa.stages.common import _load_for_training
    from refine_iqa.config import load_params
    from refine_iqa.model import loading
    from refine_iqa.rl import grpo

    order = []
    monkeypatch.setattr(grpo, "grpo_config", lambda *a, **k: order.append("args") or "ARGS")
    monkeypatch.setattr(loading, "load_model_and_processor", lambda *a, **k: order.append("model") or ("M", "P"))
    params = load_params(ROOT / "params.yaml", overrides={"tracking": {"enabled": False}})
    assert _load_for_training(params, tiny_model_dir, "cpu", params["stage2"]["grpo"], None, seed=0) == ("ARGS", "M", "P")
    assert order == ["args", "model"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
def test_two_processes_load_zero3_partitions(tmp_path, tiny_model_dir):
    from refine_iqa.config import load_params

    params = load_params(ROOT / "params.yaml", overrides={"tracking": {"enabled": False}})
    atomic_write_json(tmp_path / "params.json", params)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO3_INIT": "true",
           "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ROOT / "configs" / "deepspeed" / "zero3_offload.json")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "configs" / "accelerate" / "cpu.yaml"), "--num_processes", "2", "--main_process_port",
           str(_free_port()), str(Path(__file__).with_name("loading_worker.py")), "--params",
           str(tmp_path / "params.json"), "--model", str(tiny_model_dir), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"accelerate launch failed (rc {proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}")
    recs = [read_json(tmp_path / "out" / f"rank{k}.json") for k in range(2)]
    assert [r["local_rank"] for r in recs] == [0, 1]
    assert [r["cuda_device"] for r in recs] == ["cuda:0", "cuda:1"]  # each rank its own GPU, never all on cuda:0
    for r in recs:
        assert r["zero3_at_from_pretrained"] == [True], "the DeepSpeed config did not exist when from_pretrained ran"
        total_full = sum(full for _, _, full, _ in r["params"])
        held = sum(part for _, _, _, part in r["params"])
        assert all(local == 0 for _, local, _, _ in r["params"]), "a parameter was materialized whole"
        assert held <= total_full / 2 + 2 * len(r["params"]), f"rank {r['rank']} holds {held} of {total_full} elements"
    # the two partitions together cover every element (ZeRO-3 pads each to equal size)
    assert sum(part for r in recs for *_, part in r["params"]) >= sum(full for _, _, full, _ in recs[0]["params"])
