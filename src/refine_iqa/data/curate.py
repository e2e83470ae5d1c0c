"""Curation: sources -> readable images -> near-duplicate removal -> quality filter -> objects -> curated.jsonl.

Outputs in `out_dir` (rebuilt atomically at the end of every run from the progress log):
- `curated.jsonl`: one record per kept image (format in docs/ARCHITECTURE.md), sorted by source_id;
- `quarantine.tsv`: `path<TAB>reason<TAB>detail` for files that cannot be used (reasons from
  io_utils.ImageReadError, video errors, `processing_error`);
- `rejected.tsv`: `source_id<TAB>path<TAB>reason<TAB>detail` for readable images left out
  (`duplicate`, `quality`, or the object backend's reason);
- `phashes.jsonl`: the hash of every readable image (merging shards re-clusters duplicates with it);
- `summary.json`: counts and the settings.
`progress.jsonl` gets one line per finished image as it finishes; a re-run skips every image it lists whose
file has not changed (same size and mtime), so an interrupted run resumes without redoing work.

Sharding: shard `i` of `n` takes the items whose stable hash of `source_id` (of the video, for keyframes) is
`i` mod `n`. `merge_curated` joins the shards' outputs into exactly what one unsharded run writes.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from refine_iqa.data.objects import ObjectResult, ObjectRules, VlmSettings, make_object_backend
from refine_iqa.data.phash import DuplicateClusters, phash, to_hex
from refine_iqa.data.quality import QualityFilter, QualityMetricSpec, QualityResult
from refine_iqa.data.sources import SourceItem
from refine_iqa.io_utils import (
    MAX_IMAGE_PIXELS,
    MIN_IMAGE_SIDE,
    ImageReadError,
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    dumps,
    load_rgb,
    read_json,
    read_jsonl,
    write_jsonl,
)

# After this many processing errors in a run with no success, the cause is the setup, not the images.
MAX_ERRORS_WITHOUT_SUCCESS = 5


@dataclass
class CurateSettings:
    dedup_max_distance: int = 4  # pHash bits; images this close are near duplicates
    quality: list[QualityMetricSpec] = field(default_factory=list)
    objects_backend: str = "annotations"  # annotations | vlm
    rules: ObjectRules = field(default_factory=ObjectRules)
    vlm: VlmSettings | None = None
    shard_index: int = 0
    num_shards: int = 1
    min_side: int = MIN_IMAGE_SIDE  # shorter side below this -> quarantined as too_small
    max_pixels: int = MAX_IMAGE_PIXELS  # more pixels -> quarantined as too_large, from the header alone
    device: str = "cpu"
    show_progress: bool = True

    def __post_init__(self):
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"curate: shard {self.shard_index} of {self.num_shards}: need 0 <= shard < shards")
        self.quality = [q if isinstance(q, QualityMetricSpec) else QualityMetricSpec.from_dict(q) for q in self.quality]

    def fingerprint(self) -> dict:
        """Everything that changes which images are kept; a resumed run must match it."""
        d = asdict(self)
        d.pop("show_progress")
        d.pop("device")
        d["rules"]["background_names"] = sorted(d["rules"]["background_names"])
        return json.loads(dumps(d))  # JSON types, so it compares equal to a saved copy


@dataclass
class CurateSummary:
    out_dir: str
    total: int = 0  # items in this shard
    kept: int = 0
    quarantined: int = 0
    duplicates: int = 0
    rejected_quality: int = 0
    rejected_objects: int = 0
    failed: int = 0  # processing errors this run (retried next run)
    processed: int = 0  # images worked on in this run
    resumed: int = 0  # images taken from the progress log


def stable_shard(key: str, num_shards: int) -> int:
    """Shard of `key`: sha1 of the key, first 8 bytes, mod num_shards (same on every machine and run)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:16], 16) % num_shards


def shard_key(item: SourceItem) -> str:
    # Keyframes of one video stay together, so each shard decodes only its own videos.
    return item.meta.get("shard_key", item.source_id)


