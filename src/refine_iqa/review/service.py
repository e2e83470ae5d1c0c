"""The review service behind the web app: manifest + batch + QC + decisions store + state machine.

No web code here: the Flask app (app.py) turns requests into `act` / `state` / `image_file` calls.
"""

from __future__ import annotations

import io
import threading
from array import array
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from refine_iqa.io_utils import ImageReadError, exif_orientation, load_rgb
from refine_iqa.review.decisions import AUTO_BY, REASONS, DecisionStore
from refine_iqa.review.manifest import BatchItems, ManifestIndex, batch_range, batch_slug, check_batch_name
from refine_iqa.review.qc import (
    box_area_fraction,
    DEFAULT_MAX_BOX_FRAC,
    DEFAULT_MAX_DELETE_FRAC,
    check_fraction,
    max_deletions,
    oversize_rejection_of_fraction,
)
from refine_iqa.review.session import ReviewSession

ROLES = ("ref", "dist")
PREFETCH = 2  # the state names the next items' images; the page loads them ahead (review.js)
SERVED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}  # sent as stored; anything else is re-encoded


class ImageUnavailable(Exception):
    def __init__(self, message: str):
        super().__init__(message)


def default_decisions_path(manifest_path: str | Path, batch: str) -> Path:
    """<manifest folder>/review_decisions/<batch>.jsonl: one file per batch, so reviewers never share one."""
    return Path(manifest_path).parent / "review_decisions" / f"{batch_slug(batch)}.jsonl"


