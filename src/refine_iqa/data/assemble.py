"""Refine-Perception assembly: curated sources -> one distorted copy per box -> manifest, QC, review, split.

Every random choice for an item (distortion type, level, the distortion's own noise) comes from a seed
derived from (global seed, item id) through SHA-256, so results never depend on processing order, on
Python's hash randomisation or on how many shards share the work. Record formats: docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refine_iqa.io_utils import append_jsonl, atomic_path, exif_orientation, load_rgb, read_jsonl, save_image, write_jsonl

SAMPLE_BY = ("type", "family")
REVIEW_MODES = ("manual", "auto")
REVIEW_STATUSES = ("pending", "accepted", "rejected")
RULE_TOO_SMALL = "box_too_small"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHARD_NAME = re.compile(r"^shard-(\d+)-of-(\d+)\.jsonl$")
MANIFEST_FIELDS = ("id", "source_id", "source", "ref_path", "dist_path", "width", "height", "objects", "object",
                   "box", "family", "type", "level", "params", "seed", "quality", "split", "review")


@dataclass(frozen=True)
class SynthesisSettings:
    """How distorted copies are drawn, checked and split (params.yaml: `synthesis.*`)."""

    seed: int = 0
    sample_by: str = "type"  # "type": uniform over all types; "family": uniform family, then uniform type in it
    level_weights: tuple[float, ...] | None = None  # relative weights of levels 1..5; None = uniform
    families: tuple[str, ...] | None = None  # catalogue families drawn from (e.g. ("darken", "brighten")); None = all
    max_boxes_per_image: int | None = None  # cap on distorted copies per source image; None = one per object
    max_box_area_frac: float = 0.9  # QC: boxes covering more of the image are rejected (paper: 90%)
    min_box_side: int = 8  # QC: boxes with a shorter side (pixels) are rejected
    min_box_area_frac: float = 0.002  # QC: boxes covering less of the image are rejected
    review_mode: str = "manual"  # "manual": items start pending; "auto": accepted by "auto"
    test_size: int | float = 1500  # test items: a count, or a fraction in (0, 1)

    def __post_init__(self):
        if self.sample_by not in SAMPLE_BY:
            raise ValueError(f"synthesis.sample_by must be one of {SAMPLE_BY}, got {self.sample_by!r}")
        if self.review_mode not in REVIEW_MODES:
            raise ValueError(f"synthesis.review_mode must be one of {REVIEW_MODES}, got {self.review_mode!r}")
        if self.level_weights is not None:
            w = list(self.level_weights)
            if len(w) != 5 or any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
                raise ValueError(f"synthesis.level_weights must be 5 non-negative numbers with a positive sum "
                                 f"(levels 1..5), got {self.level_weights!r}")
        if self.families is not None:
            known = sorted({s.family for s in importlib.import_module("refine_iqa.distortions").catalog()})
            bad = [f for f in self.families if f not in known]
            if not self.families or bad or len(set(self.families)) != len(self.families):
                raise ValueError(f"synthesis.families must be a non-empty list of distinct catalogue families "
                                 f"{known} (or null for all), got {list(self.families)!r}")
        if self.max_boxes_per_image is not None and self.max_boxes_per_image < 1:
            raise ValueError(f"synthesis.max_boxes_per_image must be >= 1 or null, got {self.max_boxes_per_image}")
        if not 0 < self.max_box_area_frac <= 1:
            raise ValueError(f"synthesis.max_box_area_frac must be in (0, 1], got {self.max_box_area_frac}")
        if self.min_box_side < 1 or not 0 <= self.min_box_area_frac < self.max_box_area_frac:
            raise ValueError("synthesis.min_box_side must be >= 1 and synthesis.min_box_area_frac in "
                             f"[0, max_box_area_frac), got {self.min_box_side}, {self.min_box_area_frac}")
        _check_test_size(self.test_size)

    @property
    def rule_too_large(self) -> str:
        return f"box_over_{round(self.max_box_area_frac * 100)}pct"


def stable_seed(*parts) -> int:
    """A seed in [0, 2**32) from the parts' text; identical on every machine, run and Python version."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")


# ----------------------------------------------------------------------------------------------------------
# curated input