def _flatten(sources) -> list[SourceItem]:
    if isinstance(sources, SourceItem):
        return [sources]
    items = []
    for entry in sources:
        if isinstance(entry, SourceItem):
            items.append(entry)
        else:
            items.extend(_flatten(entry))
    return items


def _stamp(item: SourceItem) -> list[int] | None:
    try:
        st = Path(item.path).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _clean(text: str) -> str:
    return " ".join(str(text).split())  # no tabs or newlines inside a TSV field


class _Curator:
    def __init__(self, out_dir: Path, settings: CurateSettings, quality_filter, object_backend):
        self.out_dir = out_dir
        self.settings = settings
        self.quality = quality_filter
        self.objects = object_backend
        self.log_path = out_dir / "progress.jsonl"
        self.summary = CurateSummary(str(out_dir))
        self.failed: list[dict] = []
        self.successes = 0

    def _evaluate(self, item: SourceItem, image, h: int) -> dict:
        """Quality then objects for an image that is the first of its duplicate cluster."""
        entry = {"phash": to_hex(h)}
        q: QualityResult = self.quality(image)
        if not q.passed:
            return {**entry, "status": "rejected_quality", "reason": "quality", "detail": "; ".join(q.failures),
                    "quality": q.scores}
        o: ObjectResult = self.objects(item, image)
        if not o.ok:
            return {**entry, "status": "rejected_objects", "reason": o.reason, "detail": o.detail, "quality": q.scores}
        height, width = image.shape[:2]
        record = {
            "source_id": item.source_id, "source": item.source, "path": item.path, "width": int(width),
            "height": int(height), "phash": to_hex(h), "objects": o.objects, "quality": q.scores,
        }
        if item.frame_index is not None:
            record["frame_index"] = item.frame_index
            record["video"] = item.meta.get("video")
        return {**entry, "status": "kept", "record": record}

    def process(self, item: SourceItem, clusters: DuplicateClusters | None) -> dict | None:
        """Work out one item's entry; None when it failed unexpectedly (not logged, so retried next run).

        With `clusters`, the item's hash is added first and a linked item is a duplicate (no more work);
        without, the item is already known to be the first of its cluster.
        """
        base = {"source_id": item.source_id, "path": item.path, "stamp": _stamp(item)}
        if item.error is not None:
            return {**base, "status": "quarantined", "reason": item.error[0], "detail": item.error[1], "phash": None}
        try:
            image = load_rgb(item.path, min_side=self.settings.min_side, max_pixels=self.settings.max_pixels)
        except ImageReadError as e:
            return {**base, "status": "quarantined", "reason": e.reason, "detail": e.detail, "phash": None}
        h = phash(image)
        if clusters is not None:
            linked = clusters.add(item.source_id, h)
            if linked is not None:
                return {**base, "status": "duplicate", "reason": "duplicate", "detail": f"of {linked}",
                        "phash": to_hex(h)}
        try:
            entry = {**base, **self._evaluate(item, image, h)}
        except Exception as e:  # one bad image must not stop the batch; a broken setup must
            self.failed.append({"path": item.path, "reason": "processing_error", "detail": f"{type(e).__name__}: {e}"})
            self.summary.failed += 1
            if self.successes == 0 and len(self.failed) >= MAX_ERRORS_WITHOUT_SUCCESS:
                raise RuntimeError(
                    f"curate: the first {len(self.failed)} images all failed in processing (last: {item.path}); "
                    "check the quality metrics and object models"
                ) from e
            return None
        self.successes += 1
        return entry


def _load_progress(out_dir: Path, fingerprint: dict) -> dict[str, dict]:
    """Entries of earlier runs with the same settings, by source_id (a later line wins)."""
    log = out_dir / "progress.jsonl"
    meta_path = out_dir / "progress.meta.json"
    if log.exists():
        meta = read_json(meta_path) if meta_path.exists() else None
        if meta != {"settings": fingerprint}:
            stale = out_dir / "progress.stale.jsonl"
            log.replace(stale)
            warnings.warn(f"{out_dir}: curation settings changed since the last run; starting over "
                          f"(old progress log moved to {stale.name})", stacklevel=3)
    atomic_write_json(meta_path, {"settings": fingerprint})
    if not log.exists():
        return {}
    return {e["source_id"]: e for e in read_jsonl(log)}


