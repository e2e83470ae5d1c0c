"""Sources: image folders, COCO instances, video keyframes (a video encoded here with PyAV), skimage."""

import hashlib
from pathlib import Path
import json

import numpy as np
import pytest
from PIL import Image

from refine_iqa.data import sources
from refine_iqa.data.sources import (
    KeyframeSettings,
    even_indices,
    iter_coco,
    iter_folder,
    iter_skimage,
    iter_videos,
    make_source_id,
    pick_scene_changes,
)
from refine_iqa.io_utils import load_rgb, read_json

av = pytest.importorskip("av")


def _png(path, w=40, h=30, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


# ------------------------------------------------------------------------------------------------ ids


def test_source_ids_are_safe_stable_and_unique():
    assert make_source_id("folder", "a.jpg") == "folder-a.jpg"
    assert make_source_id("", "scene-000012") == "scene-000012"
    h = hashlib.sha1("a b.jpg".encode()).hexdigest()[:8]
    assert make_source_id("folder", "a b.jpg") == f"folder-a_b.jpg-{h}"
    # Names that only differ in characters that had to be replaced still get different ids.
    names = ["a b.jpg", "a_b.jpg", "a/b.jpg", "a__b.jpg", "ä.jpg", "_x", "x"]
    ids = [make_source_id("folder", n) for n in names]
    assert len(set(ids)) == len(ids)
    assert all(all(c.isalnum() and c.isascii() or c in "._-" for c in i) for i in ids)
    assert make_source_id("", "_x")[0].isalnum()


# ------------------------------------------------------------------------------------------------ folders


def test_folder_is_recursive_filters_extensions_and_skips_hidden(tmp_path):
    for rel in ["a.jpg", "B.PNG", "sub/c.webp", "sub/deeper/d.BMP", "e.tiff", "f.jpeg", ".hidden.png",
                ".cache/x.png"]:
        _png(tmp_path / rel)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "fake.jpg").write_text("text named .jpg")  # listed: curation quarantines it
    items = list(iter_folder(tmp_path))
    rels = [it.path[len(str(tmp_path)) + 1:] for it in items]
    assert rels == sorted(["a.jpg", "B.PNG", "sub/c.webp", "sub/deeper/d.BMP", "e.tiff", "f.jpeg", "fake.jpg"])
    assert all(it.source == "folder" and it.objects is None and it.frame_index is None for it in items)
    assert len({it.source_id for it in items}) == len(items)
    assert [it.source_id for it in iter_folder(tmp_path)] == [it.source_id for it in items]  # stable


def test_folder_items_load_with_exif_orientation(tmp_path):
    img = Image.fromarray(np.zeros((48, 64, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    (item,) = iter_folder(tmp_path)
    assert load_rgb(item.path).shape == (64, 48, 3)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        list(iter_folder(tmp_path / "nope"))


# ------------------------------------------------------------------------------------------------ COCO


def _coco(tmp_path, **override):
    data = {
        "images": [
            {"id": 1, "file_name": "000000000001.jpg", "width": 100, "height": 80},
            {"id": 7, "file_name": "val/000000000007.jpg", "width": 50, "height": 50},
        ],
        "categories": [{"id": 3, "name": "dog"}, {"id": 5, "name": "red car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10.5, 20.25, 30, 40.5], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [0, 0, 200, 10]},  # runs off the image: clipped
            {"id": 3, "image_id": 1, "category_id": 5, "bbox": [5, 5, 50, 50], "iscrowd": 1},  # crowd: skipped
            {"id": 4, "image_id": 1, "category_id": 3, "bbox": [60, 60, 0, 10]},  # zero width: dropped
            {"id": 5, "image_id": 1, "category_id": 3, "bbox": [12, 30, 8.0000001, 10]},  # float noise: not widened
        ],
    }
    data.update(override)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_objects_names_and_box_conversion(tmp_path):
    items = list(iter_coco(_coco(tmp_path), tmp_path / "imgs"))
    assert [it.source_id for it in items] == ["coco-000000000001", f"coco-val__000000000007-"
                                              f"{hashlib.sha1(b'val/000000000007').hexdigest()[:8]}"]
    first = items[0]
    assert first.path == str(tmp_path / "imgs" / "000000000001.jpg")
    assert first.source == "coco"
    # [x, y, w, h] -> [x1, y1, x2, y2], rounded outwards, clipped to the 100x80 image
    assert first.objects == [
        {"name": "dog", "box": [10, 20, 41, 61]},
        {"name": "red car", "box": [0, 0, 100, 10]},
        {"name": "dog", "box": [12, 30, 20, 40]},
    ]
    assert first.meta["width"] == 100 and first.meta["height"] == 80
    assert items[1].objects == []


def test_coco_scene_ids_without_prefix(tmp_path):
    path = _coco(tmp_path, images=[{"id": 1, "file_name": "scene-000012.png", "width": 100, "height": 80}],
                 annotations=[])
    (item,) = iter_coco(path, tmp_path, source="scenes", prefix="")
    assert item.source_id == "scene-000012" and item.source == "scenes"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"annotations": [{"id": 1, "image_id": 1, "category_id": 3}]}, r"annotations\[0\]: missing 'bbox'"),
        ({"annotations": [{"image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}]}, "category_id 9 is not in categories"),
        ({"annotations": [{"image_id": 4, "category_id": 3, "bbox": [0, 0, 1, 1]}]}, "image_id 4 is not in images"),
        ({"annotations": [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1]}]}, r"bbox must be 4 numbers"),
        ({"images": [{"id": 1, "file_name": "a.jpg", "width": 5}]}, r"images\[0\] is missing 'height'"),
        ({"categories": None}, "missing list 'categories'"),
    ],
)
def test_coco_errors_name_the_field(tmp_path, override, message):
    path = _coco(tmp_path, **override)
    with pytest.raises(ValueError, match=message) as err:
        list(iter_coco(path, tmp_path))
    assert "instances.json" in str(err.value)


def test_coco_duplicate_file_names_are_refused(tmp_path):
    path = _coco(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "width": 5, "height": 5},
                                   {"id": 2, "file_name": "a.png", "width": 5, "height": 5}], annotations=[])
    with pytest.raises(ValueError, match="same source id"):
        list(iter_coco(path, tmp_path))


