"""Curation: pHash and dedup by hand, bad files quarantined, resume without rework, shards merge exactly, CLI."""

import argparse
import dataclasses
import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from refine_iqa.data import curate as curate_mod
from refine_iqa.data.curate import CurateSettings, curate, merge_curated, register_cli, stable_shard
from refine_iqa.data.objects import AnnotationObjects
from refine_iqa.data.phash import DuplicateClusters, _NearIndex, dedup, from_hex, hamming, phash, to_hex
from refine_iqa.data.quality import QualityFilter, QualityMetricSpec
from refine_iqa.data.scenes import generate_scene, write_scene_dataset
from refine_iqa.data.sources import iter_coco, iter_folder
from refine_iqa.io_utils import load_rgb, read_json, read_jsonl, save_image

# ------------------------------------------------------------------------------------------------ pHash


def _grey_with_dct(coeffs8x8, offset=0.0):
    """A 32x32 grey image whose orthonormal DCT has `coeffs8x8` in the low corner (plus `offset` everywhere)."""
    from scipy.fft import idctn

    full = np.zeros((32, 32))
    full[:8, :8] = coeffs8x8
    return idctn(full, type=2, norm="ortho") + offset


def test_phash_of_a_flat_image_is_only_the_dc_bit():
    assert phash(np.full((32, 32), 90.0)) == 1 << 63
    assert to_hex(phash(np.full((50, 70, 3), 200, np.uint8))) == "8000000000000000"


def test_phash_bits_by_hand():
    # Coefficient (u, v) = 8u + v - 31.5: row-major they rise from -31.5 to 31.5. The offset of 128 makes the
    # DC 128 * 32 - 31.5. Sorted, the 32nd and 33rd values are 0.5 and 1.5: median 1.0. Bits above it: the
    # DC (most significant bit) and coefficients 33..63 (the 31 least significant bits).
    c = (np.arange(64, dtype=float) - 31.5).reshape(8, 8)
    h = phash(_grey_with_dct(c, offset=128.0))
    assert h == (1 << 63) | ((1 << 31) - 1)
    assert to_hex(h) == "800000007fffffff"
    # Transposing the coefficients must change the hash (bits are read row by row).
    assert phash(_grey_with_dct(c.T, offset=128.0)) != h


def test_phash_resizes_by_area_average():
    img = _grey_with_dct((np.arange(64) - 31.5).reshape(8, 8), offset=128.0)
    big = np.kron(img, np.ones((3, 3)))  # 96x96, each pixel 3x3: the 32x32 box average gives img back
    assert phash(big) == phash(img)


def test_phash_of_a_large_image_uses_a_small_copy_with_the_same_hash():
    """Issue 13: a 12 MP hash used a 384 MB float64 copy. Now a box-reduced uint8 copy: the same hash whenever
    the reduction is exact (uniform blocks), and little memory."""
    import tracemalloc

    grey = np.clip(_grey_with_dct((np.arange(64) - 31.5).reshape(8, 8), offset=128.0), 0, 255).round().astype(np.uint8)
    small = np.repeat(grey[..., None], 3, axis=2)
    big = np.kron(small, np.ones((96, 125, 1), np.uint8))  # 3072 x 4000, every pixel of `small` a 96x125 block
    assert phash(big) == phash(small)
    tracemalloc.start()
    phash(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB traced for one 12 MP hash"


def test_hamming_and_hex():
    assert hamming(0b1011, 0b0001) == 2
    assert hamming("ff", "0f") == 4
    assert hamming(0, (1 << 64) - 1) == 64
    assert from_hex("800000007fffffff") == (1 << 63) | ((1 << 31) - 1)
    for bad in ["xyz", "1" * 17]:
        with pytest.raises(ValueError, match="phash"):
            from_hex(bad)


def test_phash_collides_for_compressed_and_resized_copies_only():
    hashes = []
    for seed in range(20):
        img, _ = generate_scene(seed, 224, 224)
        h = phash(img)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=70)
        jpeg = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        small = np.asarray(Image.fromarray(img).resize((150, 150), Image.Resampling.BICUBIC))
        assert hamming(h, phash(jpeg)) <= 4 and hamming(h, phash(small)) <= 4
        hashes.append(h)
    assert min(hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]) > 4


# ------------------------------------------------------------------------------------------------ dedup