def validate_curated_record(rec: Mapping, where: str) -> None:
    """Raise ValueError naming `where` (file:line or source id) and the bad field."""
    if not isinstance(rec, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    for key in ("source_id", "source", "path", "width", "height", "objects"):
        if key not in rec:
            raise ValueError(f"{where}: missing field {key!r} (see docs/ARCHITECTURE.md, curated source records)")
    sid = rec["source_id"]
    if not isinstance(sid, str) or not _SAFE_ID.match(sid):
        raise ValueError(f"{where}: source_id {sid!r} must be letters, digits, '.', '_' or '-' (it names files)")
    w, h = rec["width"], rec["height"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)):
        raise ValueError(f"{where}: width/height must be positive integers, got {w!r}, {h!r}")
    if not isinstance(rec["objects"], list):
        raise ValueError(f"{where}: objects must be a list of {{name, box}}")
    for k, obj in enumerate(rec["objects"]):
        if not isinstance(obj, Mapping) or not isinstance(obj.get("name"), str) or not obj["name"].strip():
            raise ValueError(f"{where}: objects[{k}] needs a non-empty string 'name'")
        box = obj.get("box")
        if not (isinstance(box, list) and len(box) == 4
                and all(isinstance(v, int) and not isinstance(v, bool) for v in box)):
            raise ValueError(f"{where}: objects[{k}].box must be 4 integers [x1, y1, x2, y2], got {box!r}")
        x1, y1, x2, y2 = box
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise ValueError(f"{where}: objects[{k}].box {box} is empty or outside the {w}x{h} image "
                             "(x2/y2 are exclusive); fix the curation output")