# ------------------------------------------------------------------------------------------------ videos


def test_even_indices_by_hand():
    assert even_indices(10, 4) == [1, 3, 6, 8]  # floor(1.25), floor(3.75), floor(6.25), floor(8.75)
    assert even_indices(30, 3) == [5, 15, 25]
    assert even_indices(3, 8) == [0, 1, 2]  # fewer frames than asked: each frame once
    assert even_indices(0, 5) == []


def test_pick_scene_changes_by_hand():
    diffs = [0.0, 5, 50, 3, 40, 45, 2]
    s = KeyframeSettings(mode="scene", count=8, scene_threshold=30, min_gap=2)
    # candidates 2 (50), 5 (45), 4 (40); 4 is within min_gap of 5, the stronger cut
    assert pick_scene_changes(diffs, s) == [0, 2, 5]
    assert pick_scene_changes(diffs, KeyframeSettings(mode="scene", count=2, scene_threshold=30, min_gap=1)) == [0, 2]
    assert pick_scene_changes(diffs, KeyframeSettings(mode="scene", scene_threshold=60, min_gap=1)) == [0]
    assert pick_scene_changes([], s) == []


SCENE_GREYS = (40, 200, 120)  # three scenes of 10 frames; cut strengths 160 then 80


def _encode_video(path, n_per_scene=10, w=96, h=64):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for grey in SCENE_GREYS:
            for k in range(n_per_scene):
                frame = np.full((h, w, 3), grey, np.uint8)
                frame[20:36, 4 + 4 * k: 20 + 4 * k] = 255 - grey  # a small moving square: frames differ a little
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _scene_of(png_path):
    mean = load_rgb(png_path, min_side=8).astype(float)[:16].mean()  # rows above the moving square
    return int(np.argmin([abs(mean - g) for g in SCENE_GREYS]))


def test_video_even_keyframes(tmp_path):
    video = tmp_path / "clips" / "clip one.mp4"
    video.parent.mkdir()
    _encode_video(video)
    assert sources.count_frames(video) == 30
    items = list(iter_videos(tmp_path / "clips", tmp_path / "frames", KeyframeSettings(mode="even", count=3)))
    assert [it.frame_index for it in items] == [5, 15, 25]
    assert [_scene_of(it.path) for it in items] == [0, 1, 2]
    vid = make_source_id("video", "clip one.mp4")
    assert [it.source_id for it in items] == [f"{vid}-f000005", f"{vid}-f000015", f"{vid}-f000025"]
    assert all(it.source == "video" and it.meta["shard_key"] == vid and it.meta["video"] == str(video) for it in items)
    assert read_json(tmp_path / "frames" / f"{vid}.keyframes.json")["frames"] == [5, 15, 25]


