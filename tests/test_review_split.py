"""Manual review mode: the workflow's merge step rebuilds the split from the reviewers' decisions files."""

import pytest

from refine_iqa.stages.data import synthesize_merge, synthesize_shard
from refine_iqa.config import load_params
from refine_iqa.data.scenes import generate_scene
from refine_iqa.io_utils import read_json, read_jsonl, save_image, write_jsonl
from refine_iqa.review.decisions import DecisionStore


@pytest.fixture
def shards(tmp_path):
    src = tmp_path / "src"
    curated = []
    for i in range(6):
        image, objects = generate_scene(i, 112, 112)
        save_image(src / f"s{i}.png", image)
        curated.append({"source_id": f"scene-{i:06d}", "source": "scenes", "path": str(src / f"s{i}.png"),
                        "width": 112, "height": 112, "phash": "0" * 16, "objects": objects, "quality": {}})
    write_jsonl(tmp_path / "curated.jsonl", curated)
    return tmp_path


def _params(tmp_path, mode):
    return load_params("params.yaml", {"data": {"perception": {
        "synthesize": {"shards": 1, "test_size": 0.25},
        "review": {"mode": mode, "decisions": str(tmp_path / "decisions")}}}, "tracking": {"enabled": False}})


def test_decisions_rebuild_the_split(shards, tmp_path):
    params = _params(tmp_path, "manual")
    shard = synthesize_shard(params, shards / "curated.jsonl", tmp_path / "synth", 0)
    items = read_jsonl(shard)
    rejected, accepted = items[0]["id"], [it["id"] for it in items[1:]]
    store = DecisionStore(tmp_path / "decisions" / "batch1.jsonl", batch="batch1")
    store.append({"event": "decision", "item_id": rejected, "status": "rejected", "reason": "not_perceptible",
                  "by": "alice", "phase": "review", "verified": False})
    for item_id in accepted:
        store.append({"event": "decision", "item_id": item_id, "status": "accepted", "reason": None,
                      "by": "alice", "phase": "review", "verified": False})
    store.close()
    summary = synthesize_merge(params, [shard], tmp_path / "manifest.jsonl", tmp_path / "stats.json",
                               tmp_path / "plots")
    manifest = {r["id"]: r for r in read_jsonl(tmp_path / "manifest.jsonl")}
    assert manifest[rejected]["review"]["status"] == "rejected" and manifest[rejected]["split"] is None
    assert manifest[rejected]["review"]["by"] == "alice"
    assert {manifest[i]["split"] for i in accepted} == {"train", "test"}
    assert summary["qc"]["removed_by_review"] == 1 and read_json(tmp_path / "stats.json")["review_mode"] == "manual"


def test_auto_mode_accepts_everything_that_passes_qc(shards, tmp_path):
    params = _params(tmp_path, "auto")
    shard = synthesize_shard(params, shards / "curated.jsonl", tmp_path / "synth", 0)
    synthesize_merge(params, [shard], tmp_path / "manifest.jsonl", tmp_path / "stats.json", tmp_path / "plots")
    recs = read_jsonl(tmp_path / "manifest.jsonl")
    assert all(r["review"] == {"status": "accepted", "reason": None, "by": "auto", "rule": None} for r in recs)
