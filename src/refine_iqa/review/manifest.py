"""Read the Refine-Perception manifest for review: validated items, display labels, batch selection.

Only what the review screen needs is checked here (id, image paths, size, object, box, family, level); every
error names the manifest line and the field so the assemble step's output can be fixed.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from refine_iqa.distortions.spec import FAMILY_DISPLAY_NAMES
from refine_iqa.prompts import SEVERITY_WORDS
from refine_iqa.review.qc import box_area_fraction

# One source for the names: the distortion catalogue (families) and the prompts (severity words).
FAMILY_NAMES = FAMILY_DISPLAY_NAMES
FAMILY_LIST = tuple(FAMILY_NAMES)
FAMILY_CODES = {f: k for k, f in enumerate(FAMILY_LIST)}  # one byte per item in memory
STATUSES = ("pending", "accepted", "rejected")  # review.status in the manifest

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


class _Fields(NamedTuple):
    """One record's checked fields, image paths still as written (no Path objects: 2 per item cost 1 s at 20k)."""
    id: str
    ref_path: str
    dist_path: str
    width: int
    height: int
    object: str
    objects: list
    box: tuple[int, int, int, int]
    family: str
    type: str
    level: int
    status: str


def _check_record(rec: object, where: str) -> _Fields:
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
    if status not in STATUSES:
        raise ManifestError(f"{where}: field 'review.status' must be pending, accepted or rejected, got {status!r}")
    return _Fields(item_id, _str_field(rec, "ref_path", where), _str_field(rec, "dist_path", where), width, height,
                   _str_field(rec, "object", where), objects, (x1, y1, x2, y2), family,
                   _str_field(rec, "type", where), level, status)


def parse_item(rec: object, path: Path, lineno: int, image_root: Path) -> ReviewItem:
    """Validate one manifest record (`path` and `lineno` only name it in messages)."""
    f = _check_record(rec, f"{path}: line {lineno}")

    def resolve(p: str) -> Path:
        p = Path(p)
        return p if p.is_absolute() else image_root / p

    return ReviewItem(id=f.id, ref_path=resolve(f.ref_path), dist_path=resolve(f.dist_path), width=f.width,
                      height=f.height, object=f.object, objects=tuple(f.objects), box=f.box, family=f.family,
                      type=f.type, level=f.level, status=f.status, line=lineno)


def _parse_line(raw: bytes, where: str) -> object:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else f"not UTF-8: {e.reason}"
        raise ManifestError(f"{where}: invalid JSON ({msg}); fix or delete that line") from None


class ManifestIndex:
    """The manifest's items, checked once, with only what the review needs of each in memory.

    Per item: its id, the byte offset and number of its line, and one byte each for its family and status,
    plus the box's share of the image (about 150 bytes in all, against ~7 KB as a parsed record); an item's
    other fields are read from its line when asked for (`item`), about 0.1 ms. Reading also checks that the
    file is the one indexed (same size and modification time) and that the line still holds that id, so an
    edited manifest stops the review with a clear message instead of showing the wrong image.
    """

    def __init__(self, path: str | Path, image_root: str | Path | None = None, *, check_files: bool = True):
        self.path = Path(path)
        self.root = Path(image_root) if image_root is not None else Path.cwd()
        if not self.path.is_file():
            raise ManifestError(f"{self.path}: manifest not found (run the assemble step first, or pass the right "
                                "path)")
        self.ids: list[str] = []
        self._offsets = array("q")
        self._lines = array("q")
        self._family = bytearray()
        self._status = bytearray()
        self._box_frac = array("d")
        position: dict[str, int] = {}
        missing: list[str] = []
        n_missing = 0
        last_ref = None  # the items of one source share a reference: checked once
        root = str(self.root)
        with open(self.path, "rb") as f:
            self._stamp = _stamp(os.fstat(f.fileno()))
            offset = 0
            for lineno, raw in enumerate(f, 1):
                start, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                where = f"{self.path}: line {lineno}"
                rec = _check_record(_parse_line(raw, where), where)
                first = position.setdefault(rec.id, len(self.ids))
                if first != len(self.ids):
                    raise ManifestError(f"{where}: id {rec.id!r} already used on line {self._lines[first]}; "
                                        "ids must be unique")
                self.ids.append(rec.id)
                self._offsets.append(start)
                self._lines.append(lineno)
                self._family.append(FAMILY_CODES[rec.family])
                self._status.append(STATUSES.index(rec.status))
                self._box_frac.append(box_area_fraction(rec.box, rec.width, rec.height))
                if check_files and rec.status != "rejected":
                    for p in (rec.dist_path, rec.ref_path):
                        if p == last_ref:
                            continue
                        full = p if os.path.isabs(p) else os.path.join(root, p)
                        if os.path.isfile(full):
                            last_ref = rec.ref_path if p == rec.ref_path else last_ref
                        else:
                            n_missing += 1
                            if len(missing) < 5:
                                missing.append(f"line {lineno}: {full}")
        del position  # the review session keeps its own id -> position map for its batch
        if not self.ids:
            raise ManifestError(f"{self.path}: the manifest has no items")
        if n_missing:
            shown = "; ".join(missing) + (f"; and {n_missing - 5} more" if n_missing > 5 else "")
            raise ManifestError(f"{self.path}: {n_missing} image file(s) missing: {shown} "
                                f"(relative paths are read from {self.root}; pass --image-root)")

    def __len__(self) -> int:
        return len(self.ids)

    def family_code(self, i: int) -> int:
        return self._family[i]

    def status(self, i: int) -> str:
        return STATUSES[self._status[i]]

    def box_fraction(self, i: int) -> float:
        return self._box_frac[i]

    def line(self, i: int) -> int:
        return self._lines[i]

    def item(self, i: int) -> ReviewItem:
        """The i-th item (manifest order), read from its line."""
        where = f"{self.path}: line {self._lines[i]}"
        with open(self.path, "rb") as f:
            if _stamp(os.fstat(f.fileno())) != self._stamp:
                raise ManifestError(f"{self.path}{_CHANGED}")
            f.seek(self._offsets[i])
            raw = f.readline()
        item = parse_item(_parse_line(raw, where), self.path, self._lines[i], self.root)
        if item.id != self.ids[i]:
            raise ManifestError(f"{where}: id {item.id!r} where {self.ids[i]!r} was read: the manifest{_CHANGED}")
        return item