def test_video_scene_change_keyframes_and_reuse(tmp_path, monkeypatch):
    video = tmp_path / "v.mp4"
    _encode_video(video)
    s = KeyframeSettings(mode="scene", count=8, scene_threshold=30, min_gap=3)
    items = list(iter_videos(video, tmp_path / "frames", s))
    assert [it.frame_index for it in items] == [0, 10, 20]
    assert [_scene_of(it.path) for it in items] == [0, 1, 2]
    capped = list(iter_videos(video, tmp_path / "frames2", KeyframeSettings(mode="scene", count=2, min_gap=3)))
    assert [it.frame_index for it in capped] == [0, 10]  # the stronger cut wins

    # Same video and settings: reuse the PNGs, decode nothing.
    calls = []
    real = sources.extract_keyframes
    monkeypatch.setattr(sources, "extract_keyframes", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert [it.source_id for it in iter_videos(video, tmp_path / "frames", s)] == [it.source_id for it in items]
    assert calls == []
    again = list(iter_videos(video, tmp_path / "frames", KeyframeSettings(mode="even", count=2)))
    assert calls == [1] and [it.frame_index for it in again] == [7, 22]  # new settings: decoded


def test_video_select_skips_without_decoding(tmp_path, monkeypatch):
    _encode_video(tmp_path / "a.mp4", n_per_scene=2)
    _encode_video(tmp_path / "b.mp4", n_per_scene=2)
    got = list(iter_videos(tmp_path, tmp_path / "frames", KeyframeSettings(count=1), select=lambda v: v.endswith("b.mp4")))
    assert {it.meta["shard_key"] for it in got} == {"video-b.mp4"}
    assert not list((tmp_path / "frames").glob("video-a.mp4*"))


def test_broken_video_becomes_an_error_item(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x01not a video at all" * 10)
    (item,) = iter_videos(tmp_path, tmp_path / "frames")
    assert item.error is not None and item.error[0] == "video_unreadable"
    assert item.source_id == "video-broken.mp4" and item.path == str(tmp_path / "broken.mp4")


def test_keyframe_settings_are_checked():
    with pytest.raises(ValueError, match="even' or 'scene"):
        KeyframeSettings(mode="every")
    with pytest.raises(ValueError, match="at least 1"):
        KeyframeSettings(count=0)


# ------------------------------------------------------------------------------------------------ skimage


def test_skimage_source_writes_pngs_once(tmp_path):
    items = list(iter_skimage(tmp_path, ["chelsea", "camera"]))
    assert [it.source_id for it in items] == ["skimage-chelsea", "skimage-camera"]
    assert load_rgb(items[0].path).shape == (300, 451, 3)
    assert load_rgb(items[1].path).shape == (512, 512, 3)  # grey made RGB
    mtime = (tmp_path / "chelsea.png").stat().st_mtime_ns
    list(iter_skimage(tmp_path, ["chelsea"]))
    assert (tmp_path / "chelsea.png").stat().st_mtime_ns == mtime


def test_even_keyframes_by_seeking_match_a_full_decode(tmp_path, monkeypatch):
    """Issue 13: even mode seeks to each keyframe's group of pictures; the frames equal a full decode's."""
    video = tmp_path / "v.mp4"
    with av.open(str(video), "w") as container:  # a keyframe every 5 frames, so seeking skips whole groups
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = 96, 64, "yuv420p", 5
        for k in range(40):
            frame = np.full((64, 96, 3), 6 * k, np.uint8)
            frame[10:30, 2 * k: 2 * k + 12] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    s = KeyframeSettings(mode="even", count=4)
    wanted = sources.even_indices(40, 4)
    full = sources._decode_even_in_one_pass(str(video), set(wanted))
    monkeypatch.setattr(sources, "_decode_even_in_one_pass", lambda *a: pytest.fail("fell back to a full decode"))
    seeked = sources.extract_keyframes(video, s)
    assert [i for i, _ in seeked] == [i for i, _ in full] == wanted == [5, 15, 25, 35]
    for (_, a), (_, b) in zip(seeked, full):
        assert np.array_equal(a, b)


def test_scene_mode_keeps_candidates_on_disk_not_in_memory(tmp_path, monkeypatch):
    video = tmp_path / "v.mp4"
    _encode_video(video)
    spill = tmp_path / "spill"
    spill.mkdir()
    spilled = []
    real_save = np.save
    monkeypatch.setattr(np, "save", lambda path, arr: spilled.append(Path(path).name) or real_save(path, arr))
    frames = sources.extract_keyframes(video, KeyframeSettings(mode="scene", count=8, min_gap=3), spill_dir=spill)
    assert [i for i, _ in frames] == [0, 10, 20]
    assert [int(np.argmin([abs(f[:16].mean() - g) for g in SCENE_GREYS])) for _, f in frames] == [0, 1, 2]
    assert sorted(spilled) == ["0.npy", "10.npy", "20.npy"]  # every candidate went to disk, none stays in memory
    assert list(spill.iterdir()) == []  # and is removed afterwards


def test_two_shard_curation_decodes_each_video_once(tmp_path, monkeypatch):
    """Issue 13: every shard used to decode every video; now a video is decoded by its own shard only."""
    from refine_iqa.stages.data import curate_shard
    from refine_iqa.config import load_params
    from refine_iqa.io_utils import read_jsonl

    clips = tmp_path / "clips"
    clips.mkdir()
    for k in range(4):
        _encode_video(clips / f"c{k}.mp4", n_per_scene=2)
    params = load_params("params.yaml", {"data": {"perception": {
        "source": "video", "video": {"path": str(clips), "keyframes": 2, "mode": "even"},
        "curate": {"shards": 2}}}})
    decoded = []
    real = sources.extract_keyframes
    monkeypatch.setattr(sources, "extract_keyframes", lambda path, *a, **k: decoded.append(Path(path).name) or real(path, *a, **k))
    for shard in (0, 1):
        curate_shard(params, None, tmp_path / f"shard-{shard}", shard)
    assert sorted(decoded) == [f"c{k}.mp4" for k in range(4)]  # each video once, over both shards
    seen = [r["source_id"] for shard in (0, 1) for r in read_jsonl(tmp_path / f"shard-{shard}" / "progress.jsonl")]
    assert {s.rsplit("-f", 1)[0] for s in seen} == {f"video-c{k}.mp4" for k in range(4)}