def check_reviewer(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 64 or any(c in name for c in "\n\r\t\0"):
        raise ValueError(f"reviewer name {name!r}: give 1-64 printable characters (--reviewer NAME)")
    if name == AUTO_BY:
        raise ValueError("reviewer name 'auto' is reserved for the automatic quality-control rules")
    return name.strip()


@dataclass(frozen=True)
class ReviewSettings:
    reviewer: str
    batch: str = "all"
    max_delete_frac: float = DEFAULT_MAX_DELETE_FRAC
    max_box_frac: float = DEFAULT_MAX_BOX_FRAC
    image_root: Path | None = None  # relative manifest paths are read from here (default: current folder)


class ReviewService:
    def __init__(self, manifest_path: str | Path, decisions_path: str | Path | None, settings: ReviewSettings):
        self.settings = settings
        check_reviewer(settings.reviewer)
        check_batch_name(settings.batch)
        check_fraction("max_delete_frac", settings.max_delete_frac, allow_zero=True)
        check_fraction("max_box_frac", settings.max_box_frac, allow_zero=False)
        self.manifest_path = Path(manifest_path)
        self.decisions_path = Path(decisions_path) if decisions_path else default_decisions_path(manifest_path,
                                                                                                   settings.batch)
        # In memory per item: the manifest index's few fields and the session's id and counters (issue 13:
        # the parsed manifest and the decision log's events held ~7 KB per item).
        index = ManifestIndex(manifest_path, settings.image_root)
        start, stop = batch_range(len(index), settings.batch)
        # Removed before review: already rejected in the manifest (the assemble step's QC) or oversized boxes.
        self.auto_rejected: dict[str, tuple[str, str]] = {}
        reviewable = array("q")
        self.removed_in_manifest = 0
        for i in range(start, stop):
            if index.status(i) == "rejected":
                self.removed_in_manifest += 1
                continue
            hit = oversize_rejection_of_fraction(index.box_fraction(i), settings.max_box_frac)
            if hit:
                self.auto_rejected[index.ids[i]] = hit
            else:
                reviewable.append(i)
        self.session = ReviewSession(BatchItems.of(index, reviewable),
                                     max_deletions(len(reviewable), settings.max_delete_frac))
        self._lock = threading.Lock()
        logged_auto: set[str] = set()
        # One pass over the decisions file: each event is checked and replayed as it is read.
        self.store = DecisionStore(self.decisions_path, settings.batch,
                                   on_event=lambda ev: self._replay(ev, logged_auto))
        try:
            for item_id, (rule, reason) in self.auto_rejected.items():
                if item_id not in logged_auto:
                    self.store.append({"event": "auto", "item_id": item_id, "status": "rejected",
                                       "reason": reason, "by": AUTO_BY, "rule": rule})
        except BaseException:
            self.store.close()
            raise

    def _replay(self, ev: dict, logged_auto: set[str]) -> None:
        if ev["event"] == "auto":
            logged_auto.add(ev["item_id"])
            return
        try:
            self.session.apply(ev)
        except KeyError as e:
            raise ValueError(f"{self.decisions_path}: {e.args[0]} (manifest {self.manifest_path}, batch "
                             f"{self.settings.batch!r}): the decisions file belongs to another manifest, batch "
                             "or QC setting") from None

    def close(self) -> None:
        self.store.close()

    # ---- actions -----------------------------------------------------------------------------------------------
    def act(self, action: str, item_id: str | None, reason: str | None = None) -> dict:
        """Check, write durably, then apply one reviewer action; return the new state. Raises ActionRefused."""
        with self._lock:
            self.session.check(action, item_id, reason)
            event = self.session.make_event(action, item_id, reason, self.settings.reviewer)
            self.store.append(event)  # durable before the screen moves on
            self.session.apply(event)
            return self._state()

    def state(self, message: str | None = None) -> dict:
        with self._lock:
            return self._state(message)

    def _state(self, message: str | None = None) -> dict:
        s = self.session
        item = None
        if s.cursor is not None:
            it = s.items[s.cursor]
            pool = s.order if s.mode == "review" else s.verify_list
            url = _image_url(it.id)
            item = {"id": it.id, "object": it.object, "objects": list(it.objects), "family": it.family,
                    "family_name": it.family_name, "type": it.type, "level": it.level, "severity": it.severity,
                    "width": it.width, "height": it.height, "box": list(it.box),
                    "box_frac": round(box_area_fraction(it.box, it.width, it.height), 4),
                    "decision": _copy(s.decisions.get(it.id)), "position": s.position(it.id, pool) + 1, "of": len(pool),
                    "dist_url": f"{url}/dist", "ref_url": f"{url}/ref"}
        can_delete = item is not None and s.can_delete()
        return {"batch": self.settings.batch, "reviewer": self.settings.reviewer, "mode": s.mode, "item": item,
                "progress": {**s.progress(), "auto_removed": len(self.auto_rejected),
                             "removed_in_manifest": self.removed_in_manifest,
                             "max_delete_frac": self.settings.max_delete_frac},
                "can_delete": can_delete,
                "limit_message": None if can_delete or item is None else s.limit_message(),
                "can_go_back": s.back_target() is not None,
                "prefetch": [f"{_image_url(i)}/{role}" for i in s.upcoming(PREFETCH) for role in ("dist", "ref")],
                "reasons": REASONS, "decisions_file": str(self.decisions_path), "message": message}

    # ---- images --------------------------------------------------------------------------------------------------
    def image_file(self, item_id: str, role: str) -> tuple[bytes, str]:
        """(bytes, MIME type) of an item's image: only manifest images of this batch are served.

        A PNG or JPEG whose header gives the manifest's size (and no EXIF rotation) is sent as the file's
        bytes, with no decoding; anything else is decoded and sent as PNG (the old way, 0.65-0.75 s at 1080p).
        Raises KeyError for an unknown item or role, ImageUnavailable when the file cannot be used.
        """
        if role not in ROLES or item_id not in self.session.items:
            raise KeyError((item_id, role))
        it = self.session.items[item_id]
        path = Path(it.ref_path if role == "ref" else it.dist_path)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:  # reads the header only
                fmt, size = im.format, im.size
                upright = exif_orientation(im) == 1
            data = path.read_bytes()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            fmt = None  # let load_rgb name the problem
        if fmt in SERVED_FORMATS and upright:
            if size != (it.width, it.height):
                raise ImageUnavailable(_size_message(path, size, it))
            return data, SERVED_FORMATS[fmt]
        return self._reencoded(it, path), "image/png"

    def image_png(self, item_id: str, role: str) -> bytes:
        """PNG bytes of an item's image, decoded and re-encoded (kept for callers that need PNG)."""
        if role not in ROLES or item_id not in self.session.items:
            raise KeyError((item_id, role))
        it = self.session.items[item_id]
        return self._reencoded(it, Path(it.ref_path if role == "ref" else it.dist_path))

    def _reencoded(self, it, path: Path) -> bytes:
        try:
            rgb = load_rgb(path)
        except ImageReadError as e:
            raise ImageUnavailable(
                f"{e} (manifest line {it.line}); delete it with reason 'other' or fix the file") from None
        if rgb.shape[:2] != (it.height, it.width):
            raise ImageUnavailable(_size_message(path, (rgb.shape[1], rgb.shape[0]), it))
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()


def _copy(d: dict | None) -> dict | None:
    return None if d is None else dict(d)  # the session's decision dicts are shared between items


def _image_url(item_id: str) -> str:
    return f"/image/{quote(item_id, safe='')}"


def _size_message(path: Path, size: tuple[int, int], it) -> str:
    return (f"{path}: image is {size[0]}x{size[1]} but manifest line {it.line} says {it.width}x{it.height}, "
            "so the box would be misplaced; rebuild the manifest")
