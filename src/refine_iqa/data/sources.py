"""Where source images come from: image folders, COCO instance annotations, video keyframes, skimage.

Every source yields `SourceItem`s. Source ids are stable (a function of the source kind and the file's
relative path, COCO file name or video frame index) and name files downstream, so they only use letters,
digits, ".", "_" and "-"; when a name had to be changed to fit, a short hash of the original is appended so
two different names can never meet on one id.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from refine_iqa.io_utils import atomic_write_json, read_json, save_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
SKIMAGE_COLOUR_IMAGES = ("astronaut", "chelsea", "cat", "coffee", "rocket", "hubble_deep_field",
                         "immunohistochemistry", "retina", "colorwheel", "logo")


@dataclass(frozen=True)
class SourceItem:
    source_id: str
    source: str  # scenes | folder | coco | video | skimage
    path: str  # the image file (for videos: the extracted keyframe PNG)
    objects: list[dict] | None = None  # ground-truth [{"name", "box": [x1, y1, x2, y2]}], None when unknown
    frame_index: int | None = None
    meta: dict = field(default_factory=dict)  # e.g. annotated width/height, the video a frame came from
    error: tuple[str, str] | None = None  # (reason, detail) when the source could not produce the image


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def make_source_id(prefix: str, name: str) -> str:
    """`prefix-name` with unsafe characters replaced; a changed name gets an 8-hex hash of the original."""
    safe = _UNSAFE.sub("_", name.replace("/", "__"))
    changed = safe != name or not safe or (not prefix and not safe[0].isalnum())
    if changed:
        safe = f"{safe}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"
        if not prefix and not safe[0].isalnum():
            safe = "n" + safe  # ids must start with a letter or digit
    return f"{prefix}-{safe}" if prefix else safe


def _walk_files(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Files under root with one of the extensions (any case), sorted; hidden files and folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(extensions):
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def iter_folder(root: str | Path, *, source: str = "folder", prefix: str = "folder") -> Iterator[SourceItem]:
    """Every image file under `root`, recursively (.jpg .jpeg .png .bmp .webp .tif .tiff, any case).

    Files are not opened here: unreadable ones reach curation and are quarantined there with a reason.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} not found")
    for path in _walk_files(root, IMAGE_EXTENSIONS):
        rel = path.relative_to(root).as_posix()
        yield SourceItem(make_source_id(prefix, rel), source, str(path))


