"""The paper configuration evaluates on real benchmark folders with nothing changed but where they are.

Native-format fixtures (tests/fixtures_iqa.py) stand in for the six downloads; the Stage-2 training records
come from KonIQ-10k + SPAQ train splits and Table 3 is computed on all six test sets with the tiny model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fixtures_iqa import write_agiqa, write_csiq, write_kadid, write_koniq, write_livec, write_spaq

from refine_iqa import config
from refine_iqa.stages.common import scoring_eval_sets
from refine_iqa.stages.data import scoring_set
from refine_iqa.stages.evaluate import eval_scoring
from refine_iqa.io_utils import read_json, read_jsonl, save_image

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("koniq10k", "spaq", "livec", "agiqa3k", "kadid10k", "csiq")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}

KONIQ_MOS = [1.5, 2.0, 3.0, 3.5, 4.2, 2.0, 2.7, 3.3, 1.9, 4.6]
KONIQ_SETS = ["training"] * 5 + ["validation"] + ["test"] * 4
SPAQ_MOS = [5.0 * (i + 1) for i in range(20)]  # 5, 10, ..., 100 on SPAQ's 0-100 scale
AGIQA_MOS = [round(0.1 + 0.2 * i, 1) for i in range(19)] + [4.95]  # 0.1, 0.3, ..., 3.7 and 4.95 (0-5 scale)
# mos_scaled = clip(5 (mos - lo) / (hi - lo), 0, 4.9) rounded half-up to 0.1, worked out by hand:
KONIQ_SCALED = {1.5: 0.6, 2.0: 1.3, 3.0: 2.5, 3.5: 3.1, 4.2: 4.0, 2.7: 2.1, 3.3: 2.9, 1.9: 1.1, 4.6: 4.5}
SPAQ_SCALED = {5.0: 0.3, 10.0: 0.5, 15.0: 0.8, 20.0: 1.0, 25.0: 1.3, 30.0: 1.5, 35.0: 1.8, 40.0: 2.0, 45.0: 2.3,
               50.0: 2.5, 55.0: 2.8, 60.0: 3.0, 65.0: 3.3, 70.0: 3.5, 75.0: 3.8, 80.0: 4.0, 85.0: 4.3, 90.0: 4.5,
               95.0: 4.8, 100.0: 4.9}


def _enlarge_images(root: Path) -> None:
    """The writers' 8x8 images are below load_rgb's 32-pixel minimum; real downloads are far larger.
    Same names and formats, 32x32 content."""
    for i, p in enumerate(sorted(x for x in root.rglob("*") if x.suffix.lower() in IMAGE_SUFFIXES)):
        save_image(p, np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("datasets")
    write_koniq(base / "koniq10k", KONIQ_MOS, sets=KONIQ_SETS)
    write_spaq(base / "SPAQ", SPAQ_MOS)
    write_livec(base / "ChallengeDB_release")  # 7 training images t1..t7 (dropped) + 6 test images
    write_agiqa(base / "AGIQA-3K", AGIQA_MOS)
    write_kadid(base / "kadid10k", n_refs=5, n_types=2, n_levels=2)  # one reference (4 images) held out
    write_csiq(base / "CSIQ", refs=(1600,), levels=1)  # 6 images, all test
    _enlarge_images(base)
    folders = ("koniq10k", "SPAQ", "ChallengeDB_release", "AGIQA-3K", "kadid10k", "CSIQ")
    return {name: str(base / folder) for name, folder in zip(DATASETS, folders)}


def test_paper_configuration_evaluates_on_native_dataset_folders(roots, tiny_model_dir, tmp_path):
    """Overrides: the paper overlay, the six dataset roots, and ONLY hardware settings besides them, because
    this machine has no GPU and the real Qwen2.5-VL-7B is not here: model.path (the tiny model folder),
    model.dtype float32, compute.device cpu, compute.num_processes 1, compute.threads 1. Test-speed and
    hygiene settings that change no result's meaning: evaluate.max_new_tokens / batch_size small, and MLflow
    tracking off so the test never writes to the repository's mlflow.db."""
    overrides = {
        "overlay": "configs/paper.yaml",
        "data": {"scoring": {"roots": roots}},
        "model": {"path": str(tiny_model_dir), "dtype": "float32"},
        "compute": {"device": "cpu", "num_processes": 1, "threads": 1},
        "evaluate": {"max_new_tokens": 4, "batch_size": 8},
        "tracking": {"enabled": False},
    }
    params = config.load_params(REPO / "params.yaml", overrides)
    sc = params["data"]["scoring"]
    assert sc["source"] == "datasets" and params["model"]["source"] == "local"  # from the overlay
    assert sc["roots"] == roots, "load_params overrides must win over the overlay's /datasets/... roots"
    assert params["compute"]["device"] == "cpu" and params["model"]["path"] == str(tiny_model_dir)
    assert params["stage2"]["grpo"]["learning_rate"] == 1e-6  # still the paper's hyper-parameters

    # Stage-2 training records: KonIQ official training set (validation and test left out) + SPAQ's 8:2 train.
    assert scoring_set(params, tmp_path / "scoring") == {"train": 5 + 16}
    train = read_jsonl(tmp_path / "scoring" / "scoring_train.jsonl")
    koniq = [r for r in train if r["dataset"] == "koniq10k"]
    assert sorted(Path(r["image_path"]).name for r in koniq) == [f"{1000000 + i}.jpg" for i in range(5)]
    assert all(r["mos_scaled"] == KONIQ_SCALED[r["mos"]] for r in koniq)
    r = next(r for r in koniq if r["image_path"].endswith("1000003.jpg"))  # MOS 3.5: 5 x 2.5 / 4 = 3.125
    assert (r["mos"], r["label"], r["mos_scaled"], r["split"], r["synthetic"]) == (3.5, 3.5, 3.1, "train", False)
    spaq = [r for r in train if r["dataset"] == "spaq"]
    assert all(r["mos_scaled"] == SPAQ_SCALED[r["mos"]] for r in spaq) and len(spaq) == 16
    assert all(r["split"] == "train" for r in train)
    assert read_jsonl(tmp_path / "scoring" / "scoring_test.jsonl") == []

    # Table 3 on every configured evaluation set, in both modes.
    sets = scoring_eval_sets(params, tmp_path / "scoring" / "scoring_test.jsonl")
    assert {k: len(v) for k, v in sets.items()} == {"koniq10k": 4, "spaq": 4, "livec": 6, "agiqa3k": 4,
                                                  "kadid10k": 4, "csiq": 6}
    assert {(Path(r["image_path"]).name, r["mos_scaled"]) for r in sets["koniq10k"]} == {
        ("1000006.jpg", 2.1), ("1000007.jpg", 2.9), ("1000008.jpg", 1.1), ("1000009.jpg", 4.5)}
    livec = {Path(r["image_path"]).name: r for r in sets["livec"]}
    assert "t1.bmp" not in livec and (livec["4.JPG"]["mos"], livec["4.JPG"]["mos_scaled"]) == (25.5, 1.3)
    assert livec["8.JPG"]["mos_scaled"] == 4.3  # 5 x 0.85 = 4.25 rounds half up
    csiq = {Path(r["image_path"]).name: r for r in sets["csiq"]}
    # CSIQ DMOS is lower-better: 0.12 -> 5 x (1 - 0.12) = 4.4, correlated against -0.12.
    assert (csiq["1600.AWGN.1.png"]["mos_scaled"], csiq["1600.AWGN.1.png"]["label"]) == (4.4, -0.12)
    assert (csiq["1600.contrast.1.png"]["mos_scaled"], csiq["1600.contrast.1.png"]["label"]) == (3.9, -0.22)
    kadid = {Path(r["image_path"]).name[4:]: r["mos_scaled"] for r in sets["kadid10k"]}
    assert kadid == {"01_01.png": 3.9, "01_02.png": 2.9, "02_01.png": 3.8, "02_02.png": 2.8}  # one reference
    assert len({Path(r["image_path"]).name[:3] for r in sets["kadid10k"]}) == 1
    assert all(r["mos_scaled"] == min(r["mos"], 4.9) for r in sets["agiqa3k"])

    out_json, preds_path = tmp_path / "eval" / "scoring.json", tmp_path / "eval" / "preds.jsonl"
    result = eval_scoring(params, tiny_model_dir, tmp_path / "scoring" / "scoring_test.jsonl", out_json,
                          preds_path, "tiny")
    assert read_json(out_json)["model"] == "tiny" and set(read_json(out_json)["datasets"]) == set(DATASETS)
    assert set(result["datasets"]) == set(DATASETS)
    for ds in DATASETS:
        for mode in ("no_think", "think"):
            res = result["datasets"][ds][mode]
            assert res["n"] == len(sets[ds])
            for key in ("srcc", "plcc"):
                assert isinstance(res["prob"][key], float) and -1.0 <= res["prob"][key] <= 1.0, (ds, mode, key)
    preds = read_jsonl(preds_path)
    assert len(preds) == 2 * sum(len(v) for v in sets.values())
    csiq_pred = [p for p in preds if p["dataset"] == "csiq" and p["mos_scaled"] == 4.4]
    assert [p["label"] for p in csiq_pred] == [-0.12, -0.12]  # one per mode


def test_train_and_test_splits_agree_for_any_seed(roots, tmp_path):
    """Training records and evaluation sets must come from the same seeded split (no test image trained on)."""
    overrides = {"seed": 7, "tracking": {"enabled": False},
                 "data": {"scoring": {"source": "datasets", "roots": roots, "train_datasets": ["spaq", "agiqa3k"],
                                      "eval_datasets": ["spaq", "agiqa3k"]}}}
    params = config.load_params(REPO / "params.yaml", overrides)
    scoring_set(params, tmp_path)
    trained = {r["image_path"] for r in read_jsonl(tmp_path / "scoring_train.jsonl")}
    sets = scoring_eval_sets(params, tmp_path / "scoring_test.jsonl")
    for ds, recs in sets.items():
        assert recs and not trained & {r["image_path"] for r in recs}, ds
    assert not math.isnan(sum(r["mos_scaled"] for recs in sets.values() for r in recs))
