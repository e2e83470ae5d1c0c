"""Read the Refine-Perception manifest for review: validated items, display labels, batch selection.

Only what the review screen needs is checked here (id, image paths, size, object, box, family, level); every
error names the manifest line and the field so the assemble step's output can be fixed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from refine_iqa.distortions.spec import FAMILY_DISPLAY_NAMES
from refine_iqa.prompts import SEVERITY_WORDS

# One source for the names: the distortion catalogue (families) and the prompts (severity words).
FAMILY_NAMES = FAMILY_DISPLAY_NAMES

_BATCH_SLICE = re.compile(r"^([1-9][0-9]*)/([1-9][0-9]*)$")
_BATCH_NAME = re.compile(r"^[A-Za-z0-9._/-]{1,64}$")


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class ReviewItem:
    id: str
    ref_path: Path
    dist_path: Path
    width: int
    height: int
    object: str
    objects: tuple[str, ...]
    box: tuple[int, int, int, int]
    family: str
    type: str
    level: int
    status: str  # review.status in the manifest: pending | accepted | rejected
    line: int  # 1-based manifest line, for messages

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES[self.family]

    @property
    def severity(self) -> str:
        return SEVERITY_WORDS[self.level]


def _int_field(rec: dict, key: str, where: str) -> int:
    v = rec.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ManifestError(f"{where}: field '{key}' must be an integer, got {v!r}")
    return v


def _str_field(rec: dict, key: str, where: str) -> str:
    v = rec.get(key)
    if not isinstance(v, str) or not v.strip():
        raise ManifestError(f"{where}: field '{key}' must be a non-empty string, got {v!r}")
    return v


def parse_item(rec: object, path: Path, lineno: int, image_root: Path) -> ReviewItem:
    """Validate one manifest record (`path` and `lineno` only name it in messages)."""
    where = f"{path}: line {lineno}"
    if not isinstance(rec, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    item_id = _str_field(rec, "id", where)
    width, height = _int_field(rec, "width", where), _int_field(rec, "height", where)
    if width < 1 or height < 1:
        raise ManifestError(f"{where}: width/height must be positive, got {width}x{height}")
    box = rec.get("box")
    if (not isinstance(box, list) or len(box) != 4
            or any(isinstance(v, bool) or not isinstance(v, int) for v in box)):
        raise ManifestError(f"{where}: field 'box' must be [x1, y1, x2, y2] integers, got {box!r}")
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise ManifestError(f"{where}: field 'box' {box} is empty or outside the {width}x{height} image "
                            "(need 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height)")
    family = _str_field(rec, "family", where)
    if family not in FAMILY_NAMES:
        raise ManifestError(f"{where}: field 'family' {family!r} is not one of {sorted(FAMILY_NAMES)}")
    level = _int_field(rec, "level", where)
    if level not in SEVERITY_WORDS:
        raise ManifestError(f"{where}: field 'level' must be 1..5, got {level}")
    objects = rec.get("objects", [])
    if not isinstance(objects, list) or not all(isinstance(o, str) for o in objects):
        raise ManifestError(f"{where}: field 'objects' must be a list of names, got {objects!r}")
    review = rec.get("review") or {}
    status = review.get("status", "pending") if isinstance(review, dict) else None
    if status not in ("pending", "accepted", "rejected"):
        raise ManifestError(f"{where}: field 'review.status' must be pending, accepted or rejected, got {status!r}")

    def resolve(key: str) -> Path:
        p = Path(_str_field(rec, key, where))
        return p if p.is_absolute() else image_root / p

    return ReviewItem(id=item_id, ref_path=resolve("ref_path"), dist_path=resolve("dist_path"), width=width,
                      height=height, object=_str_field(rec, "object", where), objects=tuple(objects),
                      box=(x1, y1, x2, y2), family=family, type=_str_field(rec, "type", where), level=level,
                      status=status, line=lineno)


def load_manifest(path: str | Path, image_root: str | Path | None = None, *,
                  check_files: bool = True) -> list[ReviewItem]:
    """All items of `manifest.jsonl`; relative image paths are resolved against `image_root` (default: cwd)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else Path.cwd()
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run the assemble step first, or pass the right path)")
    items: list[ReviewItem] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}: line {lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: invalid JSON ({e.msg}); fix or delete that line") from None
            item = parse_item(rec, path, lineno, root)
            if item.id in seen:
                raise ManifestError(f"{where}: id {item.id!r} already used on line {seen[item.id]}; ids must be unique")
            seen[item.id] = lineno
            items.append(item)
    if not items:
        raise ManifestError(f"{path}: the manifest has no items")
    if check_files:
        missing = [f"line {it.line}: {p}" for it in items if it.status != "rejected"
                   for p in (it.dist_path, it.ref_path) if not p.is_file()]
        if missing:
            shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ManifestError(f"{path}: {len(missing)} image file(s) missing: {shown} "
                                f"(relative paths are read from {root}; pass --image-root)")
    return items


def check_batch_name(batch: str) -> str:
    if not isinstance(batch, str) or not _BATCH_NAME.match(batch):
        raise ValueError(f"batch name {batch!r}: use 1-64 letters, digits, '.', '_', '-' or '/' "
                         "(for example 'all', 'alice-1' or '2/5')")
    return batch


def select_batch(items: list[ReviewItem], batch: str) -> list[ReviewItem]:
    """The items of one batch: 'K/N' is the K-th of N contiguous, near-equal slices in manifest order;
    any other name takes the whole manifest."""
    check_batch_name(batch)
    m = _BATCH_SLICE.match(batch)
    if not m:
        return list(items)
    k, n = int(m.group(1)), int(m.group(2))
    if k > n:
        raise ValueError(f"batch {batch!r}: slice number {k} is larger than the slice count {n}")
    if n > len(items):
        raise ValueError(f"batch {batch!r}: {n} slices asked for but the manifest has only {len(items)} items")
    start, stop = (k - 1) * len(items) // n, k * len(items) // n
    return list(items[start:stop])


def batch_slug(batch: str) -> str:
    """A file-name-safe form of a batch name ('2/5' -> '2-of-5')."""
    m = _BATCH_SLICE.match(batch)
    if m:
        return f"{m.group(1)}-of-{m.group(2)}"
    return check_batch_name(batch).replace("/", "_")
