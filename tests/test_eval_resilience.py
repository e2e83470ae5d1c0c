"""Evaluation survives corrupt images (skipped and reported) and resumes per dataset from its cache."""

import json

import pytest

from refine_iqa.stages.evaluate import eval_scoring
from refine_iqa.config import load_params
from refine_iqa.io_utils import read_json, write_jsonl


@pytest.fixture
def params():
    return load_params("params.yaml", {"tracking": {"enabled": False},
                                       "evaluate": {"max_new_tokens": 12, "batch_size": 8}})


def test_corrupt_image_is_skipped_and_reported(params, tiny_model_dir, brightness_records, tmp_path):
    test = [dict(r) for r in brightness_records[1][:5]]
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    test.append({**test[0], "id": "bad", "image_path": str(bad)})
    write_jsonl(tmp_path / "test.jsonl", test)
    out = tmp_path / "scoring.json"
    result = eval_scoring(params, tiny_model_dir, tmp_path / "test.jsonl", out, tmp_path / "preds.jsonl", "m")
    for mode in ("think", "no_think"):
        r = result["datasets"]["synthetic"][mode]
        assert r["n"] == 5 and r["skipped_unreadable"] == [str(bad)]
    assert read_json(out)["model"] == "m"


def test_evaluation_resumes_from_its_cache(params, tiny_model_dir, brightness_records, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "test.jsonl", brightness_records[1][:4])
    args = (params, tiny_model_dir, tmp_path / "test.jsonl", tmp_path / "s.json", tmp_path / "preds.jsonl", "m")
    first = eval_scoring(*args)

    def boom(*a, **k):
        raise AssertionError("a cached (dataset, mode) was evaluated again")

    monkeypatch.setattr("refine_iqa.eval.scoring.evaluate_scoring", boom)
    # NaN metrics (no parsable numeric answer) compare unequal to themselves: compare as JSON text.
    assert json.dumps(eval_scoring(*args), sort_keys=True) == json.dumps(first, sort_keys=True)
