"""Refine-Perception statistics: numbers on a hand-built manifest, and the PNG figures."""

from __future__ import annotations

import pytest
from PIL import Image

from refine_iqa import distortions
from refine_iqa.data import stats


def _r(i, family, typ, level, box, split, status="pending", source="s1", w=100, h=50):
    return {"id": f"i{i}", "source_id": source, "family": family, "type": f"{family}.{typ}", "level": level,
            "box": box, "width": w, "height": h, "split": split,
            "review": {"status": status, "reason": None, "by": None, "rule": None}}


@pytest.fixture
def manifest():
    # Image 100 x 50 = 5000 px. Box areas: 500 (0.1), 1000 (0.2), 2500 (0.5), 5000 (1.0, rejected), 250 (0.05).
    return [
        _r(0, "blur", "gaussian", 1, [0, 0, 50, 10], "train"),
        _r(1, "blur", "motion", 3, [0, 0, 20, 50], "test", source="s2"),
        _r(2, "noise", "speckle", 3, [0, 0, 50, 50], "train", status="accepted", source="s2"),
        _r(3, "noise", "speckle", 5, [0, 0, 100, 50], None, status="rejected", source="s3"),
        _r(4, "pixelate", "box", 5, [10, 10, 35, 20], "train"),
    ]


def test_manifest_stats_hand_worked(manifest):
    s = stats.manifest_stats(manifest)
    assert (s["n_items"], s["n_kept"], s["n_rejected"], s["n_sources"]) == (5, 4, 1, 2)
    assert s["split_counts"] == {"train": 3, "test": 1}
    assert list(s["family_counts"]) == list(distortions.FAMILIES)  # every family, catalogue order
    assert {f: c for f, c in s["family_counts"].items() if c} == {"blur": 2, "noise": 1, "pixelate": 1}
    assert s["family_counts"]["darken"] == 0
    assert s["family_counts_by_split"]["test"]["blur"] == 1 and s["family_counts_by_split"]["train"]["blur"] == 1
    assert s["type_counts"] == {"blur.gaussian": 1, "blur.motion": 1, "noise.speckle": 1, "pixelate.box": 1}
    assert s["level_counts"] == {1: 1, 2: 0, 3: 2, 4: 0, 5: 1}
    assert s["level_counts_by_split"]["train"] == {1: 1, 2: 0, 3: 1, 4: 0, 5: 1}
    area = s["box_area_ratio"]  # kept ratios 0.1, 0.2, 0.5, 0.05
    assert area["n"] == 4 and area["mean"] == pytest.approx(0.2125) and area["median"] == pytest.approx(0.15)
    assert (area["min"], area["max"]) == (pytest.approx(0.05), pytest.approx(0.5))
    assert s["box_area_ratio_by_family"]["blur"]["mean"] == pytest.approx(0.15)
    assert s["box_area_ratio_by_family"]["darken"] == {"n": 0, "mean": None, "median": None, "min": None,
                                                       "max": None, "p10": None, "p90": None}


def test_unassigned_split_and_bad_level(manifest):
    manifest[0]["split"] = None
    s = stats.manifest_stats(manifest)
    assert s["split_counts"] == {"train": 2, "test": 1, "unassigned": 1}
    manifest[1]["level"] = 6
    with pytest.raises(ValueError, match="item 'i1': level 6"):
        stats.manifest_stats(manifest)


def _assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 200


def test_plots_are_written_as_valid_pngs(manifest, tmp_path):
    out = stats.write_stats_plots(manifest, tmp_path / "figs")
    assert set(out) == {"box_area", "severity", "families", "types"}
    for path in out.values():
        _assert_png(path)
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(p.name for p in out.values())


def test_plots_of_an_empty_manifest(tmp_path):
    out = stats.write_stats_plots([], tmp_path)
    for path in out.values():
        _assert_png(path)
    assert stats.manifest_stats([])["box_area_ratio"]["n"] == 0