def test_dedup_chains_form_one_cluster_and_keep_the_first():
    a, b, c, d = 0, 0b111, 0b111111, 0xFF00FF00FF00FF00  # a-b 3 bits, b-c 3 bits, a-c 6 bits
    kept, dropped = dedup([("A", a), ("B", b), ("C", c), ("D", d)], max_distance=3)
    assert kept == ["A", "D"] and dropped == {"B": "A", "C": "A"}
    kept, dropped = dedup([("C", c), ("B", b), ("A", a)], max_distance=3)
    assert kept == ["C"] and dropped == {"B": "C", "A": "C"}
    assert dedup([("A", a), ("B", b)], max_distance=2) == (["A", "B"], {})
    assert dedup([("A", a), ("B", a), ("C", 1)], max_distance=0) == (["A", "C"], {"B": "A"})


def test_a_later_item_can_join_two_clusters():
    clusters = DuplicateClusters(3)
    assert clusters.add("A", 0) is None
    assert clusters.add("B", 0b111111) is None  # 6 bits from A: its own cluster so far
    assert clusters.add("C", 0b111) == "A"  # 3 bits from both: links them
    assert clusters.firsts() == ["A"] and clusters.representative("B") == "A"
    with pytest.raises(ValueError, match="twice"):
        clusters.add("A", 5)


@pytest.mark.parametrize("max_distance", [0, 1, 4, 9, 15, 20])
def test_chunk_index_finds_exactly_the_brute_force_neighbours(max_distance):
    rng = np.random.default_rng(max_distance)
    centres = [int(x) for x in rng.integers(0, 2**63, size=20, dtype=np.int64)]
    hashes = []
    for _ in range(300):
        h = centres[int(rng.integers(20))]
        for bit in rng.choice(64, size=int(rng.integers(0, 12)), replace=False):
            h ^= 1 << int(bit)
        hashes.append(h)
    index = _NearIndex(max_distance)
    for h in hashes:
        expected = [i for i, g in enumerate(index.hashes) if (g ^ h).bit_count() <= max_distance]
        assert index.near(h) == expected
        index.add(h)


def test_dedup_distance_is_checked():
    with pytest.raises(ValueError, match="between 0 and 64"):
        DuplicateClusters(-1)


# ------------------------------------------------------------------------------------------------ a messy folder