def curate(sources, out_dir: str | Path, *, settings: CurateSettings | None = None,
           quality_filter: Callable | None = None, object_backend: Callable | None = None) -> CurateSummary:
    """Curate `sources` (SourceItems, or iterables of them) into `out_dir`; see the module docstring.

    `quality_filter(image) -> QualityResult` and `object_backend(item, image) -> ObjectResult` default to the
    ones `settings` describes.
    """
    settings = settings or CurateSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = _flatten(sources)
    by_id: dict[str, SourceItem] = {}
    for item in items:
        if item.source_id in by_id:
            raise ValueError(f"source id {item.source_id!r} comes twice ({by_id[item.source_id].path} and "
                             f"{item.path}); give the sources different id prefixes")
        by_id[item.source_id] = item
    mine = sorted((it for it in items if stable_shard(shard_key(it), settings.num_shards) == settings.shard_index),
                  key=lambda it: it.source_id)

    quality_filter = quality_filter or QualityFilter(settings.quality, device=settings.device)
    if object_backend is None:
        vlm = settings.vlm
        if vlm is not None and vlm.device != settings.device:
            vlm = VlmSettings(**{**asdict(vlm), "device": settings.device})
        object_backend = make_object_backend(settings.objects_backend, settings.rules, vlm)
    curator = _Curator(out_dir, settings, quality_filter, object_backend)
    summary = curator.summary
    summary.total = len(mine)
    done = _load_progress(out_dir, settings.fingerprint())

    entries: dict[str, dict] = {}
    clusters = DuplicateClusters(settings.dedup_max_distance)
    bar = _progress(mine, settings.show_progress, f"curate shard {settings.shard_index}/{settings.num_shards}")
    for item in bar:
        prev = done.get(item.source_id)
        if prev is not None and prev.get("stamp") == _stamp(item) and prev.get("path") == item.path:
            entries[item.source_id] = prev
            if prev.get("phash"):
                clusters.add(item.source_id, prev["phash"])
            summary.resumed += 1
            continue
        entry = curator.process(item, clusters)
        summary.processed += 1
        if entry is not None:
            append_jsonl(curator.log_path, entry)
            entries[item.source_id] = entry

    # A duplicate whose earlier twin has since changed can be first of its cluster now: finish it.
    for sid in clusters.firsts():
        entry = entries.get(sid)
        if entry is not None and entry["status"] == "duplicate":
            new = curator.process(by_id[sid], None)
            summary.processed += 1
            if new is not None:
                append_jsonl(curator.log_path, new)
                entries[sid] = new

    _write_outputs(out_dir, mine, entries, clusters, curator.failed, settings, summary)
    return summary


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", leave=False)


def _write_outputs(out_dir: Path, items, entries, clusters, failed, settings, summary: CurateSummary) -> None:
    firsts = set(clusters.firsts())
    kept, quarantine, rejected, hashes = [], [], [], []
    for item in items:
        e = entries.get(item.source_id)
        if e is None:
            continue  # failed this run; listed in quarantine below
        if e.get("phash"):
            hashes.append({"source_id": item.source_id, "phash": e["phash"]})
        status = e["status"]
        if status == "quarantined":
            quarantine.append((e["path"], e["reason"], e.get("detail", "")))
            summary.quarantined += 1
        elif item.source_id not in firsts or status == "duplicate":
            rep = clusters.representative(item.source_id)
            rejected.append((item.source_id, e["path"], "duplicate", f"of {rep}"))
            summary.duplicates += 1
        elif status == "kept":
            kept.append(e["record"])
            summary.kept += 1
        else:
            rejected.append((item.source_id, e["path"], e["reason"], e.get("detail", "")))
            if status == "rejected_quality":
                summary.rejected_quality += 1
            else:
                summary.rejected_objects += 1
    quarantine += [(f["path"], f["reason"], f["detail"]) for f in failed]
    write_jsonl(out_dir / "curated.jsonl", kept)
    write_jsonl(out_dir / "phashes.jsonl", hashes)
    atomic_write_text(out_dir / "quarantine.tsv", "".join(
        "\t".join(_clean(v) for v in row) + "\n" for row in sorted(quarantine)))
    atomic_write_text(out_dir / "rejected.tsv", "".join(
        "\t".join(_clean(v) for v in row) + "\n" for row in sorted(rejected)))
    atomic_write_json(out_dir / "summary.json", {**asdict(summary), "settings": settings.fingerprint()})


