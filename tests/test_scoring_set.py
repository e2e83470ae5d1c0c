"""Synthetic scoring sets: proxy-MOS mapping, records, determinism, level trend; the brightness task."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from scipy.stats import spearmanr

from refine_iqa.data import scoring_set as ss
from refine_iqa.io_utils import load_rgb, read_jsonl

FIELDS = {"id", "image_path", "mos", "mos_scaled", "dataset", "synthetic", "split"}


@pytest.fixture(scope="module")
def sources():
    return ss.default_scoring_sources(seed=0, n_scenes=3)


def _half_up(x):
    return np.floor(x * 10 + 0.5 + 1e-9) / 10


# ---------------------------------------------------------------------------------------------- mapping


@pytest.mark.parametrize("metric, value, mos", [
    ("ms_ssim", 0.7, 50.0), ("ms_ssim", 1.0, 100.0), ("ms_ssim", 0.3, 0.0), ("ms_ssim", 0.55, 25.0),
    ("psnr", 23.0, 50.0), ("psnr", 80.0, 100.0), ("psnr", 5.0, 0.0),
    ("gmsd", 0.15, 50.0), ("gmsd", 0.0, 100.0), ("gmsd", 0.4, 0.0),  # lower is better
    ("vif", 1.3, 100.0), ("nlpd", 0.425, 50.0),
])
def test_proxy_mos_hand_values(metric, value, mos):
    assert float(ss.proxy_mos(value, metric)) == pytest.approx(mos)


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="metric 'niqe' has no proxy-MOS mapping; choose one of"):
        ss.proxy_mos(0.5, "niqe")


def test_random_square_crop_shape_and_determinism():
    img = np.arange(200 * 300 * 3, dtype=np.uint8).reshape(200, 300, 3)
    a = ss.random_square_crop(img, np.random.default_rng(1), 48)
    b = ss.random_square_crop(img, np.random.default_rng(1), 48)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8 and np.array_equal(a, b)


# ---------------------------------------------------------------------------------------------- synthetic set


def _load_all(out):
    return read_jsonl(out / "scoring_train.jsonl") + read_jsonl(out / "scoring_test.jsonl")


def test_default_metric_records(tmp_path, sources):
    summary = ss.build_synthetic_scoring_set(sources, tmp_path, n_train=10, n_test=4, seed=3, size=112,
                                             clean_fraction=0.2)
    recs = _load_all(tmp_path)
    assert (summary["n_train"], summary["n_test"]) == (10, 4) and len(recs) == 14
    assert Counter(r["split"] for r in recs) == {"train": 10, "test": 4}
    for r in recs:
        assert FIELDS <= set(r) and r["dataset"] == "synthetic" and r["synthetic"] is True
        assert r["metric"] == "ms_ssim" and r["id"].startswith(f"syn-{r['split']}-")
        assert 0.0 <= r["mos"] <= 100.0
        assert r["mos_scaled"] == _half_up(min(5 * r["mos"] / 100, 4.9))
        assert r["mos"] == pytest.approx(float(ss.proxy_mos(r["metric_value"], "ms_ssim")), abs=0.006)
        img = load_rgb(r["image_path"], min_side=1)
        assert img.shape == (112, 112, 3)
        if r["distortion"] is None:  # undistorted share: identical to the reference, top score
            assert r["level"] == 0 and r["mos"] == 100.0 and r["mos_scaled"] == 4.9
        else:
            assert 1 <= r["level"] <= 5 and r["source"] in sources
    assert any(r["distortion"] is None for r in recs) and any(r["distortion"] for r in recs)


def test_synthetic_set_deterministic_and_split_stable(tmp_path, sources, monkeypatch):
    def run(name, n_train):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        ss.build_synthetic_scoring_set(sources, "set", n_train=n_train, n_test=5, seed=9, metric="psnr", size=64)
        return tmp_path / name / "set"

    a, b, c = run("a", 12), run("b", 12), run("c", 4)
    for f in ("scoring_train.jsonl", "scoring_test.jsonl"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    for p in sorted((a / "images").iterdir()):
        assert p.read_bytes() == (b / "images" / p.name).read_bytes()
    # Fewer train items change nothing in test.
    assert (a / "scoring_test.jsonl").read_bytes() == (c / "scoring_test.jsonl").read_bytes()
    other = ss.build_synthetic_scoring_set(sources, tmp_path / "d", n_train=12, n_test=5, seed=10, metric="psnr",
                                           size=64)
    assert other["train_path"].read_bytes() != (a / "scoring_train.jsonl").read_bytes()


def test_proxy_mos_decreases_with_level(tmp_path, sources):
    ss.build_synthetic_scoring_set(sources, tmp_path, n_train=200, n_test=0, seed=1, metric="psnr", size=64,
                                   clean_fraction=0.0)
    recs = _load_all(tmp_path)
    level = np.array([r["level"] for r in recs])
    mos = np.array([r["mos"] for r in recs])
    means = [mos[level == lv].mean() for lv in range(1, 6)]
    assert means[0] > means[2] > means[4]
    assert mos[level <= 2].mean() - mos[level >= 4].mean() > 5.0
    assert spearmanr(level, mos)[0] < -0.2
    assert mos.std() > 10  # the labels spread, not a constant


@pytest.mark.parametrize("level, mos", [(0, 100.0), (1, 80.0), (3, 40.0), (5, 0.0)])
def test_severity_mos_hand_values(level, mos):
    assert ss.severity_mos(level) == mos


def test_severity_kind_follows_the_level_of_the_listed_families(tmp_path, sources):
    """kind severity: MOS = 100 - 20 x level (scaled 5 - level, clean crops 100 -> 4.9 by the 0-4.9 clip of REFERENCE section 2); every distortion from the
    listed families; the images are the proxy kind's own (same draws, same pixels): only the label differs."""
    from refine_iqa import distortions
    family = {s.name: s.family for s in distortions.catalog()}
    ss.build_synthetic_scoring_set(sources, tmp_path / "sev", n_train=40, n_test=8, seed=2, size=64,
                                   kind="severity", families=["darken"])
    recs = _load_all(tmp_path / "sev")
    assert len(recs) == 48 and {r["metric"] for r in recs} == {"severity"}
    for r in recs:
        assert r["mos"] == 100 - 20 * r["level"] and r["mos_scaled"] == pytest.approx(min(5 - r["level"], 4.9))
        assert r["distortion"] is None if r["level"] == 0 else family[r["distortion"]] == "darken"
    assert {r["level"] for r in recs} >= {1, 2, 3, 4, 5}
    ss.build_synthetic_scoring_set(sources, tmp_path / "px", n_train=40, n_test=8, seed=2, size=64,
                                   metric="psnr", families=["darken"])
    proxy = _load_all(tmp_path / "px")
    assert [(r["distortion"], r["level"]) for r in proxy] == [(r["distortion"], r["level"]) for r in recs]
    assert (tmp_path / "px/images/syn-train-000003.png").read_bytes() == \
        (tmp_path / "sev/images/syn-train-000003.png").read_bytes()


