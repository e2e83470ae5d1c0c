"""Review step: quality-control arithmetic, manifest checks, the decisions log and the review state machine.

`write_review_manifest` is also used by test_review_app.py and test_review_browser.py.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refine_iqa.io_utils import save_image, write_jsonl
from refine_iqa.review.decisions import DecisionFileError, DecisionStore, StoreLockedError, load_decisions, read_events
from refine_iqa.review.manifest import ManifestError, ReviewItem, batch_slug, load_manifest, select_batch
from refine_iqa.review.qc import box_area_fraction, max_deletions, oversize_rejection
from refine_iqa.review.service import ReviewService, ReviewSettings, default_decisions_path
from refine_iqa.review.session import ActionRefused, ReviewSession

W, H = 120, 80
FAMILIES = ["blur", "noise", "darken", "blur", "pixelate", "contrast_weaken"]
OBJECTS = ["red circle", "blue square", "green star", "yellow ring", "purple kite", "orange moon"]


# Photos shipped with scikit-image (360x240 after crop and resize) with a box around a real object, for the
# browser test and its screenshot: (id, image, crop rows, family, object, box, level).
PHOTO_W, PHOTO_H = 360, 240
PHOTO_SPECS = [
    ("img-1", "astronaut", (40, 381), "pixelate", "face", [110, 0, 210, 90], 2),
    ("img-2", "coffee", None, "noise", "cup", [100, 10, 250, 190], 3),
    ("img-3", "chelsea", None, "blur", "cat", [40, 10, 300, 230], 4),
    ("img-4", "rocket", None, "darken", "rocket", [160, 65, 195, 235], 3),
    ("img-5", "stereo_motorcycle", None, "contrast_weaken", "motorcycle", [50, 40, 335, 215], 4),
]
PHOTO_BIG = ("img-big", "coffee", None, "noise", "table", [0, 0, 350, 235], 3)  # 82250 / 86400 = 95.2%


def _distort(crop: np.ndarray, family: str, level: int, rng) -> np.ndarray:
    """A plain version of each family, visible at the given level (test images only)."""
    from PIL import Image, ImageFilter

    x = crop.astype(np.float64)
    if family == "blur":
        return np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(1.5 * level)))
    if family == "noise":
        x = x + rng.normal(0, 10 * level, x.shape)
    elif family == "darken":
        x = x * (1 - 0.17 * level)
    elif family == "contrast_weaken":
        x = x.mean() + (x - x.mean()) * (1 - 0.17 * level)
    elif family == "pixelate":
        h, w = crop.shape[:2]
        k = 2 + 2 * level
        small = Image.fromarray(crop).resize((max(1, w // k), max(1, h // k)), Image.BILINEAR)
        return np.asarray(small.resize((w, h), Image.NEAREST))
    else:
        raise ValueError(family)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _photo(name: str, rows) -> np.ndarray:
    from PIL import Image
    from skimage import data

    img = getattr(data, name)()
    img = img[0] if isinstance(img, tuple) else img
    if rows:
        img = img[rows[0]:rows[1]]
    return np.asarray(Image.fromarray(img).resize((PHOTO_W, PHOTO_H), Image.LANCZOS))


def write_review_manifest(folder: Path, n: int = 6, *, oversized: bool = True, manifest_rejected: bool = False,
                          photos: bool = False) -> Path:
    """A manifest of `n` reviewable items with real PNGs (distortion only inside the box), plus optionally one
    item whose box covers over 90% of the image (removed before review) and one already rejected in the
    manifest. Synthetic 120x80 images, or with `photos` the scikit-image photos of PHOTO_SPECS (n <= 5).
    Paths are relative to `folder` (pass image_root=folder)."""
    folder = Path(folder)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:PHOTO_H, 0:PHOTO_W] if photos else np.mgrid[0:H, 0:W]
    recs = []
    if photos:
        specs = [(i, fam, obj, box, lvl) for i, _, _, fam, obj, box, lvl in PHOTO_SPECS[:n]]
        images = {s[0]: _photo(s[1], s[2]) for s in PHOTO_SPECS[:n] + [PHOTO_BIG]}
        if oversized:
            specs.append(PHOTO_BIG[:1] + PHOTO_BIG[3:])
    else:
        specs = [(f"img-{i + 1}", FAMILIES[i % len(FAMILIES)], OBJECTS[i % len(OBJECTS)],
                  [10 + 3 * i, 8 + 2 * i, 70 + 3 * i, 60 + i], 1 + i % 5) for i in range(n)]
        if oversized:
            specs.append(("img-big", "noise", "wide sky", [0, 0, 115, 77], 3))  # 8855 / 9600 = 92.2%
    if manifest_rejected:
        specs.append(("img-gone", "blur", "tiny dot", [1, 1, 3, 3], 1))
    for k, (item_id, family, obj, box, level) in enumerate(specs):
        if photos and item_id in images:
            ref = images[item_id]
        else:
            ref = np.stack([(xx * 2 + k * 20) % 256, (yy * 3) % 256, ((xx + yy) * 2) % 256], axis=2).astype(np.uint8)
        dist = ref.copy()
        x1, y1, x2, y2 = box
        dist[y1:y2, x1:x2] = _distort(ref[y1:y2, x1:x2], family, level, rng)
        save_image(folder / "ref" / f"{item_id}.png", ref)
        save_image(folder / "dist" / f"{item_id}.png", dist)
        review = {"status": "pending", "reason": None, "by": None, "rule": None}
        if item_id == "img-gone":
            review = {"status": "rejected", "reason": "box too small", "by": "auto", "rule": "box_too_small"}
        recs.append({"id": item_id, "source_id": item_id, "source": "scenes", "ref_path": f"ref/{item_id}.png",
                     "dist_path": f"dist/{item_id}.png", "width": int(ref.shape[1]), "height": int(ref.shape[0]),
                     "objects": [obj, "other thing"],
                     "object": obj, "box": box, "family": family, "type": f"{family}.x", "level": level,
                     "params": {}, "seed": k, "quality": {}, "split": "train", "review": review})
    path = folder / "manifest.jsonl"
    write_jsonl(path, recs)
    return path


# ---------------------------------------------------------------------------------------------------------------
# quality control arithmetic (values worked out by hand)


def test_box_area_fraction_by_hand():
    assert box_area_fraction([0, 0, 50, 40], 100, 50) == pytest.approx(2000 / 5000)  # 0.4
    assert box_area_fraction([10, 10, 11, 11], 100, 50) == pytest.approx(1 / 5000)
    assert box_area_fraction([0, 0, 100, 50], 100, 50) == 1.0
    with pytest.raises(ValueError, match="positive"):
        box_area_fraction([0, 0, 1, 1], 0, 50)


def test_oversize_rule_strictly_above_limit():
    # 96*48 = 4608 of 5000 = 92.16% -> removed; 90*50 = 4500 = exactly 90% -> kept ("exceeding 90%").
    assert oversize_rejection([0, 0, 96, 48], 100, 50) == ("box_over_90pct",
                                                          "box covers 92.2% of the image (limit 90%)")
    assert oversize_rejection([0, 0, 90, 50], 100, 50) is None
    assert oversize_rejection([0, 0, 91, 50], 100, 50, 0.9)[0] == "box_over_90pct"  # 4550 / 5000 = 91%
    assert oversize_rejection([0, 0, 81, 50], 100, 50, 0.8)[0] == "box_over_80pct"  # 81%
    with pytest.raises(ValueError, match="max_box_frac"):
        oversize_rejection([0, 0, 1, 1], 100, 50, 0.0)


@pytest.mark.parametrize("n, frac, expected", [
    (5, 0.2, 1), (4, 0.2, 0), (10, 0.2, 2), (2000, 0.2, 400),  # paper: 400 of 2000
    (100, 0.29, 29),  # 0.29 * 100 = 28.999999999999996 in floats: must still be 29
    (0, 0.2, 0), (7, 1.0, 7), (7, 0.0, 0), (9, 0.5, 4),
])
def test_max_deletions_by_hand(n, frac, expected):
    assert max_deletions(n, frac) == expected


@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan, True, "0.2"])
def test_max_deletions_rejects_bad_fraction(bad):
    with pytest.raises(ValueError, match="max_delete_frac"):
        max_deletions(10, bad)


# ---------------------------------------------------------------------------------------------------------------
# manifest


def test_manifest_loads_items_and_labels(tmp_path):
    path = write_review_manifest(tmp_path, 3, oversized=False)
    items = load_manifest(path, tmp_path)
    assert [it.id for it in items] == ["img-1", "img-2", "img-3"]
    it = items[2]
    assert (it.family, it.family_name, it.level, it.severity) == ("darken", "underexposure", 3, "relatively obvious")
    assert it.box == (16, 12, 76, 62) and it.dist_path == tmp_path / "dist" / "img-3.png" and it.line == 3


def _rewrite_first(path: Path, **changes) -> None:
    lines = path.read_text().splitlines()
    rec = json.loads(lines[0])
    rec.update(changes)
    lines[0] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("change, match", [
    ({"box": [50, 10, 40, 20]}, r"line 1: field 'box' \[50, 10, 40, 20\] is empty or outside"),
    ({"box": [0, 0, 10, W + 1]}, "outside the 120x80 image"),
    ({"box": [0, 0, 10]}, "field 'box' must be"),
    ({"family": "sepia"}, "field 'family' 'sepia' is not one of"),
    ({"level": 6}, "field 'level' must be 1..5"),
    ({"width": "120"}, "field 'width' must be an integer"),
    ({"object": ""}, "field 'object' must be a non-empty string"),
    ({"review": {"status": "maybe"}}, "review.status"),
    ({"id": "img-2"}, "line 2: id 'img-2' already used on line 1"),
    ({"dist_path": "dist/nope.png"}, "1 image file\\(s\\) missing: line 1: .*nope.png"),
])
def test_manifest_errors_name_line_and_field(tmp_path, change, match):
    path = write_review_manifest(tmp_path, 2, oversized=False)
    _rewrite_first(path, **change)
    with pytest.raises(ManifestError, match=match):
        load_manifest(path, tmp_path)


def test_manifest_bad_json_and_missing(tmp_path):
    path = write_review_manifest(tmp_path, 2, oversized=False)
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(ManifestError, match="line 3: invalid JSON"):
        load_manifest(path, tmp_path)
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "missing.jsonl")


def test_select_batch_slices():
    items = [ReviewItem(f"i{k}", Path("r"), Path("d"), 10, 10, "o", (), (0, 0, 1, 1), "blur", "blur.x", 1, "pending", k)
             for k in range(10)]
    # 10 items in 3 slices: [0, 3), [3, 6), [6, 10)
    assert [it.id for it in select_batch(items, "1/3")] == ["i0", "i1", "i2"]
    assert [it.id for it in select_batch(items, "3/3")] == ["i6", "i7", "i8", "i9"]
    assert sum(len(select_batch(items, f"{k}/3")) for k in (1, 2, 3)) == 10
    assert len(select_batch(items, "alice")) == 10
    assert batch_slug("2/5") == "2-of-5" and batch_slug("alice.1") == "alice.1"
    for bad, match in [("4/3", "larger than"), ("1/11", "only 10 items"), ("../x y", "batch name")]:
        with pytest.raises(ValueError, match=match):
            select_batch(items, bad)


# ---------------------------------------------------------------------------------------------------------------
# decisions log


def _decision(item_id, status="accepted", reason=None, phase="review", verified=False, by="alice"):
    return {"event": "decision", "item_id": item_id, "status": status, "reason": reason, "by": by, "phase": phase,
            "verified": verified, "rule": None}


def test_every_decision_is_on_disk_at_once(tmp_path):
    path = tmp_path / "d.jsonl"
    store = DecisionStore(path, "b1")
    store.append(_decision("x1"))
    assert len(path.read_text().splitlines()) == 1  # written before append() returned, store still open
    store.append(_decision("x2", "rejected", "other"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["item_id"], r["status"], r["batch"], r["v"]) for r in lines] == [("x1", "accepted", "b1", 1),
                                                                                 ("x2", "rejected", "b1", 1)]
    store.close()
    again = DecisionStore(path, "b1")
    assert [e["item_id"] for e in again.events] == ["x1", "x2"]
    again.close()


def test_store_lock_and_batch_mismatch(tmp_path):
    path = tmp_path / "d.jsonl"
    first = DecisionStore(path, "b1")
    with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
        DecisionStore(path, "b1")
    first.append(_decision("x1"))
    first.close()
    with pytest.raises(DecisionFileError, match="line 1: this file holds batch 'b1', not 'b2'"):
        DecisionStore(path, "b2")
    DecisionStore(path, "b1").close()  # the failed open released its lock


def test_torn_last_line_is_dropped_and_complete_one_kept(tmp_path):
    path = tmp_path / "d.jsonl"
    store = DecisionStore(path, "b")
    store.append(_decision("x1"))
    store.close()
    good = path.read_bytes()
    path.write_bytes(good + b'{"v": 1, "event": "deci')  # killed mid-write
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert list(load_decisions(path)) == ["x1"]
    with pytest.warns(UserWarning, match="dropping an incomplete last line"):
        store = DecisionStore(path, "b")
    assert path.read_bytes() == good
    store.append(_decision("x2"))
    store.close()
    # A whole event that only lost its newline is kept, and completed before the next append.
    line = json.dumps({"v": 1, "batch": "b", **_decision("x3", "rejected", "other")}).encode()
    path.write_bytes(path.read_bytes() + line)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = DecisionStore(path, "b")
    store.append(_decision("x4"))
    store.close()
    assert [e["item_id"] for e in read_events(path)] == ["x1", "x2", "x3", "x4"]


def test_load_decisions_last_wins_across_lines_and_files(tmp_path):
    a, b = tmp_path / "dec" / "a.jsonl", tmp_path / "dec" / "b.jsonl"
    s = DecisionStore(a, "1/2")
    s.append(_decision("x1", "rejected", "object_mismatch"))
    s.append({"event": "skip", "item_id": "x2", "by": "alice", "phase": "review"})
    s.append(_decision("x1", "accepted", phase="verify", verified=True))  # restored in verification
    s.append({"event": "auto", "item_id": "x9", "status": "rejected", "reason": "box covers 95.0% of the image",
              "by": "auto", "rule": "box_over_90pct"})
    s.close()
    s = DecisionStore(b, "2/2")
    s.append(_decision("x3", "rejected", "not_perceptible", by="bob"))
    s.append(_decision("x1", "rejected", "other", by="bob"))  # b.jsonl is read after a.jsonl
    s.close()
    got = load_decisions(a)
    assert got == {"x1": {"status": "accepted", "reason": None, "by": "alice", "verified": True, "rule": None},
                   "x9": {"status": "rejected", "reason": "box covers 95.0% of the image", "by": "auto",
                          "verified": False, "rule": "box_over_90pct"}}
    merged = load_decisions(tmp_path / "dec")  # folder: *.jsonl in name order
    assert merged["x1"]["status"] == "rejected" and merged["x1"]["by"] == "bob"
    assert merged["x3"] == {"status": "rejected", "reason": "not_perceptible", "by": "bob", "verified": False,
                            "rule": None}
    assert "x2" not in merged  # a skip is not a decision
    assert load_decisions([b, a])["x1"]["by"] == "alice"  # explicit order decides


@pytest.mark.parametrize("line, match", [
    ('{"v": 1, "event": "decision", "item_id": "x", "status": "maybe", "reason": null, "by": "a", "batch": "b", '
     '"phase": "review", "verified": false}', "line 2: field 'status' must be one of accepted, rejected"),
    ('{"v": 1, "event": "decision", "item_id": "x", "status": "rejected", "reason": "ugly", "by": "a", "batch": "b", '
     '"phase": "review", "verified": false}', "line 2: field 'reason' of a rejection"),
    ('{"v": 1, "event": "decision", "item_id": "x", "status": "accepted", "reason": null, "by": "a", "batch": "b", '
     '"phase": "review", "verified": "yes"}', "field 'verified'"),
    ('{"v": 1, "event": "vote", "item_id": "x", "by": "a", "batch": "b"}', "field 'event'"),
    ('{"v": 2, "event": "skip", "item_id": "x", "by": "a", "batch": "b", "phase": "review"}', "field 'v'"),
    ('{"v": 1, "event": "skip", "item_id": "", "by": "a", "batch": "b", "phase": "review"}', "field 'item_id'"),
    ('[1, 2]', "line 2: expected a JSON object"),
    ('{broken', "line 2: invalid JSON"),
])
def test_load_decisions_errors_name_file_line_field(tmp_path, line, match):
    path = tmp_path / "d.jsonl"
    ok = json.dumps({"v": 1, "batch": "b", **_decision("x0")})
    path.write_text(ok + "\n" + line + "\n" + ok + "\n")
    with pytest.raises(DecisionFileError, match=match):
        load_decisions(path)
    with pytest.raises(FileNotFoundError, match="decisions file not found"):
        load_decisions(tmp_path / "none.jsonl")


# ---------------------------------------------------------------------------------------------------------------
# state machine


def _items(families):
    return [ReviewItem(f"i{k}", Path("r"), Path("d"), 10, 10, f"o{k}", (), (0, 0, 5, 5), fam, f"{fam}.x", 1,
                       "pending", k + 1) for k, fam in enumerate(families)]


def _do(s: ReviewSession, action, item_id=None, reason=None):
    item_id = s.cursor if item_id is None else item_id
    s.check(action, item_id, reason)
    ev = s.make_event(action, item_id, reason, "alice")
    s.apply(ev)
    return ev


def test_first_pass_skip_back_limit_then_verification():
    s = ReviewSession(_items(["blur", "noise", "blur", "darken", "noise"]), max_deletions=1)
    assert (s.mode, s.cursor) == ("review", "i0")
    _do(s, "accept")
    _do(s, "delete", reason="object_mismatch")
    assert (s.cursor, s.deleted) == ("i2", 1)
    with pytest.raises(ActionRefused, match="Deletion limit reached: 1 of 5 items") as e:
        s.check("delete", "i2", "other")
    assert e.value.code == "limit_reached" and not s.can_delete()
    _do(s, "skip")  # i2 left for later
    _do(s, "accept")  # i3
    _do(s, "accept")  # i4, then wrap round to the skipped i2
    assert (s.mode, s.cursor) == ("review", "i2")
    with pytest.raises(ActionRefused, match="last item without a decision") as e:
        s.check("skip", "i2")
    ev = _do(s, "back")
    assert ev == {"event": "back", "item_id": "i1", "by": "alice", "phase": "review"} and s.cursor == "i1"
    assert s.can_delete()  # re-deleting an already deleted item does not count twice
    _do(s, "skip")  # from a decided item: on to the next undecided one
    assert s.cursor == "i2"
    p = s.progress()
    assert (p["total"], p["reviewed"], p["remaining"], p["deleted"], p["max_deletions"]) == (5, 4, 1, 1, 1)
    rows = [(r["family"], r["name"], r["total"], r["reviewed"], r["deleted"], r["remaining"]) for r in p["per_family"]]
    assert rows == [("blur", "blur", 2, 1, 0, 1), ("noise", "noise", 2, 2, 1, 0),
                    ("darken", "underexposure", 1, 1, 0, 0)]
    _do(s, "accept")  # last undecided -> post-hoc verification of the deleted i1
    assert (s.mode, s.cursor, s.progress()["to_verify"]) == ("verify", "i1", 1)
    with pytest.raises(ActionRefused, match="first item") as e:
        s.check("back", "i1")
    with pytest.raises(ActionRefused, match="to verify") as e:
        s.check("skip", "i1")
    ev = _do(s, "delete")  # confirm: keeps the first-pass reason
    assert (ev["status"], ev["reason"], ev["verified"], ev["phase"]) == ("rejected", "object_mismatch", True, "verify")
    assert (s.mode, s.cursor) == ("done", None)
    with pytest.raises(ActionRefused) as e:
        s.check("accept", "i1")
    assert e.value.code == "done"
    _do(s, "back", item_id=None)  # from "done" back to the last verified item
    assert (s.mode, s.cursor) == ("verify", "i1")
    ev = _do(s, "accept")  # restore after all
    assert (ev["status"], ev["reason"], ev["verified"]) == ("accepted", None, True)
    assert (s.mode, s.deleted) == ("done", 0)


def test_stale_and_bad_actions_refused():
    s = ReviewSession(_items(["blur", "noise"]), max_deletions=1)
    for action, item_id, reason, code in [("accept", "i1", None, "stale"), ("back", "i0", None, "at_start"),
                                          ("delete", "i0", None, "bad_reason"), ("delete", "i0", "ugly", "bad_reason"),
                                          ("jump", "i0", None, "bad_action"), ("back", "i1", None, "stale")]:
        with pytest.raises(ActionRefused) as e:
            s.check(action, item_id, reason)
        assert e.value.code == code, (action, item_id)
    assert ReviewSession([], 0).mode == "done"


def test_zero_deletion_budget_blocks_every_delete():
    s = ReviewSession(_items(["blur", "noise", "blur", "noise"]), max_deletions=max_deletions(4, 0.2))
    with pytest.raises(ActionRefused, match=r"at most 0 may be\)\. Accept \(a\) or skip \(s\) this item\.$"):
        s.check("delete", "i0", "other")


# ---------------------------------------------------------------------------------------------------------------
# service: QC before review, resume after a restart, separate batches


def test_service_auto_rejects_and_resumes_exactly(tmp_path):
    manifest = write_review_manifest(tmp_path, 5, oversized=True, manifest_rejected=True)
    settings = ReviewSettings(reviewer="alice", batch="all", image_root=tmp_path)
    svc = ReviewService(manifest, None, settings)
    assert svc.decisions_path == default_decisions_path(manifest, "all") == tmp_path / "review_decisions" / "all.jsonl"
    st = svc.state()
    assert st["progress"]["total"] == 5 and st["progress"]["auto_removed"] == 1
    assert st["progress"]["removed_in_manifest"] == 1 and st["progress"]["max_deletions"] == 1
    assert "img-big" not in svc.session.items and "img-gone" not in svc.session.items
    assert st["item"]["id"] == "img-1" and st["item"]["family_name"] == "blur"
    svc.act("accept", "img-1")
    svc.act("delete", "img-2", "not_perceptible")
    svc.act("back", "img-3")
    assert svc.state()["item"]["id"] == "img-2"
    svc.close()  # as if the server was killed here
    svc = ReviewService(manifest, None, settings)
    st = svc.state()
    assert st["item"]["id"] == "img-2" and st["item"]["decision"]["status"] == "rejected"
    assert (st["progress"]["reviewed"], st["progress"]["deleted"]) == (2, 1)
    svc.close()
    auto = [e for e in read_events(svc.decisions_path) if e["event"] == "auto"]
    assert [(e["item_id"], e["rule"], e["by"]) for e in auto] == [("img-big", "box_over_90pct", "auto")]
    # the auto line is written once, not again at every start
    assert load_decisions(svc.decisions_path)["img-big"]["status"] == "rejected"


def test_two_batches_write_separate_files(tmp_path):
    manifest = write_review_manifest(tmp_path, 6, oversized=False)
    a = ReviewService(manifest, None, ReviewSettings(reviewer="alice", batch="1/2", image_root=tmp_path))
    b = ReviewService(manifest, None, ReviewSettings(reviewer="bob", batch="2/2", image_root=tmp_path,
                                                     max_delete_frac=0.4))  # 3 items: 1 deletion allowed
    assert a.decisions_path != b.decisions_path
    assert a.state()["item"]["id"] == "img-1" and b.state()["item"]["id"] == "img-4"
    a.act("accept", "img-1")
    b.act("delete", "img-4", "other")
    a.act("accept", "img-2")
    a.close(), b.close()
    got = load_decisions(tmp_path / "review_decisions")
    assert {k: (v["status"], v["by"]) for k, v in got.items()} == {
        "img-1": ("accepted", "alice"), "img-2": ("accepted", "alice"), "img-4": ("rejected", "bob")}
    # The same file against a smaller manifest whose batch 2/2 has no img-4: refused, naming the line.
    other = write_review_manifest(tmp_path / "other", 2, oversized=False)
    with pytest.raises(ValueError, match="line 1: item 'img-4' is not an item of this batch.*belongs to another"):
        ReviewService(other, b.decisions_path, ReviewSettings(reviewer="x", batch="2/2", image_root=tmp_path / "other"))


def test_service_rejects_bad_settings(tmp_path):
    manifest = write_review_manifest(tmp_path, 2, oversized=False)
    for kw, match in [({"reviewer": "auto"}, "reserved"), ({"reviewer": ""}, "reviewer name"),
                      ({"reviewer": "a", "max_delete_frac": 2.0}, "max_delete_frac"),
                      ({"reviewer": "a", "batch": "a b"}, "batch name")]:
        with pytest.raises(ValueError, match=match):
            ReviewService(manifest, None, ReviewSettings(image_root=tmp_path, **kw))


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 6), frac=st.sampled_from([0.0, 0.2, 0.5, 1.0]),
       actions=st.lists(st.sampled_from(["accept", "delete1", "delete3", "skip", "back"]), max_size=40))
def test_random_sessions_replay_to_the_same_screen(n, frac, actions):
    fams = ["blur", "noise", "darken", "pixelate", "blur", "noise"][:n]
    live = ReviewSession(_items(fams), max_deletions(n, frac))
    log = []
    for a in actions:
        action, reason = (("delete", {"1": "object_mismatch", "3": "other"}[a[-1]]) if a.startswith("delete")
                          else (a, None))
        try:
            live.check(action, live.cursor, reason)
        except ActionRefused:
            continue
        ev = live.make_event(action, live.cursor, reason, "alice")
        live.apply(ev)
        log.append(ev)
        assert live.deleted <= live.max_deletions  # the cap is never passed
        assert (live.cursor is None) == (live.mode == "done")
        if live.mode != "review":  # verification only starts once every item has a decision
            assert len(live.decisions) == n
        if live.mode == "done":
            assert not any(live.awaits_verification(i) for i in live.order)
    replay = ReviewSession(_items(fams), max_deletions(n, frac))
    for ev in log:
        replay.apply(ev)
    assert (replay.mode, replay.cursor, replay.decisions) == (live.mode, live.cursor, live.decisions)


def _counts_from_scratch(s: ReviewSession) -> dict:
    """The progress figures recomputed by walking the whole batch (what every request used to do)."""
    fams: dict[str, dict] = {}
    for item_id in s.order:
        fam = s.items[item_id].family
        row = fams.setdefault(fam, {"total": 0, "reviewed": 0, "deleted": 0, "remaining": 0})
        row["total"] += 1
        st_ = s.status(item_id)
        row["reviewed" if st_ else "remaining"] += 1
        row["deleted"] += st_ == "rejected"
    return {"deleted": sum(s.status(i) == "rejected" for i in s.order),
            "to_verify": sum(s.awaits_verification(i) for i in s.order),
            "reviewed": sum(i in s.decisions for i in s.order), "families": fams,
            "verify_list": [i for i in s.order if i in s.ever_rejected]}


@settings(max_examples=120, deadline=None)
@given(n=st.integers(1, 7), frac=st.sampled_from([0.2, 0.5, 1.0]),
       actions=st.lists(st.sampled_from(["accept", "delete", "skip", "back"]), max_size=50))
def test_incremental_counts_equal_a_full_recount_after_every_event(n, frac, actions):
    """Issue 13: counters and the verify list are updated per event instead of recomputed per request."""
    fams = ["blur", "noise", "darken", "pixelate", "blur", "noise", "darken"][:n]
    s = ReviewSession(_items(fams), max_deletions(n, frac))
    for action in actions:
        reason = "other" if action == "delete" else None
        try:
            s.check(action, s.cursor, reason)
        except ActionRefused:
            continue
        s.apply(s.make_event(action, s.cursor, reason, "alice"))
        want = _counts_from_scratch(s)
        p = s.progress()
        assert (p["deleted"], p["to_verify"], p["reviewed"], s.deleted) == (
            want["deleted"], want["to_verify"], want["reviewed"], want["deleted"])
        assert {r["family"]: {k: r[k] for k in ("total", "reviewed", "deleted", "remaining")}
                for r in p["per_family"]} == want["families"]
        assert s.verify_list == want["verify_list"]
        if s.cursor is not None:
            pool = s.order if s.mode == "review" else s.verify_list
            assert s.position(s.cursor, pool) == pool.index(s.cursor)
            todo = (lambda i: i not in s.decisions) if s.mode == "review" else s.awaits_verification
            i = pool.index(s.cursor)
            assert s.upcoming(2) == [x for x in pool[i + 1:] + pool[:i] if todo(x)][:2]


def test_counts_by_hand_after_a_few_events():
    s = ReviewSession(_items(["blur", "noise", "blur"]), max_deletions=2)
    for action, reason in [("delete", "other"), ("accept", None), ("delete", "object_mismatch")]:
        s.apply(s.make_event(action, s.cursor, reason, "bob"))
    p = s.progress()
    assert (s.mode, p["reviewed"], p["deleted"], p["to_verify"], s.verify_list) == ("verify", 3, 2, 2, ["i0", "i2"])
    assert [(r["family"], r["total"], r["reviewed"], r["deleted"], r["remaining"]) for r in p["per_family"]] == [
        ("blur", 2, 2, 2, 0), ("noise", 1, 1, 0, 0)]
    s.apply(s.make_event("accept", s.cursor, None, "bob"))  # restore i0 in verification
    p = s.progress()
    assert (p["deleted"], p["to_verify"], s.verify_list, s.cursor) == (1, 1, ["i0", "i2"], "i2")
    assert [(r["family"], r["deleted"]) for r in p["per_family"]] == [("blur", 1), ("noise", 0)]