def _bomb_png(path, side=100_000):
    """A valid PNG header claiming side x side pixels, with a few bytes of data: must never be decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture
def messy(tmp_path):
    """Good scenes, a near duplicate, every kind of bad file, and the true objects of each good image."""
    src = tmp_path / "src"
    src.mkdir()
    truth = {}
    for k in range(3):
        img, objs = generate_scene(k)
        save_image(src / f"scene{k}.png", img)
        truth[f"scene{k}.png"] = objs
    img0, objs0 = generate_scene(0)
    Image.fromarray(img0).save(src / "scene0_copy.jpg", quality=80)  # near duplicate of scene0.png
    truth["scene0_copy.jpg"] = objs0
    img3, objs3 = generate_scene(3)
    Image.fromarray(img3).convert("CMYK").save(src / "cmyk.jpg", quality=95)  # converted, not rejected
    truth["cmyk.jpg"] = objs3
    img4, objs4 = generate_scene(4)
    grey16 = (img4.astype(np.uint32).sum(-1) * 85).astype(np.uint16)  # 16-bit grey, full range
    (src / "sub").mkdir()
    Image.fromarray(grey16).save(src / "sub" / "grey16.png")
    truth["sub/grey16.png"] = objs4
    img5, objs5 = generate_scene(5)
    noisy = np.clip(img5 + np.random.default_rng(0).normal(0, 40, img5.shape), 0, 255).astype(np.uint8)
    save_image(src / "noisy.png", noisy)  # fails the quality filter
    truth["noisy.png"] = objs5
    img6, objs6 = generate_scene(6)
    save_image(src / "lonely.png", img6)  # one object only: fails the object rules
    truth["lonely.png"] = objs6[:1]
    _bomb_png(src / "bomb.png")
    buf = io.BytesIO()
    Image.fromarray(generate_scene(7)[0]).save(buf, "JPEG")
    (src / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("this is not a picture\n")
    save_image(src / "tiny.png", np.zeros((10, 10, 3), np.uint8))
    return src, truth


def _items(src, truth):
    out = []
    for item in iter_folder(src):
        rel = item.path[len(str(src)) + 1:]
        out.append(dataclasses.replace(item, objects=truth.get(rel)))
    return out


SETTINGS = dict(quality=[QualityMetricSpec("piqe", 60)], show_progress=False)


class Counting:
    """Wrap a callable and count its calls; optionally fail on the n-th call."""

    def __init__(self, fn, fail_on=None, exc=KeyboardInterrupt):
        self.fn, self.calls, self.fail_on, self.exc = fn, 0, fail_on, exc

    def __call__(self, *a, **k):
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise self.exc("stopped on purpose")
        return self.fn(*a, **k)


def _tsv(path):
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_curate_quarantines_bad_files_and_keeps_good_ones(messy, tmp_path):
    src, truth = messy
    out = tmp_path / "out"
    s = curate(_items(src, truth), out, settings=CurateSettings(**SETTINGS))
    quarantine = {row[0][len(str(src)) + 1:]: row[1] for row in _tsv(out / "quarantine.tsv")}
    assert quarantine == {"bomb.png": "too_large", "truncated.jpg": "truncated", "empty.jpg": "empty",
                          "text.jpg": "not_an_image", "tiny.png": "too_small"}
    assert all(len(row) == 3 for row in _tsv(out / "quarantine.tsv"))
    records = read_jsonl(out / "curated.jsonl")
    assert [r["source_id"] for r in records] == sorted(
        ["folder-cmyk.jpg", "folder-scene0.png", "folder-scene1.png", "folder-scene2.png",
         f"folder-sub__grey16.png-{hashlib.sha1(b'sub/grey16.png').hexdigest()[:8]}"])
    by_id = {r["source_id"]: r for r in records}
    r0 = by_id["folder-scene0.png"]
    assert r0["source"] == "folder" and r0["path"] == str(src / "scene0.png")
    assert (r0["width"], r0["height"]) == (112, 112)
    by_name = sorted(truth["scene0.png"], key=lambda o: o["name"])
    assert sorted(r0["objects"], key=lambda o: o["name"]) == by_name
    assert r0["phash"] == to_hex(phash(generate_scene(0)[0])) and set(r0["quality"]) == {"piqe"}
    assert r0["quality"]["piqe"] < 60
    rejected = {row[0]: row[2:] for row in _tsv(out / "rejected.tsv")}
    assert rejected["folder-scene0_copy.jpg"] == ["duplicate", "of folder-scene0.png"]
    assert rejected["folder-noisy.png"][0] == "quality" and rejected["folder-noisy.png"][1].startswith("piqe=")
    assert rejected["folder-lonely.png"][0] == "too_few_objects"
    assert (s.total, s.kept, s.quarantined, s.duplicates, s.rejected_quality, s.rejected_objects) == (13, 5, 5, 1, 1, 1)
    assert read_json(out / "summary.json")["kept"] == 5
    assert len(read_jsonl(out / "phashes.jsonl")) == 8  # every readable image

    from refine_iqa.data.assemble import read_curated  # the next stage accepts this file as it is

    assert len(read_curated(out / "curated.jsonl")) == 5


def test_rerun_does_no_work_and_rewrites_the_same_files(messy, tmp_path, monkeypatch):
    src, truth = messy
    out = tmp_path / "out"
    curate(_items(src, truth), out, settings=CurateSettings(**SETTINGS))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".jsonl", ".tsv")}
    loads = Counting(curate_mod.load_rgb)
    monkeypatch.setattr(curate_mod, "load_rgb", loads)
    quality = Counting(QualityFilter(SETTINGS["quality"]))
    objects = Counting(AnnotationObjects())
    s = curate(_items(src, truth), out, settings=CurateSettings(**SETTINGS), quality_filter=quality,
               object_backend=objects)
    assert (loads.calls, quality.calls, objects.calls) == (0, 0, 0)
    assert (s.processed, s.resumed, s.kept) == (0, 13, 5)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".jsonl", ".tsv")} == before


def test_an_interrupted_run_resumes_where_it_stopped(messy, tmp_path, monkeypatch):
    src, truth = messy
    out = tmp_path / "out"
    objects = Counting(AnnotationObjects(), fail_on=3)
    with pytest.raises(KeyboardInterrupt):
        curate(_items(src, truth), out, settings=CurateSettings(**SETTINGS), object_backend=objects)
    done = {e["source_id"] for e in read_jsonl(out / "progress.jsonl")}
    assert 0 < len(done) < 13 and not (out / "curated.jsonl").exists()

    loads = Counting(curate_mod.load_rgb)
    monkeypatch.setattr(curate_mod, "load_rgb", loads)
    s = curate(_items(src, truth), out, settings=CurateSettings(**SETTINGS))
    assert s.resumed == len(done) and s.processed == 13 - len(done) and loads.calls == 13 - len(done)
    fresh = tmp_path / "fresh"
    monkeypatch.undo()
    curate(_items(src, truth), fresh, settings=CurateSettings(**SETTINGS))
    for name in ("curated.jsonl", "quarantine.tsv", "rejected.tsv", "phashes.jsonl"):
        a, b = (out / name).read_text(), (fresh / name).read_text()
        assert a == b, name


def test_a_changed_file_or_changed_settings_is_redone(messy, tmp_path):
    src, truth = messy
    out = tmp_path / "out"
    curate(_items(src, truth), out, settings=CurateSettings(**SETTINGS))
    save_image(src / "tiny.png", generate_scene(8)[0])  # fixed by the user
    truth["tiny.png"] = generate_scene(8)[1]
    s = curate(_items(src, truth), out, settings=CurateSettings(**SETTINGS))
    assert s.processed == 1 and s.kept == 6 and s.quarantined == 4
    with pytest.warns(UserWarning, match="settings changed"):
        s = curate(_items(src, truth), out, settings=CurateSettings(**{**SETTINGS, "dedup_max_distance": 0}))
    assert s.processed == 13 and (out / "progress.stale.jsonl").exists()


def test_processing_errors_are_quarantined_and_retried(messy, tmp_path):
    src, truth = messy
    out = tmp_path / "out"
    real = AnnotationObjects()

    def flaky(item, image):
        if item.source_id == "folder-scene1.png":
            raise ValueError("model crashed on this one")
        return real(item, image)

    s = curate(_items(src, truth), out, settings=CurateSettings(**SETTINGS), object_backend=flaky)
    assert s.failed == 1 and s.kept == 4
    assert [str(src / "scene1.png"), "processing_error", "ValueError: model crashed on this one"] in _tsv(out / "quarantine.tsv")
    s = curate(_items(src, truth), out, settings=CurateSettings(**SETTINGS))
    assert s.processed == 1 and s.kept == 5 and s.failed == 0


def test_a_broken_setup_stops_the_run(messy, tmp_path):
    src, truth = messy

    def broken(item, image):
        raise RuntimeError("no GPU")

    with pytest.raises(RuntimeError, match="all failed in processing"):
        curate(_items(src, truth), tmp_path / "out", settings=CurateSettings(show_progress=False), object_backend=broken)


def test_duplicate_source_ids_are_refused(messy, tmp_path):
    src, truth = messy
    items = _items(src, truth)
    with pytest.raises(ValueError, match="comes twice"):
        curate(items + items[:1], tmp_path / "out", settings=CurateSettings(**SETTINGS))


def test_video_errors_are_quarantined(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "broken.mp4").write_bytes(b"garbage" * 50)
    save_image(tmp_path / "src" / "a.png", generate_scene(0)[0])
    sources = curate_mod.build_sources(tmp_path / "src", tmp_path / "out")
    s = curate(sources, tmp_path / "out", settings=CurateSettings(show_progress=False))
    rows = _tsv(tmp_path / "out" / "quarantine.tsv")
    assert [r[:2] for r in rows] == [[str(tmp_path / "src" / "broken.mp4"), "video_unreadable"]]
    assert s.rejected_objects == 1  # the folder image has no annotations


# ------------------------------------------------------------------------------------------------ shards


def test_shard_assignment_is_stable():
    assert stable_shard("scene-000001", 3) == int(hashlib.sha1(b"scene-000001").hexdigest()[:16], 16) % 3
    counts = np.bincount([stable_shard(f"scene-{i:06d}", 3) for i in range(300)], minlength=3)
    assert counts.min() > 70


@pytest.fixture
def scene_coco(tmp_path):
    ann = write_scene_dataset(tmp_path / "scenes", 24, seed=3)
    return ann, tmp_path / "scenes" / "images"


def _run_shards(ann, images, out_root, n):
    files = []
    for i in range(n):
        out = out_root / f"shard{i}"
        settings = CurateSettings(**SETTINGS, shard_index=i, num_shards=n)
        curate(iter_coco(ann, images, source="scenes", prefix=""), out, settings=settings)
        files.append(out / "curated.jsonl")
    return files


def test_one_shard_and_three_shards_merge_identically(scene_coco, tmp_path, monkeypatch):
    ann, images = scene_coco
    # Hashes chosen so near-duplicate chains cross shard borders: scene k gets the hash of its chain.
    # Chain: s0 -(3 bits)- s1 -(3 bits)- s2, and s5 = s9 exactly; everything else far apart.
    ids = [f"scene-{i:06d}" for i in range(24)]
    rng = np.random.default_rng(0)
    table = {sid: int(rng.integers(0, 2**62)) << 1 for sid in ids}
    table[ids[1]] = table[ids[0]] ^ 0b111
    table[ids[2]] = table[ids[0]] ^ 0b111111
    table[ids[9]] = table[ids[5]]
    shards = {stable_shard(sid, 3) for sid in ids[:3]}
    assert len(shards) > 1, "the chain must cross shards for this test to mean anything"
    by_pixels = {}
    for sid in ids:
        by_pixels[hashlib.sha1(np.ascontiguousarray(load_rgb(images / f"{sid}.png")).tobytes()).hexdigest()] = table[sid]
    monkeypatch.setattr(curate_mod, "phash", lambda img: by_pixels[hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()])

    one = _run_shards(ann, images, tmp_path / "one", 1)
    three = _run_shards(ann, images, tmp_path / "three", 3)
    assert merge_curated(one, tmp_path / "m1.jsonl") == 21  # s1, s2 join s0's cluster; s9 is s5's twin
    assert merge_curated(three, tmp_path / "m3.jsonl") == 21
    assert (tmp_path / "m1.jsonl").read_bytes() == (tmp_path / "m3.jsonl").read_bytes() == one[0].read_bytes()
    kept = [r["source_id"] for r in read_jsonl(tmp_path / "m1.jsonl")]
    assert ids[0] in kept and ids[1] not in kept and ids[2] not in kept and ids[9] not in kept


def test_merge_refuses_missing_or_mismatched_shards(scene_coco, tmp_path):
    ann, images = scene_coco
    files = _run_shards(ann, images, tmp_path / "three", 3)
    with pytest.raises(ValueError, match=r"shards \[1\] of 3 are missing"):
        merge_curated([files[0], files[2]], tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="given twice"):
        merge_curated([files[0], files[0], files[1], files[2]], tmp_path / "m.jsonl")
    other = tmp_path / "other"
    curate(iter_coco(ann, images, source="scenes", prefix=""), other,
           settings=CurateSettings(show_progress=False, shard_index=1, num_shards=3, dedup_max_distance=9))
    with pytest.raises(ValueError, match="settings differ"):
        merge_curated([files[0], other / "curated.jsonl", files[2]], tmp_path / "m.jsonl")
    with pytest.raises(FileNotFoundError, match="summary.json"):
        merge_curated([tmp_path / "nowhere" / "curated.jsonl"], tmp_path / "m.jsonl")


def test_bad_shard_settings():
    with pytest.raises(ValueError, match="shard 3 of 3"):
        CurateSettings(shard_index=3, num_shards=3)


# ------------------------------------------------------------------------------------------------ CLI


def _cli(argv):
    parser = argparse.ArgumentParser(prog="refine-iqa")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_curates_shards_and_merges(scene_coco, tmp_path, capsys):
    ann, images = scene_coco
    for i in range(2):
        assert _cli(["curate", str(images), str(tmp_path / f"s{i}"), "--coco", str(ann), "--coco-source", "scenes",
                     "--coco-prefix", "", "--shards", "2", "--shard", str(i), "--quality-metric", "piqe:60:lower",
                     "--no-progress"]) == 0
    assert "kept" in capsys.readouterr().out
    assert _cli(["curate-merge", str(tmp_path / "all.jsonl"), str(tmp_path / "s0" / "curated.jsonl"),
                 str(tmp_path / "s1" / "curated.jsonl")]) == 0
    records = read_jsonl(tmp_path / "all.jsonl")
    assert len(records) == 24 and all(r["source"] == "scenes" and r["source_id"].startswith("scene-") for r in records)
    assert read_json(tmp_path / "s0" / "summary.json")["settings"]["quality"] == [
        {"metric": "piqe", "threshold": 60.0, "direction": "lower", "weights": None}]


def test_cli_folder_with_video_keyframes(tmp_path):
    av = pytest.importorskip("av")
    src = tmp_path / "src"
    src.mkdir()
    with av.open(str(src / "clip.mp4"), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 112, 112, "yuv420p"
        for k in range(6):
            frame = av.VideoFrame.from_ndarray(generate_scene(k)[0], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert _cli(["curate", str(src), str(tmp_path / "out"), "--keyframes", "3", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "frames").glob("*.png")) == [
        "video-clip.mp4-f000001.png", "video-clip.mp4-f000003.png", "video-clip.mp4-f000005.png"]
    rejected = _tsv(tmp_path / "out" / "rejected.tsv")
    assert [r[0] for r in rejected] == ["video-clip.mp4-f000001", "video-clip.mp4-f000003", "video-clip.mp4-f000005"]
    assert {r[2] for r in rejected} == {"no_annotations"}


def test_cli_vlm_needs_both_folders(tmp_path):
    with pytest.raises(SystemExit, match="--vlm DIR and --detector DIR"):
        _cli(["curate", str(tmp_path), str(tmp_path / "out"), "--objects", "vlm", "--vlm", str(tmp_path)])
