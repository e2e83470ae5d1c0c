"""The review service behind the web app: manifest + batch + QC + decisions store + state machine.

No web code here: the Flask app (app.py) turns requests into `act` / `state` / `image_png` calls.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from refine_iqa.io_utils import ImageReadError, load_rgb
from refine_iqa.review.decisions import AUTO_BY, REASONS, DecisionStore
from refine_iqa.review.manifest import batch_slug, check_batch_name, load_manifest, select_batch
from refine_iqa.review.qc import (
    DEFAULT_MAX_BOX_FRAC,
    DEFAULT_MAX_DELETE_FRAC,
    check_fraction,
    max_deletions,
    oversize_rejection,
)
from refine_iqa.review.session import ReviewSession

ROLES = ("ref", "dist")
_IMAGE_CACHE_SIZE = 8  # a few encoded images, so "back" and the reference toggle answer at once


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
        batch_items = select_batch(load_manifest(manifest_path, settings.image_root), settings.batch)
        # Removed before review: already rejected in the manifest (the assemble step's QC) or oversized boxes.
        self.auto_rejected: dict[str, tuple[str, str]] = {}
        reviewable = []
        for it in batch_items:
            if it.status == "rejected":
                continue
            hit = oversize_rejection(it.box, it.width, it.height, settings.max_box_frac)
            if hit:
                self.auto_rejected[it.id] = hit
            else:
                reviewable.append(it)
        self.removed_in_manifest = sum(it.status == "rejected" for it in batch_items)
        self.session = ReviewSession(reviewable, max_deletions(len(reviewable), settings.max_delete_frac))
        self._lock = threading.Lock()
        self._images: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.store = DecisionStore(self.decisions_path, settings.batch)
        try:
            self._replay_and_record_auto()
        except BaseException:
            self.store.close()
            raise

    def _replay_and_record_auto(self) -> None:
        logged_auto = set()
        for ev in self.store.events:
            if ev["event"] == "auto":
                logged_auto.add(ev["item_id"])
                continue
            try:
                self.session.apply(ev)
            except KeyError as e:
                raise ValueError(f"{self.decisions_path}: {e.args[0]} (manifest {self.manifest_path}, batch "
                                 f"{self.settings.batch!r}): the decisions file belongs to another manifest, batch "
                                 "or QC setting") from None
        for item_id, (rule, reason) in self.auto_rejected.items():
            if item_id not in logged_auto:
                self.store.append({"event": "auto", "item_id": item_id, "status": "rejected", "reason": reason,
                                   "by": AUTO_BY, "rule": rule})

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
            x1, y1, x2, y2 = it.box
            url = f"/image/{quote(it.id, safe='')}"
            item = {"id": it.id, "object": it.object, "objects": list(it.objects), "family": it.family,
                    "family_name": it.family_name, "type": it.type, "level": it.level, "severity": it.severity,
                    "width": it.width, "height": it.height, "box": list(it.box),
                    "box_frac": round((x2 - x1) * (y2 - y1) / (it.width * it.height), 4),
                    "decision": s.decisions.get(it.id), "position": pool.index(it.id) + 1, "of": len(pool),
                    "dist_url": f"{url}/dist", "ref_url": f"{url}/ref"}
        can_delete = item is not None and s.can_delete()
        return {"batch": self.settings.batch, "reviewer": self.settings.reviewer, "mode": s.mode, "item": item,
                "progress": {**s.progress(), "auto_removed": len(self.auto_rejected),
                             "removed_in_manifest": self.removed_in_manifest,
                             "max_delete_frac": self.settings.max_delete_frac},
                "can_delete": can_delete,
                "limit_message": None if can_delete or item is None else s.limit_message(),
                "can_go_back": s.back_target() is not None,
                "reasons": REASONS, "decisions_file": str(self.decisions_path), "message": message}

    # ---- images --------------------------------------------------------------------------------------------------
    def image_png(self, item_id: str, role: str) -> bytes:
        """PNG bytes of an item's image, decoded and re-encoded: only manifest images of this batch are served.

        Raises KeyError for an unknown item or role, ImageUnavailable when the file cannot be used.
        """
        if role not in ROLES or item_id not in self.session.items:
            raise KeyError((item_id, role))
        key = (item_id, role)
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        it = self.session.items[item_id]
        path = it.ref_path if role == "ref" else it.dist_path
        try:
            rgb = load_rgb(path)
        except ImageReadError as e:
            raise ImageUnavailable(
                f"{e} (manifest line {it.line}); delete it with reason 'other' or fix the file") from None
        if rgb.shape[:2] != (it.height, it.width):
            raise ImageUnavailable(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]} but manifest line {it.line} "
                                   f"says {it.width}x{it.height}, so the box would be misplaced; rebuild the manifest")
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
        data = buf.getvalue()
        with self._lock:
            self._images[key] = data
            while len(self._images) > _IMAGE_CACHE_SIZE:
                self._images.popitem(last=False)
        return data