@pytest.mark.parametrize("kw, match", [({"kind": "brightness"}, "kind"), ({"families": []}, "families"),
                                        ({"families": ["darken", "sepia"]}, "families")])
def test_severity_and_families_reject_bad_values_by_name(tmp_path, sources, kw, match):
    with pytest.raises(ValueError, match=f"data.scoring.synthetic.{match}"):
        ss.build_synthetic_scoring_set(sources, tmp_path, n_train=2, n_test=1, seed=0, **kw)


def test_synthetic_set_accepts_paths_and_rejects_bad_input(tmp_path):
    from refine_iqa.io_utils import save_image

    img = np.random.default_rng(0).integers(0, 255, (80, 90, 3), dtype=np.uint8)
    save_image(tmp_path / "a.png", img)
    ss.build_synthetic_scoring_set([tmp_path / "a.png"], tmp_path / "o", n_train=2, n_test=1, seed=0,
                                   metric="gmsd", size=32)
    assert {r["source"] for r in _load_all(tmp_path / "o")} == {str(tmp_path / "a.png")}
    with pytest.raises(ValueError, match="n_train must be a non-negative integer"):
        ss.build_synthetic_scoring_set([img], tmp_path / "o", n_train=-1, n_test=1, seed=0)
    with pytest.raises(ValueError, match="size must be an integer >= 16"):
        ss.build_synthetic_scoring_set([img], tmp_path / "o", n_train=1, n_test=1, seed=0, size=8)
    with pytest.raises(ValueError, match="no proxy-MOS mapping"):
        ss.build_synthetic_scoring_set([img], tmp_path / "o", n_train=1, n_test=1, seed=0, metric="brisque")
    with pytest.raises(ValueError, match="source image 'image-0': need uint8 RGB"):
        ss.build_synthetic_scoring_set([img.astype(float)], tmp_path / "o", n_train=1, n_test=1, seed=0)
    with pytest.raises(ValueError, match="no source images"):
        ss.build_synthetic_scoring_set([], tmp_path / "o", n_train=1, n_test=1, seed=0)


