"""Refine-Perception assembly: seeds, QC, distortion draws, sharding, review, stratified split."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from refine_iqa import distortions
from refine_iqa.data import assemble as asm
from refine_iqa.data.scenes import generate_scene
from refine_iqa.io_utils import load_rgb, read_jsonl, save_image, write_jsonl

S = asm.SynthesisSettings


# ---------------------------------------------------------------------------------------------- helpers


def _curated(root: Path, n: int = 5, size: int = 64) -> list[dict]:
    """n real procedural scenes saved under root/src, plus one extra full-image box on the first source."""
    recs = []
    for i in range(n):
        img, objs = generate_scene(100 + i, size, size)
        rel = f"src/scene-{i:03d}.png"
        save_image(root / rel, img)
        recs.append({"source_id": f"scene-{i:03d}", "source": "scenes", "path": rel, "width": size,
                     "height": size, "phash": "0" * 16, "objects": objs, "quality": {"piqe": 20.0 + i}})
    recs[0]["objects"].append({"name": "whole frame", "box": [0, 0, size, size]})
    return recs


def _rec(i, typ, status="pending", by=None, rule=None, family=None):
    return {"id": f"x-{i:04d}", "type": typ, "family": family or typ.split(".")[0],
            "review": {"status": status, "reason": None, "by": by, "rule": rule}, "split": None}


# ---------------------------------------------------------------------------------------------- seeds


def test_stable_seed_is_pinned_and_separates_parts():
    # sha256("0\x1fscene-000000-o0")[:4] as a big-endian integer, worked out once with hashlib.
    assert asm.stable_seed(0, "scene-000000-o0") == 3168199901
    assert asm.stable_seed(0, "a") != asm.stable_seed(1, "a")
    assert asm.stable_seed("0a") != asm.stable_seed(0, "a")  # the separator keeps parts apart
    assert 0 <= asm.stable_seed("anything") < 2**32


# ---------------------------------------------------------------------------------------------- settings and input


@pytest.mark.parametrize("kw, field", [
    ({"sample_by": "level"}, "sample_by"), ({"review_mode": "maybe"}, "review_mode"),
    ({"level_weights": (1, 1, 1)}, "level_weights"), ({"level_weights": (0, 0, 0, 0, 0)}, "level_weights"),
    ({"level_weights": (1, -1, 1, 1, 1)}, "level_weights"), ({"max_boxes_per_image": 0}, "max_boxes_per_image"),
    ({"max_box_area_frac": 1.5}, "max_box_area_frac"), ({"min_box_side": 0}, "min_box_side"),
    ({"test_size": 1.0}, "test_size"), ({"test_size": -3}, "test_size"), ({"test_size": True}, "test_size"),
])
def test_settings_reject_bad_values_by_name(kw, field):
    with pytest.raises(ValueError, match=f"synthesis.{field}"):
        S(**kw)


def test_rule_name_follows_threshold():
    assert S().rule_too_large == "box_over_90pct"
    assert S(max_box_area_frac=0.75).rule_too_large == "box_over_75pct"


@pytest.mark.parametrize("mutate, msg", [
    (lambda r: r.pop("width"), "missing field 'width'"),
    (lambda r: r.update(source_id="a/b"), "source_id"),
    (lambda r: r["objects"][0].update(box=[0, 0, 10.5, 10]), r"objects\[0\].box must be 4 integers"),
    (lambda r: r["objects"][0].update(box=[10, 0, 10, 5]), "empty or outside"),
    (lambda r: r["objects"][0].update(box=[0, 0, 65, 5]), "outside the 64x64 image"),
    (lambda r: r["objects"][0].update(name=" "), "non-empty string 'name'"),
])
def test_validate_curated_record_names_place_and_field(mutate, msg):
    rec = {"source_id": "s1", "source": "scenes", "path": "x.png", "width": 64, "height": 64,
           "objects": [{"name": "red circle", "box": [0, 0, 10, 10]}]}
    asm.validate_curated_record(rec, "here")  # valid as built
    mutate(rec)
    with pytest.raises(ValueError, match=msg) as e:
        asm.validate_curated_record(rec, "curated.jsonl: line 7")
    assert "curated.jsonl: line 7" in str(e.value)


def test_read_curated_reports_line_numbers(tmp_path):
    good = {"source_id": "s1", "source": "scenes", "path": "x.png", "width": 8, "height": 8, "objects": []}
    p = tmp_path / "curated.jsonl"
    p.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "width": 0}) + "\n")
    with pytest.raises(ValueError, match=r"curated.jsonl: line 3: width/height"):
        asm.read_curated(p)
    p.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(ValueError, match="line 2: source_id 's1' repeats line 1"):
        asm.read_curated(p)


# ---------------------------------------------------------------------------------------------- QC and draws


@pytest.mark.parametrize("box, status, rule", [
    ([0, 0, 95, 95], "rejected", "box_over_90pct"),  # 9025 / 10000 = 90.25% > 90%
    ([0, 0, 90, 100], "pending", None),  # exactly 90%: kept (the rule is "exceeding")
    ([0, 0, 5, 50], "rejected", "box_too_small"),  # shorter side 5 < 8
    ([0, 0, 8, 8], "pending", None),  # 64 / 10000 = 0.64% >= 0.2%
    ([0, 0, 100, 100], "rejected", "box_over_90pct"),
])
def test_qc_rules_on_hand_worked_boxes(box, status, rule):
    rev = asm.qc_review(box, 100, 100, S())
    assert (rev["status"], rev["rule"]) == (status, rule)
    assert rev["by"] == ("auto" if status == "rejected" else None)


def test_qc_area_floor_and_auto_mode():
    assert asm.qc_review([0, 0, 8, 8], 100, 100, S(min_box_area_frac=0.01))["rule"] == "box_too_small"
    assert asm.qc_review([0, 0, 10, 10], 100, 100, S(min_box_area_frac=0.01))["status"] == "pending"
    assert asm.qc_review([0, 0, 50, 50], 100, 100, S(review_mode="auto")) == {
        "status": "accepted", "reason": None, "by": "auto", "rule": None}
    # QC still rejects in auto mode
    assert asm.qc_review([0, 0, 99, 99], 100, 100, S(review_mode="auto"))["status"] == "rejected"


def test_object_cap_is_seeded_subset():
    rec = {"source_id": "s1", "objects": [{"name": str(i), "box": [0, 0, 1, 1]} for i in range(6)]}
    assert asm.chosen_objects(rec, S()) == list(range(6))
    a = asm.chosen_objects(rec, S(max_boxes_per_image=2, seed=3))
    assert a == asm.chosen_objects(rec, S(max_boxes_per_image=2, seed=3))
    assert len(a) == 2 and a == sorted(a) and set(a) <= set(range(6))
    picks = {tuple(asm.chosen_objects(rec, S(max_boxes_per_image=2, seed=s))) for s in range(30)}
    assert len(picks) > 5  # not always the first objects


def test_draws_follow_sample_by_and_level_weights():
    pool = asm._DistortionPool()
    n_types, n_fam = len(distortions.names()), len(distortions.FAMILIES)
    assert (n_types, n_fam) == (35, 12)
    n = 7000
    by_type = Counter(pool.draw(s, S())[0] for s in range(n))
    assert len(by_type) == n_types
    # Uniform over types: each count ~ Binomial(n, 1/35) (mean 200, sd 14); 5 sd bounds.
    assert all(abs(c - n / n_types) < 5 * np.sqrt(n / n_types) for c in by_type.values())
    by_fam = Counter(pool.family_of[pool.draw(s, S(sample_by="family"))[0]] for s in range(n))
    assert len(by_fam) == n_fam
    assert all(abs(c - n / n_fam) < 5 * np.sqrt(n / n_fam) for c in by_fam.values())
    levels = Counter(pool.draw(s, S())[1] for s in range(5000))
    assert set(levels) == {1, 2, 3, 4, 5} and all(abs(c - 1000) < 150 for c in levels.values())
    assert {pool.draw(s, S(level_weights=(0, 0, 1, 0, 0)))[1] for s in range(200)} == {3}
    assert {pool.draw(s, S(level_weights=(1, 0, 0, 0, 1)))[1] for s in range(200)} == {1, 5}


def test_draws_keep_to_the_listed_families():
    """synthesis.families: only the listed families' types are drawn, uniform over their types (darken and
    brighten hold 4 types each: 8 types, 1/8 each) or over the families; the full catalogue is unchanged."""
    pool = asm._DistortionPool()
    pair = ("darken", "brighten")
    by_type = Counter(pool.draw(s, S(families=pair))[0] for s in range(4000))
    assert {pool.family_of[t] for t in by_type} == set(pair) and len(by_type) == 8
    assert all(abs(c - 500) < 5 * np.sqrt(500) for c in by_type.values())
    by_fam = Counter(pool.family_of[pool.draw(s, S(families=("blur", "pixelate"), sample_by="family"))[0]]
                     for s in range(2000))
    assert set(by_fam) == {"blur", "pixelate"} and abs(by_fam["pixelate"] - 1000) < 5 * np.sqrt(500)
    # the order of the list does not matter; null keeps the paper's draw
    assert [pool.draw(s, S(families=pair)) for s in range(50)] == \
        [pool.draw(s, S(families=pair[::-1])) for s in range(50)]
    assert [pool.draw(s, S(families=None)) for s in range(50)] == [pool.draw(s, S()) for s in range(50)]


@pytest.mark.parametrize("families", [(), ("darken", "sepia"), ("blur", "blur")])
def test_families_setting_names_the_catalogue(families):
    with pytest.raises(ValueError, match=r"synthesis.families .*'blur', 'brighten'"):
        S(families=families)


# ---------------------------------------------------------------------------------------------- synthesis


def _run(root: Path, curated, num_shards: int, settings: S) -> list[dict]:
    out = Path("synth")  # relative, resolved in the working directory (monkeypatched per run)
    paths = [asm.synthesize_shard(curated, out, i, num_shards, settings, source_root=root)
             for i in reversed(range(num_shards))]  # order of execution must not matter
    asm.merge_manifests(paths, out / "manifest.jsonl", settings)
    return read_jsonl(out / "manifest.jsonl")


def test_one_shard_and_three_shards_are_byte_identical(tmp_path, monkeypatch):
    curated = _curated(tmp_path, n=5)
    settings = S(seed=11, test_size=0.3)
    runs = {}
    for name, shards in (("one", 1), ("three", 3)):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        _run(tmp_path, curated, shards, settings)
        runs[name] = tmp_path / name / "synth"
    a, b = runs["one"], runs["three"]
    assert (a / "manifest.jsonl").read_bytes() == (b / "manifest.jsonl").read_bytes()
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    n_items = sum(len(r["objects"]) for r in curated)
    assert len(files_a) == n_items + len(curated)  # one dist per object, one ref per source
    for rel in files_a:
        assert np.array_equal(load_rgb(a / rel), load_rgb(b / rel)), rel
    assert len(list((b / "shards").glob("*.jsonl"))) == 3


def test_manifest_records_and_box_only_distortion(tmp_path, monkeypatch):
    curated = _curated(tmp_path, n=4)
    monkeypatch.chdir(tmp_path)
    recs = _run(tmp_path, curated, 2, S(seed=5, test_size=2))
    assert [r["id"] for r in recs] == sorted(r["id"] for r in recs)
    by_src = {c["source_id"]: c for c in curated}
    for r in recs:
        assert tuple(r) == asm.MANIFEST_FIELDS
        src = by_src[r["source_id"]]
        k = int(r["id"].rsplit("-o", 1)[1])
        assert r["object"] == src["objects"][k]["name"] and r["box"] == src["objects"][k]["box"]
        assert r["objects"] == [o["name"] for o in src["objects"]]
        assert r["ref_path"] == f"synth/ref/{r['source_id']}.png" and r["dist_path"] == f"synth/dist/{r['id']}.png"
        assert r["family"] == next(s.family for s in distortions.catalog() if s.name == r["type"])
        assert r["params"] == json.loads(json.dumps(distortions.params_for(r["type"], r["level"])))
        assert r["seed"] == asm.stable_seed(5, r["id"]) and 1 <= r["level"] <= 5
        assert r["quality"] == src["quality"] and (r["width"], r["height"]) == (64, 64)
        ref, dist = load_rgb(r["ref_path"]), load_rgb(r["dist_path"])
        x1, y1, x2, y2 = r["box"]
        outside = np.ones(ref.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(ref[outside], dist[outside]), r["id"]
        # The record alone reproduces the distorted image.
        again = distortions.apply(ref, r["type"], r["level"], seed=r["seed"], box=r["box"])
        assert np.array_equal(again, dist)
    whole = next(r for r in recs if r["object"] == "whole frame")
    assert whole["review"] == {"status": "rejected", "reason": whole["review"]["reason"], "by": "auto",
                               "rule": "box_over_90pct"} and whole["split"] is None
    assert Counter(r["split"] for r in recs if r is not whole) == {"train": len(recs) - 3, "test": 2}
    assert all(r["review"]["status"] == "pending" for r in recs if r is not whole)


def test_object_cap_limits_copies(tmp_path, monkeypatch):
    curated = _curated(tmp_path, n=3)
    monkeypatch.chdir(tmp_path)
    recs = _run(tmp_path, curated, 1, S(max_boxes_per_image=1, test_size=0))
    assert Counter(r["source_id"] for r in recs) == {c["source_id"]: 1 for c in curated}


def test_synthesis_errors_are_clear(tmp_path):
    curated = _curated(tmp_path, n=2)
    with pytest.raises(ValueError, match="shard_index"):
        asm.synthesize_shard(curated, tmp_path / "o", 3, 3, S(), source_root=tmp_path)
    with pytest.raises(ValueError, match="not unique"):
        asm.synthesize_shard(curated + curated[:1], tmp_path / "o", 0, 1, S(), source_root=tmp_path)
    bad = [dict(curated[0], width=70)]
    with pytest.raises(ValueError, match="image is 64x64 but curated record 'scene-000' says 70x64"):
        asm.synthesize_shard(bad, tmp_path / "o", 0, 1, S(), source_root=tmp_path)


def test_merge_rejects_duplicates_and_incomplete_sets(tmp_path):
    rec = {f: None for f in asm.MANIFEST_FIELDS} | {"id": "a-o0", "type": "blur.gaussian",
                                                     "review": {"status": "pending"}}
    write_jsonl(tmp_path / "x.jsonl", [rec])
    write_jsonl(tmp_path / "y.jsonl", [rec])
    with pytest.raises(ValueError, match="'a-o0' appears in both"):
        asm.merge_manifests([tmp_path / "x.jsonl", tmp_path / "y.jsonl"], tmp_path / "m.jsonl", S(test_size=0))
    write_jsonl(tmp_path / "shard-000-of-003.jsonl", [])
    write_jsonl(tmp_path / "shard-002-of-003.jsonl", [])
    with pytest.raises(ValueError, match="not one complete set"):
        asm.merge_manifests([tmp_path / "shard-000-of-003.jsonl", tmp_path / "shard-002-of-003.jsonl"],
                            tmp_path / "m.jsonl", S(test_size=0))
    write_jsonl(tmp_path / "z.jsonl", [{"id": "b"}])
    with pytest.raises(ValueError, match=r"z.jsonl: record 'b' lacks fields"):
        asm.merge_manifests([tmp_path / "z.jsonl"], tmp_path / "m.jsonl", S(test_size=0))
    assert not (tmp_path / "m.jsonl").exists()


# ---------------------------------------------------------------------------------------------- split


def test_split_apportionment_worked_by_hand():
    # A:5, B:3, C:2, N=10, T=4 -> quotas 2.0, 1.2, 0.8 -> floors 2, 1, 0, one left for the largest
    # remainder (C: 0.8) -> A 2, B 1, C 1.
    recs = [_rec(i, t) for i, t in enumerate("AAAAABBBCC")]
    out = asm.build_split(recs, 4, seed=0)
    test = Counter(r["type"] for r in out if r["split"] == "test")
    assert test == {"A": 2, "B": 1, "C": 1}
    assert all(r["split"] is None for r in recs)  # inputs untouched


def test_split_is_stratified_deterministic_and_skips_rejected():
    rng = random.Random(0)
    types = [f"fam{t % 12}.t{t}" for t in range(35)]
    recs = []
    for i in range(3000):
        status = "rejected" if i % 17 == 0 else rng.choice(["pending", "accepted"])
        recs.append(_rec(i, rng.choice(types), status=status, by="auto" if status == "rejected" else None))
    out = asm.build_split(recs, 600, seed=7)
    assert all(r["split"] is None for r in out if r["review"]["status"] == "rejected")
    kept = [r for r in out if r["review"]["status"] != "rejected"]
    train = Counter(r["type"] for r in kept if r["split"] == "train")
    test = Counter(r["type"] for r in kept if r["split"] == "test")
    n_test, n_train = sum(test.values()), sum(train.values())
    assert n_test == 600 and n_train == len(kept) - 600
    bound = 1 / n_test + 1 / n_train
    for t in types:
        assert abs(test[t] / n_test - train[t] / n_train) < bound, t
    for level in ("family",):  # families nest types, so they are balanced too
        ftr = Counter(r[level] for r in kept if r["split"] == "train")
        fte = Counter(r[level] for r in kept if r["split"] == "test")
        assert all(abs(fte[f] / n_test - ftr[f] / n_train) < 0.01 for f in ftr)
    # Deterministic, independent of input order, and seed-dependent.
    shuffled = recs[:]
    rng.shuffle(shuffled)
    again = {r["id"]: r["split"] for r in asm.build_split(shuffled, 600, seed=7)}
    assert again == {r["id"]: r["split"] for r in out}
    other = {r["id"]: r["split"] for r in asm.build_split(recs, 600, seed=8)}
    assert other != again


def test_split_fraction_pending_and_limits():
    recs = [_rec(i, "A", status="accepted" if i < 4 else "pending") for i in range(10)]
    assert sum(r["split"] == "test" for r in asm.build_split(recs, 0.25, 0)) == 3  # round(2.5) half-up
    only_acc = asm.build_split(recs, 1, 0, include_pending=False)
    assert [r["split"] for r in only_acc[4:]] == [None] * 6
    assert Counter(r["split"] for r in only_acc[:4]) == {"train": 3, "test": 1}
    with pytest.raises(ValueError, match="asks for 11 test items but only 10"):
        asm.build_split(recs, 11, 0)
    assert all(r["split"] == "train" for r in asm.build_split(recs, 0, 0))
    assert asm.build_split([], 0, 0) == []


# ---------------------------------------------------------------------------------------------- review


def test_review_decisions_update_copies_and_name_unknown_ids():
    recs = [_rec(i, "A") for i in range(3)]
    out = asm.apply_review_decisions(recs, {"x-0001": {"status": "rejected", "reason": "no blur seen",
                                                       "by": "ann"}, "x-0002": {"status": "accepted"}})
    assert out[1]["review"] == {"status": "rejected", "reason": "no blur seen", "by": "ann", "rule": None}
    assert out[2]["review"]["status"] == "accepted" and out[2]["review"]["by"] == "reviewer"
    assert out[0]["review"]["status"] == "pending" and recs[1]["review"]["status"] == "pending"
    with pytest.raises(ValueError, match="2 item id\\(s\\) not in the manifest: nope-1, nope-2"):
        asm.apply_review_decisions(recs, {"nope-2": {"status": "accepted"}, "nope-1": {"status": "accepted"}})
    with pytest.raises(ValueError, match="'x-0000': status must be"):
        asm.apply_review_decisions(recs, {"x-0000": {"status": "maybe"}})


def test_summarise_qc_counts():
    recs = [_rec(0, "A", "rejected", "auto", "box_over_90pct"), _rec(1, "A", "rejected", "auto", "box_over_90pct"),
            _rec(2, "A", "rejected", "auto", "box_too_small"), _rec(3, "A", "rejected", "ann"),
            _rec(4, "A", "accepted", "auto"), _rec(5, "A"), _rec(6, "A")]
    assert asm.summarise_qc(recs) == {
        "total": 7, "pending": 2, "accepted": 1, "rejected": 4, "kept": 3,
        "removed_by_rule": {"box_over_90pct": 2, "box_too_small": 1}, "removed_by_review": 1}
    assert asm.summarise_qc([])["removed_by_rule"] == {"box_over_90pct": 0, "box_too_small": 0}
    with pytest.raises(ValueError, match="review.status 'odd'"):
        asm.summarise_qc([_rec(0, "A", "odd")])


# ---------------------------------------------------------------------------------------------- scale (issue 13)


def test_killed_shard_resumes_without_rerendering(tmp_path, monkeypatch):
    curated = _curated(tmp_path, n=5)
    monkeypatch.chdir(tmp_path)
    settings = S(seed=3, test_size=0)
    clean = read_jsonl(asm.synthesize_shard(curated, tmp_path / "clean", 0, 1, settings, source_root=tmp_path))
    for r in clean:
        r["ref_path"], r["dist_path"] = (r[f].replace("/clean/", "/synth/") for f in ("ref_path", "dist_path"))

    real = asm._synthesize_source
    calls = []

    def dies_on_third(rec, *a, **k):
        calls.append(rec["source_id"])
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(rec, *a, **k)

    monkeypatch.setattr(asm, "_synthesize_source", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        asm.synthesize_shard(curated, tmp_path / "synth", 0, 1, settings, source_root=tmp_path)
    calls.clear()
    monkeypatch.setattr(asm, "_synthesize_source", lambda rec, *a, **k: calls.append(rec["source_id"]) or real(rec, *a, **k))
    path = asm.synthesize_shard(curated, tmp_path / "synth", 0, 1, settings, source_root=tmp_path)
    assert calls == ["scene-002", "scene-003", "scene-004"]  # the two finished sources are not rendered again
    assert read_jsonl(path) == clean
    assert not path.with_suffix(".partial.jsonl").exists()

    # A kill, then a re-run with other settings: nothing of the killed run is reused.
    monkeypatch.setattr(asm, "_synthesize_source", dies_on_third)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        asm.synthesize_shard(curated, tmp_path / "synth", 0, 1, settings, source_root=tmp_path)
    calls.clear()
    monkeypatch.setattr(asm, "_synthesize_source", lambda rec, *a, **k: calls.append(rec["source_id"]) or real(rec, *a, **k))
    asm.synthesize_shard(curated, tmp_path / "synth", 0, 1, S(seed=4, test_size=0), source_root=tmp_path)
    assert len(calls) == 5


def test_reference_links_usable_files_and_reencodes_the_rest(tmp_path):
    from PIL import Image

    img, objs = generate_scene(7, 64, 48)
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=80)
    rotated = Image.fromarray(img.transpose(1, 0, 2))  # stored sideways, EXIF says rotate
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "b.jpg", exif=exif)
    Image.fromarray(img).save(tmp_path / "c.bmp")
    recs = [{"source_id": s, "source": "folder", "path": str(tmp_path / f), "width": 64, "height": 48,
             "objects": objs} for s, f in (("a", "a.jpg"), ("b", "b.jpg"), ("c", "c.bmp"))]
    asm.synthesize_shard(recs, tmp_path / "synth", 0, 1, S(test_size=0))
    ref = tmp_path / "synth" / "ref"
    assert sorted(p.name for p in ref.iterdir()) == ["a.jpg", "b.png", "c.png"]
    assert (ref / "a.jpg").read_bytes() == (tmp_path / "a.jpg").read_bytes()  # the original JPEG bytes
    assert (ref / "a.jpg").stat().st_ino == (tmp_path / "a.jpg").stat().st_ino  # a hard link, no copy
    for name, src in (("a.jpg", "a.jpg"), ("b.png", "b.jpg"), ("c.png", "c.bmp")):
        assert np.array_equal(load_rgb(ref / name), load_rgb(tmp_path / src)), name
    with Image.open(tmp_path / "synth" / "dist" / "a-o0.png") as im:
        assert im.format == "PNG"


def test_reference_is_copied_when_links_fail(tmp_path, monkeypatch):
    import os

    img, objs = generate_scene(8, 64, 48)
    save_image(tmp_path / "a.png", img)

    def no_links(*a):
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    asm.synthesize_shard([{"source_id": "a", "source": "folder", "path": str(tmp_path / "a.png"), "width": 64,
                           "height": 48, "objects": objs}], tmp_path / "synth", 0, 1, S(test_size=0))
    ref = tmp_path / "synth" / "ref" / "a.png"
    assert ref.read_bytes() == (tmp_path / "a.png").read_bytes()
    assert ref.stat().st_ino != (tmp_path / "a.png").stat().st_ino