def read_curated(path: str | Path) -> list[dict]:
    """Read and validate `curated.jsonl`; errors name the file and line."""
    records = read_jsonl(path)
    # read_jsonl skips blank lines, so recover line numbers for messages by counting non-blank lines.
    lines = [i for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    seen: dict[str, int] = {}
    for rec, lineno in zip(records, lines):
        validate_curated_record(rec, f"{path}: line {lineno}")
        if rec["source_id"] in seen:
            raise ValueError(f"{path}: line {lineno}: source_id {rec['source_id']!r} repeats line "
                             f"{seen[rec['source_id']]}; source ids must be unique")
        seen[rec["source_id"]] = lineno
    return records


# ----------------------------------------------------------------------------------------------------------
# drawing distortions and QC


class _DistortionPool:
    """The catalogue in a fixed (sorted) order so that draws do not depend on the catalogue's listing order."""

    def __init__(self):
        # import_module (not `from refine_iqa import ...`) so a test can substitute the module in sys.modules.
        distortions = importlib.import_module("refine_iqa.distortions")
        self.lib = distortions
        specs = sorted(distortions.catalog(), key=lambda s: s.name)
        self.family_of = {s.name: s.family for s in specs}
        self.types = [s.name for s in specs]
        self.families = sorted(set(self.family_of.values()))
        self.types_in = {f: [t for t in self.types if self.family_of[t] == f] for f in self.families}

    def draw(self, seed: int, settings: SynthesisSettings) -> tuple[str, int]:
        rng = np.random.default_rng(seed)
        # a subset keeps the catalogue's sorted order, so each draw depends only on the settings and the seed
        families = self.families if settings.families is None else [f for f in self.families if f in settings.families]
        if settings.sample_by == "type":
            types = [t for t in self.types if self.family_of[t] in families]
            name = types[int(rng.integers(len(types)))]
        else:
            family = families[int(rng.integers(len(families)))]
            members = self.types_in[family]
            name = members[int(rng.integers(len(members)))]
        if settings.level_weights is None:
            level = int(rng.integers(1, 6))
        else:
            p = np.asarray(settings.level_weights, dtype=np.float64)
            level = int(rng.choice(5, p=p / p.sum())) + 1
        return name, level


def qc_review(box: Sequence[int], width: int, height: int, settings: SynthesisSettings) -> dict:
    """The initial review entry: rejected by an automatic rule, else pending (or accepted in auto mode)."""
    x1, y1, x2, y2 = box
    frac = (x2 - x1) * (y2 - y1) / float(width * height)
    if frac > settings.max_box_area_frac:
        return {"status": "rejected", "reason": f"box covers {frac:.1%} of the image "
                f"(limit {settings.max_box_area_frac:.0%})", "by": "auto", "rule": settings.rule_too_large}
    if min(x2 - x1, y2 - y1) < settings.min_box_side or frac < settings.min_box_area_frac:
        return {"status": "rejected", "reason": f"box {x2 - x1}x{y2 - y1} px covers {frac:.2%} of the image "
                f"(minimum side {settings.min_box_side} px, area {settings.min_box_area_frac:.2%})",
                "by": "auto", "rule": RULE_TOO_SMALL}
    if settings.review_mode == "auto":
        return {"status": "accepted", "reason": None, "by": "auto", "rule": None}
    return {"status": "pending", "reason": None, "by": None, "rule": None}


def chosen_objects(rec: Mapping, settings: SynthesisSettings) -> list[int]:
    """Indices of the objects that get a distorted copy (all, or a seeded subset when capped)."""
    n = len(rec["objects"])
    cap = settings.max_boxes_per_image
    if cap is None or n <= cap:
        return list(range(n))
    rng = np.random.default_rng(stable_seed(settings.seed, rec["source_id"], "objects"))
    return sorted(int(i) for i in rng.choice(n, size=cap, replace=False))


# ----------------------------------------------------------------------------------------------------------
# synthesis, sharding, merging


def shard_manifest_path(out_dir: str | Path, shard_index: int, num_shards: int) -> Path:
    return Path(out_dir) / "shards" / f"shard-{shard_index:03d}-of-{num_shards:03d}.jsonl"


def synthesize_shard(curated_records: Sequence[Mapping], out_dir: str | Path, shard_index: int, num_shards: int,
                     settings: SynthesisSettings, *, source_root: str | Path | None = None) -> Path:
    """Render this shard's sources (every `num_shards`-th by sorted source id) and write its shard manifest.

    Writes `out_dir/ref/<source_id>.(jpg|png)` once per source (a link to a JPEG/PNG source, see
    `_write_reference`), `out_dir/dist/<item id>.png` per copy and
    `out_dir/shards/shard-III-of-NNN.jsonl`; returns the shard manifest's path. Relative source paths are
    resolved against `source_root` (default: the working directory). Image paths in the records are
    `out_dir`-joined, as given (relative stays relative).
    """
    if not (isinstance(num_shards, int) and num_shards >= 1 and isinstance(shard_index, int)
            and 0 <= shard_index < num_shards):
        raise ValueError(f"shard_index must be in [0, num_shards) and num_shards >= 1, got {shard_index}/{num_shards}")
    seen = set()
    for k, rec in enumerate(curated_records):
        validate_curated_record(rec, f"curated record {k}")
        if rec["source_id"] in seen:
            raise ValueError(f"curated record {k}: source_id {rec['source_id']!r} is not unique")
        seen.add(rec["source_id"])
    out_dir = Path(out_dir)
    pool = _DistortionPool()
    ordered = sorted(curated_records, key=lambda r: r["source_id"])
    path = shard_manifest_path(out_dir, shard_index, num_shards)
    # A killed shard resumes: each finished source's records are appended here (its files are written
    # atomically before), and a re-run reuses those whose inputs and settings are unchanged. Removed once the
    # manifest is written, so a later run (new code, say) renders afresh.
    partial = path.with_suffix(".partial.jsonl")
    done = _load_partial(partial)
    records = []
    for rec in ordered[shard_index::num_shards]:
        key = _source_key(rec, settings, source_root)
        prev = done.get(rec["source_id"])
        if prev is not None and prev["key"] == key and all(
                Path(r[f]).is_file() for r in prev["records"] for f in ("ref_path", "dist_path")):
            records.extend(prev["records"])
            continue
        new = _synthesize_source(rec, out_dir, pool, settings, source_root)
        append_jsonl(partial, {"source_id": rec["source_id"], "key": key, "records": new})
        records.extend(new)
    records.sort(key=lambda r: r["id"])
    write_jsonl(path, records)
    partial.unlink(missing_ok=True)
    return path


def _load_partial(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    done = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the line being written when the job was killed
        done[entry["source_id"]] = entry
    return done


def _source_path(rec: Mapping, source_root) -> Path:
    src = Path(rec["path"])
    if not src.is_absolute() and source_root is not None:
        src = Path(source_root) / src
    return src


def _source_key(rec: Mapping, settings: SynthesisSettings, source_root) -> str:
    """What a source's rendered files depend on: its curated record, its file, the synthesis settings."""
    try:
        st = _source_path(rec, source_root).stat()
        stamp = [st.st_size, st.st_mtime_ns]
    except OSError:
        stamp = None
    text = json.dumps([dict(rec), stamp, repr(settings)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# Formats a reference may keep as it is: load_rgb reads the linked file to exactly the pixels the distorted
# copy was made from, because it is the very file those pixels came from.
_LINKABLE = {"JPEG": ".jpg", "PNG": ".png"}
PNG_COMPRESS_LEVEL = 1  # ~4x faster saves than Pillow's default 6 for ~15% larger files (docs/synthesis.md)


def _write_reference(src: Path, image: np.ndarray, out_stem: Path) -> Path:
    """The reference image: the source file itself (hard link, else a copy) when it is a JPEG or PNG whose
    pixels need no EXIF rotation; otherwise a PNG of the decoded pixels. Keeping the original JPEG bytes
    avoids re-encoding an already-lossy image (and ~7x the disk); the model and the review app read it the
    same way."""
    from PIL import Image

    fmt = None
    try:
        with Image.open(src) as im:
            if exif_orientation(im) == 1 and im.mode in ("RGB", "L"):
                fmt = im.format
    except OSError:
        fmt = None
    if fmt in _LINKABLE:
        dst = out_stem.with_suffix(_LINKABLE[fmt])
        if dst.exists() and os.path.samefile(dst, src):
            return dst
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            Path(tmp).unlink(missing_ok=True)
            try:
                os.link(src, tmp)
            except OSError:  # another filesystem, or links not allowed: copy the bytes
                shutil.copyfile(src, tmp)
        return dst
    dst = out_stem.with_suffix(".png")
    save_image(dst, image, compress_level=PNG_COMPRESS_LEVEL)
    return dst


def _synthesize_source(rec: Mapping, out_dir: Path, pool: _DistortionPool, settings: SynthesisSettings,
                       source_root: str | Path | None) -> list[dict]:
    picks = chosen_objects(rec, settings)
    if not picks:
        return []
    src = _source_path(rec, source_root)
    image = load_rgb(src)
    h, w = image.shape[:2]
    if (w, h) != (rec["width"], rec["height"]):
        raise ValueError(f"{src}: image is {w}x{h} but curated record {rec['source_id']!r} says "
                         f"{rec['width']}x{rec['height']}; re-run curation")
    ref_path = _write_reference(src, image, out_dir / "ref" / rec["source_id"])
    names = [o["name"] for o in rec["objects"]]
    out = []
    for k in picks:
        item_id = f"{rec['source_id']}-o{k}"
        seed = stable_seed(settings.seed, item_id)
        name, level = pool.draw(seed, settings)
        box = list(rec["objects"][k]["box"])
        dist = pool.lib.apply(image, name, level, seed=seed, box=box)
        dist_path = out_dir / "dist" / f"{item_id}.png"
        save_image(dist_path, dist, compress_level=PNG_COMPRESS_LEVEL)
        out.append({
            "id": item_id, "source_id": rec["source_id"], "source": rec["source"],
            "ref_path": str(ref_path), "dist_path": str(dist_path), "width": w, "height": h,
            "objects": names, "object": names[k], "box": box, "family": pool.family_of[name], "type": name,
            "level": level, "params": dict(pool.lib.params_for(name, level)), "seed": seed,
            "quality": dict(rec.get("quality") or {}), "split": None,
            "review": qc_review(box, w, h, settings),
        })
    return out


def merge_manifests(shard_paths: Iterable[str | Path], out_path: str | Path,
                    settings: SynthesisSettings) -> list[dict]:
    """Merge shard manifests (sorted by id), assign the split, write `out_path` atomically; returns records."""
    shard_paths = [Path(p) for p in shard_paths]
    if not shard_paths:
        raise ValueError("merge_manifests: no shard manifests given")
    _check_shard_set(shard_paths)
    origin: dict[str, Path] = {}
    records = []
    for path in shard_paths:
        for rec in read_jsonl(path):
            missing = [f for f in MANIFEST_FIELDS if f not in rec]
            if missing:
                raise ValueError(f"{path}: record {rec.get('id', '?')!r} lacks fields {missing}")
            if rec["id"] in origin:
                raise ValueError(f"item id {rec['id']!r} appears in both {origin[rec['id']]} and {path}; "
                                 "a shard was listed twice or the shard count changed: re-run synthesis")
            origin[rec["id"]] = path
            records.append(rec)
    records.sort(key=lambda r: r["id"])
    records = build_split(records, settings.test_size, settings.seed)
    write_jsonl(out_path, records)
    return records


def _check_shard_set(paths: list[Path]) -> None:
    """When the files carry standard shard names, insist that the set is complete and consistent."""
    parsed = [_SHARD_NAME.match(p.name) for p in paths]
    if not all(parsed):
        return
    totals = {int(m.group(2)) for m in parsed}
    indices = sorted(int(m.group(1)) for m in parsed)
    if len(totals) != 1 or indices != list(range(totals.pop())):
        raise ValueError(f"shard manifests {[p.name for p in paths]} are not one complete set "
                         "shard-000-of-NNN .. shard-(NNN-1)-of-NNN")


# ----------------------------------------------------------------------------------------------------------
# review and split


def apply_review_decisions(records: Sequence[Mapping], decisions: Mapping[str, Mapping]) -> list[dict]:
    """Return copies of `records` with reviewer decisions applied (id -> {status, reason, by})."""
    known = {r["id"] for r in records}
    unknown = sorted(set(decisions) - known)
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise ValueError(f"review decisions name {len(unknown)} item id(s) not in the manifest: {shown}; "
                         "the decisions file belongs to another manifest or the manifest was rebuilt")
    for item_id, d in decisions.items():
        if not isinstance(d, Mapping) or d.get("status") not in ("accepted", "rejected"):
            raise ValueError(f"review decision for {item_id!r}: status must be 'accepted' or 'rejected', got "
                             f"{d.get('status') if isinstance(d, Mapping) else d!r}")
    out = []
    for rec in records:
        rec = dict(rec)
        d = decisions.get(rec["id"])
        if d is not None:
            rec["review"] = {"status": d["status"], "reason": d.get("reason"), "by": d.get("by") or "reviewer",
                             "rule": d.get("rule")}
        out.append(rec)
    return out


def _check_test_size(test_size) -> None:
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise ValueError(f"synthesis.test_size must be a count or a fraction in (0, 1), got {test_size!r}")
    if isinstance(test_size, float) and not 0 < test_size < 1:
        raise ValueError(f"synthesis.test_size as a fraction must be in (0, 1), got {test_size}")
    if isinstance(test_size, int) and test_size < 0:
        raise ValueError(f"synthesis.test_size must be >= 0, got {test_size}")


def build_split(records: Sequence[Mapping], test_size: int | float, seed: int, *,
                include_pending: bool = True) -> list[dict]:
    """Copies of `records` with `split` set: stratified by distortion type over eligible items.

    Eligible: accepted items, plus pending ones when `include_pending`; the rest get split None. Each type's
    test count is its proportional share of the test size (largest-remainder rounding, ties broken by a
    seeded draw), so every type's share of test differs from its share of train by less than
    1/n_test + 1/n_train. Which items of a type go to test is a seeded draw over its sorted ids.
    """
    _check_test_size(test_size)
    ok = {"accepted", "pending"} if include_pending else {"accepted"}
    eligible = [r for r in records if r["review"]["status"] in ok]
    n = len(eligible)
    n_test = test_size if isinstance(test_size, int) else int(test_size * n + 0.5)
    if n_test > n:
        raise ValueError(f"test_size {test_size} asks for {n_test} test items but only {n} items are eligible "
                         "(not rejected); lower synthesis.test_size or give a fraction")
    groups: dict[str, list[str]] = {}
    for r in eligible:
        groups.setdefault(r["type"], []).append(r["id"])
    types = sorted(groups)
    # Exact integer largest-remainder apportionment of n_test over types.
    base = {t: len(groups[t]) * n_test // n for t in types} if n else {}
    rem = {t: len(groups[t]) * n_test % n for t in types} if n else {}
    tie = np.random.default_rng(stable_seed(seed, "split-ties")).permutation(len(types))
    order = sorted(range(len(types)), key=lambda i: (-rem[types[i]], tie[i]))
    for i in order[: n_test - sum(base.values())]:
        base[types[i]] += 1
    test_ids = set()
    for t in types:
        ids = sorted(groups[t])
        perm = np.random.default_rng(stable_seed(seed, "split", t)).permutation(len(ids))
        test_ids.update(ids[j] for j in perm[: base[t]])
    eligible_ids = {r["id"] for r in eligible}
    out = []
    for r in records:
        r = dict(r)
        r["split"] = ("test" if r["id"] in test_ids else "train") if r["id"] in eligible_ids else None
        out.append(r)
    return out


def summarise_qc(records: Iterable[Mapping], rules: Sequence[str] = ("box_over_90pct", RULE_TOO_SMALL)) -> dict:
    """Counts for the report: items per review status, removals per automatic rule and by reviewers."""
    out = {"total": 0, "pending": 0, "accepted": 0, "rejected": 0, "kept": 0,
           "removed_by_rule": {r: 0 for r in rules}, "removed_by_review": 0}
    for r in records:
        rev = r["review"]
        status = rev["status"]
        if status not in REVIEW_STATUSES:
            raise ValueError(f"item {r.get('id')!r}: review.status {status!r} is not one of {REVIEW_STATUSES}")
        out["total"] += 1
        out[status] += 1
        if status == "rejected":
            if rev.get("by") == "auto":
                rule = rev.get("rule") or "unspecified"
                out["removed_by_rule"][rule] = out["removed_by_rule"].get(rule, 0) + 1
            else:
                out["removed_by_review"] += 1
    out["kept"] = out["total"] - out["rejected"]
    return out