def test_empty_set_writes_empty_files(tmp_path, sources):
    s = ss.build_synthetic_scoring_set(sources, tmp_path, n_train=0, n_test=0, seed=0)
    assert s["n_train"] == s["n_test"] == 0 and s["mos_mean"] is None
    assert (tmp_path / "scoring_train.jsonl").read_text() == ""


# ---------------------------------------------------------------------------------------------- brightness set


@pytest.mark.parametrize("value, mos, scaled", [
    (0, 0.0, 0.0), (51, 20.0, 1.0), (255, 100.0, 4.9), (250, 98.0392, 4.9),
    (115, 45.098, 2.3),  # 5 * 115 / 255 = 2.2549 -> 2.3
    (102, 40.0, 2.0),
    ((114, 115, 115, 115), 45.0, 2.3),  # mean 114.75 -> 0.45 -> 2.25 exactly: half-up gives 2.3, not 2.2
])
def test_brightness_score_hand_values(value, mos, scaled):
    img = np.resize(np.array(value, np.uint8), (8, 8, 3))
    assert ss.brightness_score(img) == (pytest.approx(mos), scaled)


def test_brightness_set(tmp_path):
    s = ss.build_brightness_set(tmp_path / "a", n_train=60, n_test=20, seed=4, size=48)
    recs = _load_all(tmp_path / "a")
    assert (s["n_train"], s["n_test"], len(recs)) == (60, 20, 80)
    scores = []
    for r in recs:
        assert FIELDS <= set(r) and r["dataset"] == "brightness" and r["synthetic"] is True
        img = load_rgb(r["image_path"], min_side=1)
        assert img.shape == (48, 48, 3)
        b = img.astype(np.float64).mean() / 255.0
        # Label recomputed from the saved pixels: round(min(5 x brightness, 4.9), 1).
        assert r["mos"] == pytest.approx(100 * b, abs=1e-4)
        assert r["mos_scaled"] == _half_up(min(5 * b, 4.9))
        assert img.std() > 2.0  # texture / noise present
        assert np.ptp(img.reshape(-1, 3).mean(axis=0)) > 0  # tinted: channels differ
        scores.append(r["mos_scaled"])
    assert min(scores) < 0.8 and max(scores) > 4.0 and len(set(scores)) > 20
    ss.build_brightness_set(tmp_path / "b", n_train=60, n_test=20, seed=4, size=48)
    def strip(path):
        return [{k: v for k, v in json.loads(x).items() if k != "image_path"} for x in path.read_text().splitlines()]

    assert strip(tmp_path / "a" / "scoring_train.jsonl") == strip(tmp_path / "b" / "scoring_train.jsonl")
    for p in sorted((tmp_path / "a" / "images").iterdir()):
        assert p.read_bytes() == (tmp_path / "b" / "images" / p.name).read_bytes()
    with pytest.raises(ValueError, match="n_test must be a non-negative integer"):
        ss.build_brightness_set(tmp_path / "c", n_train=1, n_test=1.5, seed=0)
