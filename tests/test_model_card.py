"""Model cards: the training card inside the model folder, the evaluation card beside the report."""

from __future__ import annotations

import copy
import hashlib

import pytest

from refine_iqa import model_card
from refine_iqa.config import load_params


@pytest.fixture(scope="module")
def params():
    return load_params("params.yaml")


def test_file_digest_hand_checked(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_bytes(b"abc")
    d = model_card.file_digest(f)
    # RFC 1321 / FIPS 180-2 test vectors for "abc".
    assert d == {"md5": "900150983cd24fb0d6963f7d28e17f72",
                 "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "bytes": 3}
    f.write_bytes(b"")
    assert model_card.file_digest(f)["md5"] == hashlib.md5(b"").hexdigest() == "d41d8cd98f00b204e9800998ecf8427e"


def test_split_card_without_front_matter():
    assert model_card.split_card("# just text\n") == ({}, "# just text\n")
    assert model_card.split_card("---\nlicense: mit\n---\n\nbody\n") == ({"license": "mit"}, "\nbody\n")
    assert model_card.split_card("---\nnot closed\n") == ({}, "---\nnot closed\n")


def _chain(tmp_path, params):
    """tiny (build) -> base (warm start) -> stage1 cards written as the workflow writes them (folders are fake)."""
    models = tmp_path / "models"
    for n in ("tiny", "base", "stage1"):
        (models / n).mkdir(parents=True)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text('{"id": "a"}\n')
    scoring = tmp_path / "scoring_train.jsonl"
    scoring.write_text('{"id": "s"}\n')
    model_card.write_training_card(params, models / "tiny", stage="build")
    model_card.write_training_card(params, models / "base", stage="warmstart", base_model=models / "tiny",
                                   data={"manifest": manifest, "scoring_train": scoring})
    model_card.write_training_card(params, models / "stage1", stage="stage1", base_model=models / "base",
                                   data={"manifest": manifest})
    return models, manifest


def test_training_card_content(tmp_path, params):
    models, manifest = _chain(tmp_path, params)
    meta, body = model_card.read_card(models / "stage1")
    assert meta["base_model"] == str(models / "base") and meta["base_model_relation"] == "finetune"
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "transformers"
    assert "pipeline-demonstration" in meta["tags"] and "grpo" in meta["tags"]
    ri = meta["refine_iqa"]
    assert ri["lineage"] == [str(models / "base"), str(models / "tiny")]
    assert ri["data"] == [{"name": "manifest", "path": str(manifest), "md5": hashlib.md5(manifest.read_bytes()).hexdigest(),
                           "sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(), "bytes": 12}]
    assert ri["score_range"] == [0.0, 5.0] and ri["lower_better"] is False
    # The params that trained it, as given (stage1 and model), and none of another stage's.
    assert f"learning_rate: {params['stage1']['grpo']['learning_rate']}" in body
    assert "warmstart:" not in body and "stage2:" not in body
    assert "pipeline demonstration" in body and "RANDOM initialisation" in body
    assert "reports/model_cards/stage1.md" in body
    tiny_meta, tiny_body = model_card.read_card(models / "tiny")
    assert "base_model" not in tiny_meta and "None: random initialisation" in tiny_body
    assert "None: this model was not trained on data." in tiny_body


def test_paper_configuration_card_takes_license_from_the_base_card(tmp_path, params):
    p = copy.deepcopy(params)
    p["model"]["source"] = "local"
    base = tmp_path / "Qwen2.5-VL-7B-Instruct"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: other\n---\n# Qwen\n")
    (tmp_path / "s1").mkdir()
    text = model_card.training_card(p, tmp_path / "s1", stage="stage1", base_model=base)
    meta, body = model_card.split_card(text)
    assert meta["license"] == "other" and "pipeline-demonstration" not in meta["tags"]
    assert "pipeline demonstration" not in body and "Not a substitute for a subjective study" in body


def test_training_card_errors(tmp_path, params):
    with pytest.raises(ValueError, match="unknown stage"):
        model_card.training_card(params, tmp_path, stage="stage3")
    with pytest.raises(FileNotFoundError, match="scoring_train"):
        model_card.training_card(params, tmp_path, stage="stage2", data={"scoring_train": tmp_path / "nope.jsonl"})


def test_evaluation_card_from_metrics(tmp_path, params):
    models, _ = _chain(tmp_path, params)
    metrics = {"configuration": "embedded", "synthetic_scoring_data": True,
               "scoring": {"stage1": {"datasets": {"synthetic": {
                   "no_think": {"prob": {"srcc": 0.12346, "plcc": float("nan")}, "numeric": {"srcc": None}},
                   "think": {"prob": {"srcc": -0.5, "plcc": 0.25}, "numeric": {}}}}}},
               "perception": {"stage1": {"description": {"all": {"overall": 0.3}}, "grounding": {"all": {"overall": 0.1}}}},
               "qbench": {"stage1": {"split": "dev", "synthetic": True, "no_think": {"accuracy": {"overall": 0.4}}}}}
    rows = model_card.model_results(metrics, "stage1")
    got = {(r["dataset"], r["metric"]): r["value"] for r in rows}
    # NaN and missing numbers are left out, never written as a value.
    assert got == {("synthetic", "SRCC (prob, no_think)"): 0.1235,
                   ("synthetic", "SRCC (prob, think)"): -0.5, ("synthetic", "PLCC (prob, think)"): 0.25,
                   ("Refine-Perception test", "description accuracy"): 0.3,
                   ("Refine-Perception test", "grounding IoU"): 0.1,
                   ("LLVisionQA dev (synthetic)", "accuracy (no_think)"): 0.4}
    out = tmp_path / "reports" / "model_cards"
    paths = model_card.write_evaluation_cards(metrics, {"stage1": models / "stage1", "gone": tmp_path / "none"}, out)
    meta, body = model_card.split_card(paths[0].read_text())
    assert meta["refine_iqa"]["stage"] == "stage1"  # the training card's facts are carried over
    assert len(meta["model-index"][0]["results"]) == 6
    assert "| Refine-Perception test | grounding IoU | 0.1000 |" in body and "SYNTHETIC scoring data" in body
    assert "### Training parameters" in body
    _, gone = model_card.split_card(paths[1].read_text())
    assert "holds no numbers" in gone and "No training card found" in gone


def test_build_model_writes_a_card_and_stays_loadable(tmp_path, params, tiny_model_dir, monkeypatch):
    """The real hook: stages.model.build_model saves the model, then its card; from_pretrained still loads it.
    (The build itself is replaced by a copy of the session's tiny model: building takes tens of seconds.)"""
    import shutil

    from transformers import AutoModelForImageTextToText, AutoProcessor

    from refine_iqa.stages.model import build_model
    from refine_iqa.model import build_tiny

    monkeypatch.setattr(build_tiny, "build_tiny_model", lambda out, **kw: shutil.copytree(tiny_model_dir, out))
    out = build_model(params, tmp_path / "tiny")
    meta, body = model_card.read_card(out)
    assert meta["refine_iqa"]["stage"] == "build" and "pipeline demonstration" in body
    assert f"seed: {params['model']['tiny']['seed']}" in body
    AutoModelForImageTextToText.from_pretrained(str(out))
    AutoProcessor.from_pretrained(str(out))
