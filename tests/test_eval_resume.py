"""Resumable evaluation: predictions appended per batch, a killed run resumes without re-running finished items."""

from __future__ import annotations

import json

import pytest

from refine_iqa import generation
from refine_iqa.config import load_params
from refine_iqa.eval.journal import PredictionJournal
from refine_iqa.io_utils import write_jsonl
from refine_iqa.stages import evaluate


class Killed(Exception):
    pass


def _kill_after(batches: int):
    seen = []

    def progress(done, total):
        seen.append(done)
        if len(seen) == batches:
            raise Killed(f"killed after {batches} batches")

    return progress


@pytest.fixture
def counted(monkeypatch):
    """Rows the model is run on: probability passes and generations (each a list of batch sizes)."""
    calls = {"score": [], "generate": []}
    real_logits, real_gen = generation._digit_logits, generation._generate_batch

    def logits(model, enc, ids):
        calls["score"].append(int(enc["input_ids"].shape[0]))
        return real_logits(model, enc, ids)

    def gen(model, processor, enc, n):
        calls["generate"].append(int(enc["input_ids"].shape[0]))
        return real_gen(model, processor, enc, n)

    monkeypatch.setattr(generation, "_digit_logits", logits)
    monkeypatch.setattr(generation, "_generate_batch", gen)
    return calls


def test_journal_keeps_whole_lines_and_drops_a_partial_tail(tmp_path):
    p = tmp_path / "j.jsonl"
    j = PredictionJournal(p, {"model": "a"})
    j.append([{"key": "x", "v": 1}, {"key": "y", "v": 2}])
    with open(p, "a") as f:
        f.write('{"key": "z", "v"')  # killed in the middle of a write
    j2 = PredictionJournal(p, {"model": "a"})
    assert set(j2.done) == {"x", "y"} and j2.done["y"]["v"] == 2
    assert p.read_text().endswith('"v": 2}\n')  # the partial line is cut off, appends start on a clean line
    j2.append([{"key": "z", "v": 3}])
    assert set(PredictionJournal(p, {"model": "a"}).done) == {"x", "y", "z"}
    # another model (or settings) never reuses predictions
    assert PredictionJournal(p, {"model": "b"}).done == {}
    assert PredictionJournal(p, {"model": "a"}).done == {}  # and the old file was replaced


def test_scoring_killed_mid_dataset_resumes_without_rescoring(tiny, brightness_records, tmp_path, counted):
    from refine_iqa.rl.samples import build_stage2

    model, processor = tiny
    samples = build_stage2(brightness_records[1][:6], think=True)
    clean = generation.score_samples(model, processor, samples, think=True, max_new_tokens=8, batch_size=2)
    counted["score"].clear()
    journal = tmp_path / "j.jsonl"
    with pytest.raises(Killed):
        generation.score_samples(model, processor, samples, think=True, max_new_tokens=8, batch_size=2,
                                 journal=PredictionJournal(journal, {"m": 1}), progress=_kill_after(2))
    assert sum(counted["score"]) == 4
    counted["score"].clear()
    counted["generate"].clear()
    resumed = generation.score_samples(model, processor, samples, think=True, max_new_tokens=8, batch_size=2,
                                       journal=PredictionJournal(journal, {"m": 1}))
    assert sum(counted["score"]) == 2 and sum(counted["generate"]) == 2  # only the 2 unfinished items
    assert [o["completion"] for o in resumed] == [o["completion"] for o in clean]
    assert [o["prob"] for o in resumed] == pytest.approx([o["prob"] for o in clean], abs=1e-6)


def test_eval_scoring_job_killed_mid_dataset_resumes(tiny_model_dir, brightness_records, tmp_path, monkeypatch,
                                                     counted):
    params = load_params("params.yaml", {"tracking": {"enabled": False},
                                         "evaluate": {"max_new_tokens": 6, "batch_size": 2}})
    write_jsonl(tmp_path / "test.jsonl", brightness_records[1][:6])
    args = (params, tiny_model_dir, tmp_path / "test.jsonl", tmp_path / "s.json", tmp_path / "preds.jsonl", "m")
    real_progress = evaluate._progress
    monkeypatch.setattr(evaluate, "_progress", lambda name: _kill_after(2))  # killed 2 batches into no-think
    with pytest.raises(Killed):
        evaluate.eval_scoring(*args)
    assert sum(counted["score"]) == 4
    counted["score"].clear()
    monkeypatch.setattr(evaluate, "_progress", real_progress)
    result = evaluate.eval_scoring(*args)
    # no-think: the 2 items not finished; think: all 6. The 4 finished ones were not scored again.
    assert sum(counted["score"]) == 2 + 6
    assert result["datasets"]["synthetic"]["no_think"]["n"] == 6
    assert not list((tmp_path / "preds.cache").glob("*.partial.jsonl"))  # journals replaced by the results
    preds = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert len(preds) == 12 and len({(p["mode"], p["item_id"]) for p in preds}) == 12


def test_qbench_and_perception_resume_from_their_journals(tiny, tmp_path, counted):
    from PIL import Image

    from refine_iqa.eval.perception import evaluate_perception
    from refine_iqa.eval.qbench_eval import evaluate_qbench
    from refine_iqa.rl.samples import build_stage1_eval

    from conftest import rgb

    model, processor = tiny
    records = []
    for k in range(4):
        Image.fromarray(rgb(k, 64)).save(tmp_path / f"q{k}.png")
        records.append({"id": f"q{k}", "image_path": str(tmp_path / f"q{k}.png"), "question": "Is it blurry?",
                        "candidates": ["Yes", "No"], "answer_index": 0, "type": 0, "concern": 0, "type_name": "yes-or-no",
                        "concern_name": "technical"})
    with pytest.raises(Killed):
        evaluate_qbench(model, processor, records, think=False, max_new_tokens=4, batch_size=2,
                        journal=PredictionJournal(tmp_path / "qb.jsonl", {"m": 1}), progress=_kill_after(1))
    counted["generate"].clear()
    acc, preds = evaluate_qbench(model, processor, records, think=False, max_new_tokens=4, batch_size=2,
                                 journal=PredictionJournal(tmp_path / "qb.jsonl", {"m": 1}))
    assert sum(counted["generate"]) == 2 and len(preds) == 4 and acc["total"]["overall"] == 4

    items = [{"id": "it0", "ref_path": str(tmp_path / "q0.png"), "dist_path": str(tmp_path / "q1.png"), "width": 64,
              "height": 64, "objects": ["a", "b"], "object": "a", "box": [0, 0, 30, 30], "family": "blur",
              "type": "blur.gaussian", "level": 2}]
    samples = build_stage1_eval(items, processor)
    with pytest.raises(Killed):
        evaluate_perception(model, processor, samples, max_new_tokens=4, batch_size=3,
                            journal=PredictionJournal(tmp_path / "pe.jsonl", {"m": 1}), progress=_kill_after(1))
    counted["generate"].clear()
    summary, preds = evaluate_perception(model, processor, samples, max_new_tokens=4, batch_size=3,
                                         journal=PredictionJournal(tmp_path / "pe.jsonl", {"m": 1}))
    assert sum(counted["generate"]) == 1 and len(preds) == 4  # 3 of the 4 task x FR/NR samples were done
    assert summary["description"]["all"]["n"] == 2 and summary["skipped_unreadable"] == []
