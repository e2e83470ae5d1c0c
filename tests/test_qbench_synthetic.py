"""The embedded (synthetic) Q-Bench: native LLVisionQA files whose answers follow from the image labels."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from refine_iqa.data import qbench_synthetic as QS
from refine_iqa.data.qbench import CONCERNS, QUESTION_TYPES, load_llvisionqa
from refine_iqa.io_utils import save_image

# (id, distortion, level): the technical facts, written out by hand.
SCORING = [
    ("s-clean-a", None, 0), ("s-clean-b", None, 0), ("s-blur4", "blur.gaussian", 4), ("s-blur5", "blur.lens", 5),
    ("s-noise3", "noise.gaussian_rgb", 3), ("s-dark5", "darken.gamma_rgb", 5), ("s-bright3", "brighten.shift_rgb", 3),
    ("s-jpeg2", "compression.jpeg", 2), ("s-pix5", "pixelate.box", 5), ("s-sharp3", "oversharpen.unsharp", 3),
    ("s-desat1", "saturate_weaken.hsv", 1), ("s-hicon4", "contrast_strengthen.scale", 4),
]
FAMILY_OF = {"blur": "blur", "noise": "noise", "darken": "underexposure", "brighten": "overexposure",
             "compression": "compression", "pixelate": "pixelate", "oversharpen": "oversharpen",
             "saturate_weaken": "desaturate", "contrast_strengthen": "high contrast", "contrast_weaken": "low contrast"}
# scene -> objects, source; items: (object, box, family, level)
SCENES = {
    "sc0": (["red circle", "blue square", "green star"], "scenes",
            [("red circle", [5, 10, 30, 35], "blur", 4), ("blue square", [45, 40, 67, 62], "noise", 2)]),
    "sc1": (["yellow triangle", "black ring"], "scenes",
            [("yellow triangle", [80, 5, 105, 30], "darken", 5),
             ("black ring", [10, 60, 40, 90], "contrast_weaken", 1)]),
    "sc2": (["white cross", "purple diamond", "orange hexagon"], "scenes",
            [("purple diamond", [40, 20, 70, 50], "pixelate", 3)]),
    "sc3": (["dog", "cat"], "folder", [("dog", [0, 0, 50, 50], "compression", 3)]),
}
# Box centres by hand: 17.5/112 left, 56/112 middle, 92.5/112 right, 25/112 left, 55/112 middle.
POSITION = {("sc0", "circle"): "on the left", ("sc0", "square"): "in the middle", ("sc1", "triangle"): "on the right",
            ("sc1", "ring"): "on the left", ("sc2", "diamond"): "in the middle"}
YES_NO_WORDS = {"blurry": "blur", "noisy": "noise", "compression artifacts": "compression",
                "overexposed": "overexposure", "underexposed": "underexposure", "too high": "high contrast",
                "too low": "low contrast", "oversaturated": "oversaturate", "desaturated": "desaturate",
                "oversharpened": "oversharpen", "pixelated": "pixelate", "quantization": "quantization"}
SEVERITY = {1: "slight", 2: "noticeable", 3: "relatively obvious", 4: "severe", 5: "catastrophic"}


def _image(path, k):
    save_image(path, np.full((32, 32, 3), 10 * k, np.uint8))


def make_inputs(root):
    """Tiny images plus scoring and manifest records with RELATIVE paths (resolved from base_dir=root)."""
    scoring, manifest = [], []
    for k, (rid, dist, level) in enumerate(SCORING):
        _image(root / "scoring" / f"{rid}.png", k)
        scoring.append({"id": rid, "image_path": f"scoring/{rid}.png", "mos": 50.0, "mos_scaled": 2.5,
                        "distortion": dist, "level": level, "synthetic": True, "split": "test"})
    for s, (objects, source, items) in SCENES.items():
        _image(root / "ref" / f"{s}.png", 1)
        for j, (obj, box, family, level) in enumerate(items):
            _image(root / "dist" / f"{s}-o{j}.png", j + 2)
            manifest.append({"id": f"{s}-o{j}", "source_id": s, "source": source, "ref_path": f"ref/{s}.png",
                             "dist_path": f"dist/{s}-o{j}.png", "width": 112, "height": 112, "objects": objects,
                             "object": obj, "box": box, "family": family, "type": f"{family}.x", "level": level,
                             "split": "test"})
    return scoring, manifest


def build(tmp_path, out="qb", seed=0, n=24, scoring=None, manifest=None):
    if scoring is None:
        scoring, manifest = make_inputs(tmp_path)
    return QS.build_synthetic_llvisionqa(tmp_path / out, scoring_records=scoring, manifest_records=manifest,
                                         n_dev=n, n_test=n, seed=seed, base_dir=tmp_path)


def expected_answer(rec) -> str:
    """Work the answer out from the hand-written facts above, independently of the generator."""
    name, q = rec["img_path"], rec["question"]
    kind, stem = name.split("-", 1)
    stem = stem.removesuffix(".png")
    if kind == "scoring":
        _, dist, level = next(x for x in SCORING if x[0] == stem)
        family = FAMILY_OF[dist.split(".")[0]] if dist else None
        if q == "What distortion is most visible in this image?":
            assert level >= 2
            return family
        if q == "How is the overall quality of this image?":
            return {0: "high", 3: "medium", 5: "low"}[level]
        asked = [f for w, f in YES_NO_WORDS.items() if w in q and "this image" in q]
        assert len(asked) == 1, q
        assert family != asked[0] or level >= 2
        return "Yes" if asked[0] == family else "No"
    scene = stem.split("-")[0]
    objects, _, items = SCENES[scene]
    if kind == "dist":
        obj, _, fam, level = items[int(stem.split("-o")[1])]
        family = FAMILY_OF[fam]
        if q == "Which object in this image is distorted?":
            return obj
        if q == f"How severe is the distortion on the {obj}?":
            return SEVERITY[level]
        assert f"the {obj} in this image" in q, q
        asked = [f for w, f in YES_NO_WORDS.items() if w in q]
        assert len(asked) == 1, q
        return "Yes" if asked[0] == family else "No"
    assert kind == "ref" and SCENES[scene][1] == "scenes"
    colour_of = {o.split()[1]: o.split()[0] for o in objects}
    if m := re.fullmatch(r"Is there an? (\w+ \w+) in this image\?", q):
        return "Yes" if m[1] in objects else "No"
    if q == "Which of these objects appears in this image?":
        present = [c for c in rec["candidates"] if c in objects]
        assert len(present) == 1
        return present[0]
    how_many = r"How many of these objects appear in this image: the (\w+ \w+), the (\w+ \w+) and the (\w+ \w+)\?"
    if m := re.fullmatch(how_many, q):
        return ["none", "one", "two", "three"][sum(name in objects for name in m.groups())]
    if m := re.fullmatch(r"Is the (\w+) in this image (\w+)\?", q):
        return "Yes" if colour_of[m[1]] == m[2] else "No"
    if m := re.fullmatch(r"What colour is the (\w+)\?", q):
        return colour_of[m[1]]
    if m := re.fullmatch(r"How is the (\w+) positioned horizontally in this image\?", q):
        return POSITION[(scene, m[1])]
    raise AssertionError(f"unexpected question {q!r}")


def test_loads_in_native_format_with_every_type_and_concern(tmp_path):
    res = build(tmp_path)
    for split in ("dev", "test"):
        recs = load_llvisionqa(tmp_path / "qb", split)  # checks every listed image exists under images/
        assert len(recs) == 24
        assert Counter(r["type_name"] for r in recs) == dict.fromkeys(QUESTION_TYPES, 8)
        assert Counter(r["concern_name"] for r in recs) == dict.fromkeys(CONCERNS, 6)
        assert Counter((r["type"], r["concern"]) for r in recs) == {(t, c): 2 for t in range(3) for c in range(4)}
        raw = json.loads((tmp_path / "qb" / f"llvisionqa_{split}.json").read_text())
        assert set(raw[0]) == {"img_path", "question", "candidates", "correct_ans", "type", "concern"}
        assert res["counts"][split]["type"] == dict.fromkeys(QUESTION_TYPES, 8)
    note = (tmp_path / "qb" / "SYNTHETIC.md").read_text()
    assert "SYNTHETIC" in note and "NOT comparable" in note
    assert res["n_images"] == len(list((tmp_path / "qb" / "images").iterdir()))


def test_every_answer_is_right_by_construction(tmp_path):
    build(tmp_path)
    seen = Counter()
    for split in ("dev", "test"):
        for rec in load_llvisionqa(tmp_path / "qb", split):
            assert rec["correct_ans"] == expected_answer(rec), rec
            assert len(set(rec["candidates"])) == len(rec["candidates"])
            seen[rec["img_path"].split("-")[0]] += 1
    assert set(seen) == {"scoring", "dist", "ref"}


def test_hand_checked_helpers():
    assert QS.horizontal_position([5, 10, 30, 35], 112) == "on the left"  # centre 17.5 / 112 = 0.156
    assert QS.horizontal_position([45, 40, 67, 62], 112) == "in the middle"  # 56 / 112 = 0.5
    assert QS.horizontal_position([80, 5, 105, 30], 112) == "on the right"  # 92.5 / 112 = 0.83
    assert QS.horizontal_position([20, 0, 40, 10], 100) == "on the left"  # exactly 0.30: bin edge included
    assert QS.horizontal_position([25, 0, 45, 10], 100) is None  # 0.35: between two bins, not asked
    assert QS.cell_counts(12) == {(t, c): 1 for t in range(3) for c in range(4)}
    four = QS.cell_counts(4)
    assert {t for t, _ in four} == {0, 1, 2} and {c for _, c in four} == {0, 1, 2, 3}
    assert "pixelate" in QS.CONFUSABLE["blur"] and "blur" in QS.CONFUSABLE["pixelate"]
    assert "underexposure" not in QS.CONFUSABLE["blur"]
    assert all(f not in QS.CONFUSABLE[f] and all(f in QS.CONFUSABLE[g] for g in QS.CONFUSABLE[f])
               for f in QS.CONFUSABLE)


def test_no_answers_never_name_a_confusable_family(tmp_path):
    build(tmp_path, n=36)
    for rec in load_llvisionqa(tmp_path / "qb", "dev") + load_llvisionqa(tmp_path / "qb", "test"):
        if rec["type"] == 0 and rec["concern"] in (0, 2) and rec["correct_ans"] == "No":
            asked = next(f for w, f in YES_NO_WORDS.items() if w in rec["question"])
            stem = rec["img_path"].split("-", 1)[1].removesuffix(".png")
            if rec["img_path"].startswith("scoring-"):
                dist = next(x[1] for x in SCORING if x[0] == stem)
                actual = FAMILY_OF[dist.split(".")[0]] if dist else None
            else:
                actual = FAMILY_OF[SCENES[stem.split("-")[0]][2][int(stem.split("-o")[1])][2]]
            assert actual is None and asked in QS.ARTIFACT_FAMILIES or asked not in QS.CONFUSABLE[actual] | {actual}


def test_deterministic_per_seed_and_independent_of_input_order(tmp_path):
    scoring, manifest = make_inputs(tmp_path)
    build(tmp_path, "a", scoring=scoring, manifest=manifest)
    build(tmp_path, "b", scoring=scoring[::-1], manifest=manifest[::-1])
    build(tmp_path, "c", seed=1, scoring=scoring, manifest=manifest)
    files = ("llvisionqa_dev.json", "llvisionqa_test.json", "SYNTHETIC.md")
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a" / "images").iterdir()) == \
        sorted(p.name for p in (tmp_path / "b" / "images").iterdir())
    assert (tmp_path / "a" / files[0]).read_bytes() != (tmp_path / "c" / files[0]).read_bytes()


def test_answers_spread_over_positions_and_yes_no_balanced(tmp_path):
    build(tmp_path, n=48)
    for split in ("dev", "test"):
        recs = load_llvisionqa(tmp_path / "qb", split)
        positions = Counter(r["answer_index"] for r in recs)
        assert len(positions) >= 3 and max(positions.values()) < 0.6 * len(recs)
        yn = [r for r in recs if r["type"] == 0]
        answers = Counter(r["correct_ans"] for r in yn)
        assert abs(answers["Yes"] - answers["No"]) <= 4  # alternated per cell (4 cells of 4)
        assert {r["answer_index"] for r in yn if r["correct_ans"] == "Yes"} == {0, 1}
        four = [r["answer_index"] for r in recs if len(r["candidates"]) == 4]
        assert set(four) == {0, 1, 2, 3}


def test_images_are_linked_or_copied_byte_for_byte(tmp_path):
    build(tmp_path)
    rec = load_llvisionqa(tmp_path / "qb", "dev")[0]
    kind, stem = rec["img_path"].split("-", 1)
    src = {"scoring": tmp_path / "scoring", "dist": tmp_path / "dist", "ref": tmp_path / "ref"}[kind] / stem
    assert (tmp_path / "qb" / "images" / rec["img_path"]).read_bytes() == src.read_bytes()


def test_bad_input_errors_name_the_record(tmp_path):
    scoring, manifest = make_inputs(tmp_path)
    with pytest.raises(ValueError, match="n_dev must be an integer >= 4"):
        build(tmp_path, n=3, scoring=scoring, manifest=manifest)
    bright = [{k: v for k, v in r.items() if k not in ("distortion", "level")} for r in scoring]
    with pytest.raises(ValueError, match=r"scoring_records\[0\] \(id 's-clean-a'\).*'distortion'.*brightness"):
        build(tmp_path, scoring=bright, manifest=manifest)
    bad_level = [dict(scoring[0], level=2)]  # clean image (distortion null) with a level
    with pytest.raises(ValueError, match="'distortion' is null.*level' is 2"):
        build(tmp_path, scoring=bad_level, manifest=manifest)
    gone = [dict(scoring[2], image_path="scoring/nope.png")]
    with pytest.raises(FileNotFoundError, match=r"scoring_records\[0\].*nope.png not found"):
        build(tmp_path, scoring=gone, manifest=manifest)
    bad_family = [dict(manifest[0], family="sparkle")]
    with pytest.raises(ValueError, match=r"manifest_records\[0\] \(id 'sc0-o0'\): field 'family'.*sparkle"):
        build(tmp_path, scoring=scoring, manifest=bad_family)
    no_scenes = [r for r in manifest if r["source"] != "scenes"]
    with pytest.raises(ValueError, match="no yes-or-no / other question.*generated scenes"):
        build(tmp_path, scoring=scoring, manifest=no_scenes)
    clean_only = [r for r in scoring if r["distortion"] is None]
    with pytest.raises(ValueError, match="what / technical question.*level >= 2"):
        build(tmp_path, scoring=clean_only, manifest=manifest)