def merge_curated(shard_files: Iterable[str | Path], out_path: str | Path) -> int:
    """Merge the shards' `curated.jsonl` into `out_path` (sorted by source_id); returns the record count.

    Near duplicates are re-clustered over every shard's `phashes.jsonl` (beside each curated.jsonl), so a
    duplicate pair split across shards keeps only its first image, as an unsharded run would. All shards of
    one split must be given, with the same settings.
    """
    shard_files = [Path(p) for p in shard_files]
    if not shard_files:
        raise ValueError("merge_curated: no shard files given")
    settings, seen_shards = None, {}
    for path in shard_files:
        summary_path = path.parent / "summary.json"
        if not summary_path.exists():
            raise FileNotFoundError(f"{summary_path}: missing; {path} must be a curate output folder's curated.jsonl")
        s = read_json(summary_path)["settings"]
        index = s["shard_index"]
        rest = {k: v for k, v in s.items() if k not in ("shard_index",)}
        if settings is None:
            settings = rest
        elif rest != settings:
            raise ValueError(f"{summary_path}: settings differ from {shard_files[0].parent / 'summary.json'}; "
                             "curate every shard with the same settings")
        if index in seen_shards:
            raise ValueError(f"shard {index} given twice: {seen_shards[index]} and {path}")
        seen_shards[index] = path
    missing = sorted(set(range(settings["num_shards"])) - set(seen_shards))
    if missing:
        raise ValueError(f"merge_curated: shards {missing} of {settings['num_shards']} are missing")

    hashes, records = [], {}
    for path in shard_files:
        hashes += read_jsonl(path.parent / "phashes.jsonl")
        for lineno, rec in enumerate(read_jsonl(path), 1):
            sid = rec.get("source_id")
            if sid in records:
                raise ValueError(f"{path}: line {lineno}: source_id {sid!r} is also in another shard")
            records[sid] = rec
    clusters = DuplicateClusters(settings["dedup_max_distance"])
    for h in sorted(hashes, key=lambda r: r["source_id"]):
        clusters.add(h["source_id"], h["phash"])
    firsts = set(clusters.firsts())
    return write_jsonl(Path(out_path), [records[sid] for sid in sorted(records) if sid in firsts])


# ------------------------------------------------------------------------------------------------ command line


def build_sources(src_dir: str | Path, out_dir: str | Path, *, coco: str | None = None, coco_source: str = "coco",
                  coco_prefix: str = "coco", videos: bool = True, keyframes=None,
                  select_video: Callable[[str], bool] | None = None) -> list:
    """The CLI's sources: a COCO file over `src_dir`, or every image (and video, keyframes into
    `out_dir/frames`) under `src_dir`."""
    from refine_iqa.data.sources import iter_coco, iter_folder, iter_videos

    if coco:
        return [iter_coco(coco, src_dir, source=coco_source, prefix=coco_prefix)]
    sources = [iter_folder(src_dir)]
    if videos:
        sources.append(iter_videos(src_dir, Path(out_dir) / "frames", keyframes, select=select_video))
    return sources