def _coco_box(bbox, where: str) -> list[float]:
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        raise ValueError(f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def iter_coco(annotation_json: str | Path, image_root: str | Path, *, source: str = "coco",
              prefix: str = "coco") -> Iterator[SourceItem]:
    """Images of a COCO instances file with their objects: names from `categories`, boxes converted from
    `[x, y, w, h]` to `[x1, y1, x2, y2]` integer pixels (rounded outwards, clipped to the image).

    Crowd annotations (`iscrowd: 1`) are skipped; an image without annotations has `objects=[]`. The id is
    `prefix-<file_name without extension>` (empty prefix: the bare name, as the procedural scenes use).
    """
    from refine_iqa.data.objects import pixel_box

    ann_path = Path(annotation_json)
    image_root = Path(image_root)
    coco = read_json(ann_path)
    if not isinstance(coco, dict):
        raise ValueError(f"{ann_path}: expected a COCO object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise ValueError(f"{ann_path}: missing list {key!r}; is this a COCO *instances* file?")
    names: dict[int, str] = {}
    for k, cat in enumerate(coco["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            raise ValueError(f"{ann_path}: categories[{k}] needs 'id' and a string 'name'")
        names[cat["id"]] = cat["name"]
    images: dict[int, dict] = {}
    for k, img in enumerate(coco["images"]):
        for key in ("id", "file_name", "width", "height"):
            if not isinstance(img, dict) or key not in img:
                raise ValueError(f"{ann_path}: images[{k}] is missing {key!r}")
        if img["id"] in images:
            raise ValueError(f"{ann_path}: images[{k}]: image id {img['id']} repeats")
        images[img["id"]] = img
    objects: dict[int, list[dict]] = {i: [] for i in images}
    for k, ann in enumerate(coco["annotations"]):
        where = f"{ann_path}: annotations[{k}]"
        if not isinstance(ann, dict):
            raise ValueError(f"{where}: expected an object")
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise ValueError(f"{where}: missing {key!r}")
        if ann.get("iscrowd", 0):
            continue  # a crowd region is not one nameable object
        if ann["image_id"] not in images:
            raise ValueError(f"{where}: image_id {ann['image_id']} is not in images")
        if ann["category_id"] not in names:
            raise ValueError(f"{where}: category_id {ann['category_id']} is not in categories")
        img = images[ann["image_id"]]
        box = pixel_box(*_coco_box(ann["bbox"], where), int(img["width"]), int(img["height"]))
        if box is not None:
            objects[ann["image_id"]].append({"name": names[ann["category_id"]], "box": box})
    seen: dict[str, str] = {}
    for image_id, img in images.items():
        file_name = str(img["file_name"])
        sid = make_source_id(prefix, file_name.rsplit(".", 1)[0] if "." in Path(file_name).name else file_name)
        if sid in seen:
            raise ValueError(f"{ann_path}: file names {seen[sid]!r} and {file_name!r} give the same source id {sid!r}")
        seen[sid] = file_name
        yield SourceItem(
            sid, source, str(image_root / file_name), objects[image_id],
            meta={"width": int(img["width"]), "height": int(img["height"]), "coco_image_id": image_id},
        )


# ------------------------------------------------------------------------------------------------ videos


@dataclass(frozen=True)
class KeyframeSettings:
    """`even`: `count` frames evenly spaced (the centre of each of `count` equal spans).
    `scene`: the first frame and every frame whose mean absolute difference from the previous frame (grey
    64x64 thumbnails, 0-255) exceeds `scene_threshold`, at least `min_gap` frames apart, at most `count`
    (the largest changes win)."""

    mode: str = "even"
    count: int = 8
    scene_threshold: float = 30.0
    min_gap: int = 5

    def __post_init__(self):
        if self.mode not in ("even", "scene"):
            raise ValueError(f"video keyframe mode {self.mode!r}: choose 'even' or 'scene'")
        if self.count < 1:
            raise ValueError(f"video keyframes count={self.count}: must be at least 1")
        if self.min_gap < 1:
            raise ValueError(f"video keyframes min_gap={self.min_gap}: must be at least 1")


def _thumb(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    grey = Image.fromarray(rgb).convert("L").resize((64, 64), Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float64)


def count_frames(video_path: str | Path) -> int:
    """Frames in the first video stream: the container's count, else the number of packets."""
    import av

    with av.open(str(video_path)) as container:
        stream = container.streams.video[0]
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)


def even_indices(total: int, count: int) -> list[int]:
    """Centres of `count` equal spans of `total` frames: floor((i + 0.5) * total / count), de-duplicated."""
    if total <= 0:
        return []
    return sorted({min(total - 1, int(math.floor((i + 0.5) * total / count))) for i in range(count)})


def pick_scene_changes(diffs: list[float], settings: KeyframeSettings) -> list[int]:
    """Keyframe indices from per-frame differences (`diffs[i]` = change from frame i-1 to i; diffs[0] unused)."""
    if not diffs:
        return []
    cands = [i for i in range(1, len(diffs)) if diffs[i] > settings.scene_threshold]
    chosen = [0]
    # Strongest cuts first, so min_gap and count keep the clearest scene changes.
    for i in sorted(cands, key=lambda i: (-diffs[i], i)):
        if len(chosen) >= settings.count:
            break
        if all(abs(i - j) >= settings.min_gap for j in chosen):
            chosen.append(i)
    return sorted(chosen)


def _frame_pts(container, stream) -> list[int]:
    """Presentation timestamps of the stream's frames in display order, read from the packets (no decoding)."""
    return sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)


def _seek_frames(path: str, wanted: list[int]) -> list[tuple[int, np.ndarray]] | None:
    """Frames `wanted` (display-order indices) by seeking to the keyframe before each and decoding from there.

    Returns None when the container gives no usable timestamps (the caller then decodes in one pass).
    """
    import av

    out = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        pts = _frame_pts(container, stream)
        if not pts or len(set(pts)) != len(pts) or max(wanted) >= len(pts):
            return None
        for i in wanted:
            target = pts[i]
            container.seek(target, stream=stream, backward=True, any_frame=False)
            got = None
            for frame in container.decode(stream):
                if frame.pts is None:
                    return None
                if frame.pts >= target:
                    got = frame if frame.pts == target else None
                    break
            if got is None:
                return None
            out.append((i, got.to_ndarray(format="rgb24")))
    return out


def _decode_even_in_one_pass(path: str, wanted: set[int]) -> list[tuple[int, np.ndarray]]:
    import av

    out = []
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out.append((i, frame.to_ndarray(format="rgb24")))
                if len(out) == len(wanted):
                    break
    return out


def extract_keyframes(video_path: str | Path, settings: KeyframeSettings,
                      spill_dir: str | Path | None = None) -> list[tuple[int, np.ndarray]]:
    """Decode the first video stream and return [(frame index, uint8 RGB)] for the chosen keyframes.

    even: the frame indices are known from the packet count, so each is reached by a seek to the keyframe
    before it (only that group of pictures is decoded), not by decoding every frame up to it.
    scene: one decoding pass; a candidate frame (a cut) is spilled to `spill_dir` (a temporary folder when
    None) as a raw .npy rather than held in memory, and only the chosen ones are read back.
    """
    import av

    path = str(video_path)
    if settings.mode == "even":
        wanted = even_indices(count_frames(path), settings.count)
        if not wanted:
            return []
        return _seek_frames(path, wanted) or _decode_even_in_one_pass(path, set(wanted))
    import tempfile

    diffs: list[float] = []
    prev = None
    with tempfile.TemporaryDirectory(dir=spill_dir, prefix=".keyframe-candidates-") as tmp:
        with av.open(path) as container:
            for i, frame in enumerate(container.decode(video=0)):
                rgb = frame.to_ndarray(format="rgb24")
                thumb = _thumb(rgb)
                diffs.append(0.0 if prev is None else float(np.abs(thumb - prev).mean()))
                prev = thumb
                if i == 0 or diffs[-1] > settings.scene_threshold:
                    np.save(Path(tmp) / f"{i}.npy", rgb)  # on disk, not in memory: an hour of cuts is GBs
        return [(i, np.load(Path(tmp) / f"{i}.npy")) for i in pick_scene_changes(diffs, settings)]


def iter_video(video_path: str | Path, frames_dir: str | Path, settings: KeyframeSettings, *,
               video_id: str, source: str = "video") -> Iterator[SourceItem]:
    """Keyframes of one video, written once as `frames_dir/<video_id>-f<index>.png`.

    A small `<video_id>.keyframes.json` records what was extracted (video size and mtime, settings); a later
    run with the same video and settings reuses the PNGs without decoding. A video that cannot be decoded
    yields one item carrying `error`, so curation quarantines it instead of stopping.
    """
    video_path = Path(video_path)
    frames_dir = Path(frames_dir)
    marker = frames_dir / f"{video_id}.keyframes.json"
    group = {"shard_key": video_id}  # curation shards keyframes by their video
    try:
        st = video_path.stat()
    except OSError as e:
        yield SourceItem(video_id, source, str(video_path), None, meta=group, error=("missing", str(e)))
        return
    stamp = {"video": str(video_path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "settings": asdict(settings)}
    indices = None
    if marker.exists():
        try:
            saved = read_json(marker)
        except ValueError:
            saved = {}
        if {k: saved.get(k) for k in stamp} == stamp and all(
            (frames_dir / f"{video_id}-f{i:06d}.png").exists() for i in saved.get("frames", [])
        ):
            indices = saved["frames"]
    if indices is None:
        try:
            frames_dir.mkdir(parents=True, exist_ok=True)
            frames = extract_keyframes(video_path, settings, spill_dir=frames_dir)
        except Exception as e:  # PyAV raises its own error family for broken files; quarantine all of them
            yield SourceItem(video_id, source, str(video_path), None, meta=group,
                             error=("video_unreadable", f"{type(e).__name__}: {e}".splitlines()[0]))
            return
        if not frames:
            yield SourceItem(video_id, source, str(video_path), None, meta=group,
                             error=("video_empty", "no decodable frames"))
            return
        for i, rgb in frames:
            save_image(frames_dir / f"{video_id}-f{i:06d}.png", rgb)
        indices = [i for i, _ in frames]
        atomic_write_json(marker, {**stamp, "frames": indices})
    for i in indices:
        yield SourceItem(f"{video_id}-f{i:06d}", source, str(frames_dir / f"{video_id}-f{i:06d}.png"),
                         None, frame_index=int(i), meta={**group, "video": str(video_path)})


def iter_videos(root_or_file: str | Path, frames_dir: str | Path, settings: KeyframeSettings | None = None, *,
                prefix: str = "video", select: Callable[[str], bool] | None = None) -> Iterator[SourceItem]:
    """Keyframes of one video file, or of every video under a folder (recursively).

    `select(video_id)` False skips a video without decoding it (curation shards pass their own test).
    """
    settings = settings or KeyframeSettings()
    root = Path(root_or_file)
    if root.is_file():
        files, base = [root], root.parent
    elif root.is_dir():
        files, base = _walk_files(root, VIDEO_EXTENSIONS), root
    else:
        raise FileNotFoundError(f"video path {root} not found")
    for path in files:
        rel = path.relative_to(base).as_posix()
        video_id = make_source_id(prefix, rel)
        if select is None or select(video_id):
            yield from iter_video(path, frames_dir, settings, video_id=video_id)


def iter_skimage(images_dir: str | Path, names: Iterable[str] = SKIMAGE_COLOUR_IMAGES) -> Iterator[SourceItem]:
    """scikit-image's bundled colour photographs (no download), written once as PNGs into `images_dir`."""
    import skimage.data

    images_dir = Path(images_dir)
    for name in names:
        path = images_dir / f"{name}.png"
        if not path.exists():
            img = np.asarray(getattr(skimage.data, name)())
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            save_image(path, np.ascontiguousarray(img[..., :3]).astype(np.uint8))
        yield SourceItem(make_source_id("skimage", name), "skimage", str(path))