_CHANGED = (" changed on disk after the review server read it; restart the server so that it reads the "
            "manifest again")


def _stamp(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class BatchItems:
    """The items under review, in batch order: ids and family codes in memory, an item read on demand.

    `BatchItems.of(index, positions)` reads items from the manifest (the review service);
    `BatchItems.from_items(items)` holds given ReviewItems (tests and small lists).
    """

    def __init__(self, ids: list[str], family_codes: bytes, load: Callable[[int], ReviewItem]):
        self.ids = ids
        self.index = {item_id: i for i, item_id in enumerate(ids)}
        self._family = bytes(family_codes)
        self._load = load

    @classmethod
    def from_items(cls, items: Sequence[ReviewItem]) -> BatchItems:
        items = list(items)
        return cls([it.id for it in items], bytes(FAMILY_CODES[it.family] for it in items), items.__getitem__)

    @classmethod
    def of(cls, index: ManifestIndex, positions: Sequence[int]) -> BatchItems:
        return cls([index.ids[p] for p in positions], bytes(index.family_code(p) for p in positions),
                   lambda i: index.item(positions[i]))

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        return iter(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.index

    def __getitem__(self, item_id: str) -> ReviewItem:
        return self._load(self.index[item_id])

    def family(self, item_id: str) -> str:
        return FAMILY_LIST[self._family[self.index[item_id]]]

    def families(self):
        """Family of each item, in batch order."""
        return (FAMILY_LIST[c] for c in self._family)


def load_manifest(path: str | Path, image_root: str | Path | None = None, *,
                  check_files: bool = True) -> list[ReviewItem]:
    """All items of `manifest.jsonl`; relative image paths are resolved against `image_root` (default: cwd).

    Holds every item in memory: the review service uses `ManifestIndex` instead.
    """
    index = ManifestIndex(path, image_root, check_files=check_files)
    return [index.item(i) for i in range(len(index))]


def check_batch_name(batch: str) -> str:
    if not isinstance(batch, str) or not _BATCH_NAME.match(batch):
        raise ValueError(f"batch name {batch!r}: use 1-64 letters, digits, '.', '_', '-' or '/' "
                         "(for example 'all', 'alice-1' or '2/5')")
    return batch


def batch_range(n_items: int, batch: str) -> tuple[int, int]:
    """[start, stop) of one batch in manifest order: 'K/N' is the K-th of N contiguous, near-equal slices;
    any other name takes the whole manifest."""
    check_batch_name(batch)
    m = _BATCH_SLICE.match(batch)
    if not m:
        return 0, n_items
    k, n = int(m.group(1)), int(m.group(2))
    if k > n:
        raise ValueError(f"batch {batch!r}: slice number {k} is larger than the slice count {n}")
    if n > n_items:
        raise ValueError(f"batch {batch!r}: {n} slices asked for but the manifest has only {n_items} items")
    return (k - 1) * n_items // n, k * n_items // n


def select_batch(items: list[ReviewItem], batch: str) -> list[ReviewItem]:
    """The items of one batch (see `batch_range`)."""
    start, stop = batch_range(len(items), batch)
    return list(items[start:stop])


def batch_slug(batch: str) -> str:
    """A file-name-safe form of a batch name ('2/5' -> '2-of-5')."""
    m = _BATCH_SLICE.match(batch)
    if m:
        return f"{m.group(1)}-of-{m.group(2)}"
    return check_batch_name(batch).replace("/", "_")
