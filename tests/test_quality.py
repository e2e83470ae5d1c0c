"""Quality filter over pyiqa metrics: settings, pass rule, directions, lazy metric creation, offline defaults."""

import math

import numpy as np
import pytest

from refine_iqa.data import quality
from refine_iqa.data.quality import QualityFilter, QualityMetricSpec, get_metric, metric_info, passes
from refine_iqa.data.scenes import generate_scene

pytest.importorskip("pyiqa")


def test_parse_metric_specs():
    assert QualityMetricSpec.parse("piqe:50") == QualityMetricSpec("piqe", 50.0, None, None)
    assert QualityMetricSpec.parse("piqe:50.5:lower") == QualityMetricSpec("piqe", 50.5, "lower", None)
    assert QualityMetricSpec.parse("dbcnn:0.6:higher:/w/db:cnn.pth") == QualityMetricSpec("dbcnn", 0.6, "higher", "/w/db:cnn.pth")
    for bad in ["piqe", ":5", "piqe:abc"]:
        with pytest.raises(ValueError, match="NAME:THRESHOLD|not a number"):
            QualityMetricSpec.parse(bad)
    assert QualityMetricSpec.from_dict({"metric": "piqe", "threshold": 40}) == QualityMetricSpec("piqe", 40.0)
    with pytest.raises(ValueError, match="unknown keys.*'thresh'"):
        QualityMetricSpec.from_dict({"metric": "piqe", "thresh": 40})


def test_pass_rule_is_strict_and_nan_fails():
    assert passes(80.01, 80, "higher") and not passes(80.0, 80, "higher") and not passes(79, 80, "higher")
    assert passes(49.9, 50, "lower") and not passes(50.0, 50, "lower") and not passes(51, 50, "lower")
    assert not passes(math.nan, 0, "higher") and not passes(math.nan, 100, "lower")


def test_pyiqa_declares_directions_and_ranges():
    assert metric_info("piqe") == {"metric_mode": "NR", "lower_better": True, "score_range": "0, 100"}
    assert metric_info("entropy") == {"metric_mode": "NR", "lower_better": False, "score_range": "0, 8"}
    assert metric_info("psnr")["metric_mode"] == "FR"


def test_default_direction_comes_from_pyiqa_and_mismatch_warns():
    f = QualityFilter([QualityMetricSpec("piqe", 60), QualityMetricSpec("entropy", 3)])
    assert [s.direction for s in f.specs] == ["lower", "higher"]
    with pytest.warns(UserWarning, match="pyiqa says lower is better"):
        QualityFilter([QualityMetricSpec("piqe", 60, "higher")])


@pytest.mark.parametrize(
    "spec, error, message",
    [
        (QualityMetricSpec("psnr", 30), ValueError, "full-reference"),
        (QualityMetricSpec("not_a_metric", 1), ValueError, "not a pyiqa metric"),
        (QualityMetricSpec("piqe", 1, "sideways"), ValueError, "'higher' or 'lower'"),
        (QualityMetricSpec("dbcnn", 0.5, None, "/no/such/weights.pth"), FileNotFoundError, "weights file"),
    ],
)
def test_bad_settings_are_clear_errors(spec, error, message):
    with pytest.raises(error, match=message):
        QualityFilter([spec])


def test_metric_listed_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        QualityFilter([QualityMetricSpec("piqe", 50), QualityMetricSpec("piqe", 40)])


def test_entropy_scores_by_hand():
    f = QualityFilter([QualityMetricSpec("entropy", 1.2)])
    half = np.zeros((40, 40, 3), np.uint8)
    half[:, :20] = 255
    quarters = np.zeros((40, 40, 3), np.uint8)
    quarters[:, :10] = 255
    quarters[:, 10:20] = 128  # grey level ~0.5: a third histogram bin
    flat = np.full((40, 40, 3), 77, np.uint8)
    r_half, r_quarters, r_flat = f(half), f(quarters), f(flat)
    assert r_half.scores["entropy"] == pytest.approx(1.0, abs=1e-4)  # two equal bins: 1 bit
    assert r_quarters.scores["entropy"] == pytest.approx(1.5, abs=1e-4)  # 1/4, 1/4, 1/2
    assert r_flat.scores["entropy"] == pytest.approx(0.0, abs=1e-4)
    assert not r_half.passed and r_quarters.passed and not r_flat.passed
    assert r_half.failures == ["entropy=1.000 not > 1.2"]


def test_piqe_keeps_clean_scenes_and_rejects_noisy_ones():
    f = QualityFilter([QualityMetricSpec("piqe", 60), QualityMetricSpec("entropy", 4)])
    rng = np.random.default_rng(0)
    for seed in range(4):
        img, _ = generate_scene(seed)
        clean = f(img)
        noisy = f(np.clip(img + rng.normal(0, 40, img.shape), 0, 255).astype(np.uint8))
        assert clean.passed, clean
        assert not noisy.passed and noisy.scores["piqe"] > 60
        assert [m.split("=")[0] for m in noisy.failures] == ["piqe"]
        assert set(clean.scores) == {"piqe", "entropy"}


def test_empty_filter_passes_without_scores():
    r = QualityFilter([])(np.zeros((40, 40, 3), np.uint8))
    assert r.passed and r.scores == {} and r.failures == []


def test_metrics_are_created_once_and_weights_are_passed(monkeypatch, tmp_path):
    calls = []

    class FakeMetric:
        def __call__(self, x):
            import torch

            return torch.tensor([0.75])

    def fake_create(name, device=None, **kwargs):
        calls.append((name, device, kwargs))
        return FakeMetric()

    import pyiqa

    monkeypatch.setattr(pyiqa, "create_metric", fake_create)
    monkeypatch.setattr(quality, "_METRIC_CACHE", {})
    weights = tmp_path / "dbcnn.pth"
    weights.write_bytes(b"weights")
    f = QualityFilter([QualityMetricSpec("dbcnn", 0.5, weights=str(weights))])
    img = np.zeros((40, 40, 3), np.uint8)
    assert f(img).scores == {"dbcnn": 0.75} and f(img).passed
    QualityFilter([QualityMetricSpec("dbcnn", 0.9, weights=str(weights))])(img)
    assert calls == [("dbcnn", "cpu", {"pretrained_model_path": str(weights)})]


def test_metric_creation_failure_explains_weights(monkeypatch):
    import pyiqa

    def offline(name, device=None, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(pyiqa, "create_metric", offline)
    monkeypatch.setattr(quality, "_METRIC_CACHE", {})
    with pytest.raises(RuntimeError, match="'niqe' could not be created.*give `weights`"):
        get_metric("niqe")
