"""Issue 13: jobs that can run on either device run on the one their (SLURM) resources give them.

The paper configuration says `compute.device: cuda`, while the SLURM profile puts the baseline and curation
jobs on the CPU partition. This machine has no GPU, so it stands in for such a job.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_iqa import write_koniq, write_spaq

from refine_iqa import config
from refine_iqa.compute import job_device
from refine_iqa.stages.data import curate_shard, make_scenes
from refine_iqa.stages.evaluate import eval_baselines
from refine_iqa.data import quality
from refine_iqa.io_utils import read_json, read_jsonl, save_image

REPO = Path(__file__).resolve().parents[1]


def _paper(**over) -> dict:
    return config.load_params(REPO / "params.yaml", {"overlay": "configs/paper.yaml", "tracking": {"enabled": False},
                                                     **over})


def test_job_device_is_cuda_only_when_the_job_sees_a_gpu(monkeypatch):
    import torch

    params = _paper()
    assert params["compute"]["device"] == "cuda"  # the paper's setting, unchanged
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert job_device(params, "test") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert job_device(params, "test") == "cuda"
    params["compute"]["device"] = "cpu"
    assert job_device(params, "test") == "cpu"  # never cuda when the configuration says cpu


def test_metric_input_follows_pyiqa_protocol():
    """(1, 3, H, W) float in [0, 1]; SPAQ and images over 1024 px (shorter side) resized to 448 like
    torchvision Resize(448); other test sets at their own size."""
    big = np.full((3000, 4000, 3), 255, np.uint8)
    x = quality.metric_input(big)
    assert tuple(x.shape) == (1, 3, 448, 597) and float(x.max()) == 1.0  # int(448 * 4000 / 3000) = 597
    assert tuple(quality.metric_input(np.zeros((800, 600, 3), np.uint8), "spaq").shape) == (1, 3, 597, 448)
    assert tuple(quality.metric_input(np.zeros((384, 512, 3), np.uint8), "koniq10k").shape) == (1, 3, 384, 512)
    assert tuple(quality.metric_input(np.zeros((1024, 1100, 3), np.uint8)).shape) == (1, 3, 1024, 1100)
    assert tuple(quality.metric_input(np.zeros((1025, 1100, 3), np.uint8)).shape) == (1, 3, 448, 480)


def test_paper_baselines_run_on_a_cpu_job_and_resume_per_dataset(tmp_path, monkeypatch):
    write_koniq(tmp_path / "koniq10k", [1.5, 2.0, 3.0, 3.5, 4.2, 2.0, 2.7, 3.3, 1.9, 4.6],
                sets=["training"] * 5 + ["validation"] + ["test"] * 4)
    write_spaq(tmp_path / "SPAQ", [5.0 * (i + 1) for i in range(20)])
    for i, p in enumerate(sorted(tmp_path.rglob("*.jpg"))):
        save_image(p, np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    save_image(sorted((tmp_path / "SPAQ").rglob("*.jpg"))[-1], np.zeros((3000, 4000, 3), np.uint8) + 90)
    params = _paper(data={"scoring": {"roots": {"koniq10k": str(tmp_path / "koniq10k"), "spaq": str(tmp_path / "SPAQ")},
                                      "eval_datasets": ["koniq10k", "spaq"]}})
    assert params["compute"]["device"] == "cuda" and [b["metric"] for b in params["evaluate"]["baselines"]] == ["piqe", "entropy"]
    out = tmp_path / "results" / "baselines.json"
    result = eval_baselines(params, tmp_path / "unused.jsonl", out)
    assert set(result) == {"piqe", "entropy"} and set(result["piqe"]) == {"koniq10k", "spaq"}
    assert read_json(out) == result
    cache = sorted(p.name for p in (tmp_path / "results" / "baselines.json.cache").iterdir())
    assert cache == ["entropy-koniq10k.json", "entropy-spaq.json", "piqe-koniq10k.json", "piqe-spaq.json"]

    # A job killed before writing its result resumes from the per-dataset results: nothing is scored again.
    out.unlink()
    monkeypatch.setattr(quality, "metric_input", lambda *a: pytest.fail("scored again"))
    assert eval_baselines(params, tmp_path / "unused.jsonl", out) == result


def test_paper_curation_with_a_quality_metric_runs_on_a_cpu_job(tmp_path):
    scenes = tmp_path / "scenes"
    make_scenes(config.load_params(REPO / "params.yaml", {"data": {"perception": {"scenes": {"n_images": 6}}}}),
                scenes)
    params = _paper(data={"perception": {
        "coco": {"annotations": str(scenes / "annotations.json"), "images": str(scenes / "images")},
        "curate": {"shards": 1, "quality": [{"metric": "piqe", "threshold": 101, "direction": "lower"}]}}})
    assert params["compute"]["device"] == "cuda" and params["data"]["perception"]["source"] == "coco"
    curate_shard(params, None, tmp_path / "curated", 0)
    kept = read_jsonl(tmp_path / "curated" / "curated.jsonl")
    assert len(kept) == 6 and all(set(r["quality"]) == {"piqe"} for r in kept)