def register_cli(subparsers) -> None:
    """Add `curate` and `curate-merge` to the `refine-iqa` command."""
    p = subparsers.add_parser("curate", help="curate source images: dedup, quality filter, objects -> curated.jsonl")
    p.add_argument("src_dir", metavar="SRC_DIR", help="image folder (also scanned for videos), or the COCO image root")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--coco", metavar="ANN", help="COCO instances JSON; its images are read from SRC_DIR")
    p.add_argument("--coco-source", default="coco", help="source name written in records (e.g. scenes)")
    p.add_argument("--coco-prefix", default="coco", help="source id prefix ('' for the bare file name)")
    p.add_argument("--no-videos", action="store_true", help="ignore video files in SRC_DIR")
    p.add_argument("--keyframes", type=int, default=8, help="keyframes per video (the most, in scene mode)")
    p.add_argument("--keyframe-mode", choices=("even", "scene"), default="even")
    p.add_argument("--scene-threshold", type=float, default=30.0, help="scene mode: mean abs grey change, 0-255")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--dedup-distance", type=int, default=4, help="pHash bits within which images are duplicates")
    p.add_argument("--quality-metric", action="append", default=[], metavar="NAME:THRESH[:higher|lower[:WEIGHTS]]",
                   help="pyiqa no-reference metric that must pass (repeat for several)")
    p.add_argument("--objects", choices=("annotations", "vlm"), default="annotations")
    p.add_argument("--vlm", metavar="DIR", help="local vision-language model folder (objects=vlm)")
    p.add_argument("--detector", metavar="DIR", help="local zero-shot detector folder (objects=vlm)")
    p.add_argument("--max-iou", type=float, default=0.3)
    p.add_argument("--min-box-side", type=int, default=8)
    p.add_argument("--max-box-frac", type=float, default=0.9)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_curate_cli)

    m = subparsers.add_parser("curate-merge", help="merge sharded curate outputs into one curated.jsonl")
    m.add_argument("out_path", metavar="OUT_JSONL")
    m.add_argument("shard_files", metavar="SHARD_CURATED_JSONL", nargs="+")
    m.set_defaults(func=run_merge_cli)


def run_curate_cli(args) -> int:
    from refine_iqa.data.sources import KeyframeSettings

    vlm = None
    if args.objects == "vlm":
        if not args.vlm or not args.detector:
            raise SystemExit("curate: --objects vlm needs --vlm DIR and --detector DIR")
        vlm = VlmSettings(args.vlm, args.detector, device=args.device)
    settings = CurateSettings(
        dedup_max_distance=args.dedup_distance,
        quality=[QualityMetricSpec.parse(q) for q in args.quality_metric],
        objects_backend=args.objects,
        rules=ObjectRules(max_iou=args.max_iou, min_box_side=args.min_box_side, max_box_frac=args.max_box_frac),
        vlm=vlm, shard_index=args.shard, num_shards=args.shards, device=args.device,
        show_progress=not args.no_progress,
    )
    keyframes = KeyframeSettings(mode=args.keyframe_mode, count=args.keyframes, scene_threshold=args.scene_threshold)
    sources = build_sources(
        args.src_dir, args.out_dir, coco=args.coco, coco_source=args.coco_source, coco_prefix=args.coco_prefix,
        videos=not args.no_videos, keyframes=keyframes,
        select_video=lambda vid: stable_shard(vid, args.shards) == args.shard,
    )
    s = curate(sources, args.out_dir, settings=settings)
    print(f"curate: {s.kept} kept of {s.total} (quarantined {s.quarantined}, duplicates {s.duplicates}, "
          f"quality {s.rejected_quality}, objects {s.rejected_objects}, failed {s.failed}; "
          f"processed {s.processed}, resumed {s.resumed}) -> {Path(args.out_dir) / 'curated.jsonl'}")
    return 0


def run_merge_cli(args) -> int:
    n = merge_curated(args.shard_files, args.out_path)
    print(f"curate-merge: {n} records -> {args.out_path}")
    return 0
