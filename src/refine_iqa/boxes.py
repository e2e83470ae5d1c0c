"""Boxes: original-image pixels <-> the pixels of the image as Qwen2.5-VL's processor resizes it, and IoU.

Convention (docs/ARCHITECTURE.md): [x1, y1, x2, y2], integer pixels, x2/y2 exclusive, so the box covers
image[y1:y2, x1:x2] and its area is (x2 - x1) * (y2 - y1). Sizes are (width, height) everywhere here.
The resize rule is the processor's own `smart_resize`, called, never re-derived.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

Box = tuple[int, int, int, int]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _size(wh: Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(wh, (str, bytes)) or not isinstance(wh, Sequence) or len(wh) != 2:
        raise ValueError(f"{name} must be (width, height), got {wh!r}")
    return _positive_int(wh[0], f"{name} width"), _positive_int(wh[1], f"{name} height")


def _box(box: Sequence[float], name: str) -> tuple[float, float, float, float]:
    if isinstance(box, (str, bytes)) or not isinstance(box, Sequence) or len(box) != 4:
        raise ValueError(f"{name} must be [x1, y1, x2, y2], got {box!r}")
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold four numbers, got {box!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must hold finite numbers, got {box!r}")
    return values  # type: ignore[return-value]


def smart_resize_size(
    width: int, height: int, *, factor: int = 28, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """(width, height) the Qwen2-VL image processor resizes a width x height image to.

    transformers 5.24's `smart_resize(height, width, factor, min_pixels, max_pixels)` takes height FIRST and
    returns (height, width); this wrapper takes and returns (width, height).
    """
    _positive_int(width, "width")
    _positive_int(height, "height")
    _positive_int(factor, "factor")
    _positive_int(min_pixels, "min_pixels")
    _positive_int(max_pixels, "max_pixels")
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")
    h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return int(w), int(h)


def _read(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def resize_settings(processor: Any) -> dict[str, int]:
    """min_pixels, max_pixels and factor (= patch_size * merge_size) of a processor or image processor.

    transformers 5.24 keeps the pixel bounds in `image_processor.size` as `shortest_edge` (min) and
    `longest_edge` (max); older releases had `min_pixels` / `max_pixels` attributes, read as a fallback.
    """
    image_processor = getattr(processor, "image_processor", processor)
    size = getattr(image_processor, "size", None)
    min_pixels = _read(size, "shortest_edge") or getattr(image_processor, "min_pixels", None)
    max_pixels = _read(size, "longest_edge") or getattr(image_processor, "max_pixels", None)
    patch_size = getattr(image_processor, "patch_size", None)
    merge_size = getattr(image_processor, "merge_size", None)
    missing = [
        n for n, v in (("min_pixels (size.shortest_edge)", min_pixels), ("max_pixels (size.longest_edge)", max_pixels),
                       ("patch_size", patch_size), ("merge_size", merge_size)) if not v
    ]
    if missing:
        raise ValueError(
            f"{type(image_processor).__name__} lacks {missing}: pass a Qwen2-VL / Qwen2.5-VL processor "
            "(or its image_processor)"
        )
    return {"min_pixels": int(min_pixels), "max_pixels": int(max_pixels),
            "factor": int(patch_size) * int(merge_size)}


def resized_size_from_processor(processor: Any, width: int, height: int) -> tuple[int, int]:
    """(width, height) of a width x height image as this processor will feed it to the model."""
    return smart_resize_size(width, height, **resize_settings(processor))


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _scale_box(box: Sequence[float], src_wh: Sequence[int], dst_wh: Sequence[int], src: str, dst: str) -> Box:
    x1, y1, x2, y2 = _box(box, "box")
    if x2 < x1 or y2 < y1:
        raise ValueError(f"box {list(box)!r} has x2 < x1 or y2 < y1: corners must be [x1, y1, x2, y2]")
    sw, sh = _size(src_wh, src)
    dw, dh = _size(dst_wh, dst)
    sx, sy = dw / sw, dh / sh
    nx1 = min(max(_round_half_up(x1 * sx), 0), dw)
    ny1 = min(max(_round_half_up(y1 * sy), 0), dh)
    nx2 = min(max(_round_half_up(x2 * sx), 0), dw)
    ny2 = min(max(_round_half_up(y2 * sy), 0), dh)
    # A non-empty box inside the image stays at least one pixel wide/high, so a thin object is never lost.
    if x2 > x1 and nx2 == nx1 and x2 > 0 and x1 < sw:
        nx1 = min(nx1, dw - 1)
        nx2 = nx1 + 1
    if y2 > y1 and ny2 == ny1 and y2 > 0 and y1 < sh:
        ny1 = min(ny1, dh - 1)
        ny2 = ny1 + 1
    return nx1, ny1, nx2, ny2


def to_model_box(box: Sequence[float], orig_wh: Sequence[int], model_wh: Sequence[int]) -> Box:
    """Original-image box -> the resized image the model sees (scaled, rounded half up, clipped)."""
    return _scale_box(box, orig_wh, model_wh, "orig_wh", "model_wh")


def to_original_box(box: Sequence[float], model_wh: Sequence[int], orig_wh: Sequence[int]) -> Box:
    """Model-pixel box -> original-image pixels (scaled, rounded half up, clipped)."""
    return _scale_box(box, model_wh, orig_wh, "model_wh", "orig_wh")


def clip_box(box: Sequence[float], image_wh: Sequence[int]) -> tuple[float, float, float, float]:
    """Clip a box into [0, width] x [0, height] (coordinates are exclusive, so x2 may equal width)."""
    x1, y1, x2, y2 = _box(box, "box")
    w, h = _size(image_wh, "image size")
    return min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)


def box_area(box: Sequence[float]) -> float:
    """Area; 0 for an empty or inverted box."""
    x1, y1, x2, y2 = _box(box, "box")
    return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


def iou(a: Sequence[float], b: Sequence[float], image_wh: Sequence[int] | None = None) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes, in [0, 1].

    With `image_wh`, both boxes are first clipped into the image (a prediction may stick out of it).
    An empty or inverted box (x2 <= x1 or y2 <= y1) has area 0; an empty union gives 0.0.
    """
    if image_wh is not None:
        a, b = clip_box(a, image_wh), clip_box(b, image_wh)
    ax1, ay1, ax2, ay2 = _box(a, "first box")
    bx1, by1, bx2, by2 = _box(b, "second box")
    inter = max(min(ax2, bx2) - max(ax1, bx1), 0.0) * max(min(ay2, by2) - max(ay1, by1), 0.0)
    union = box_area(a) + box_area(b) - inter
    if union <= 0.0 or box_area(a) == 0.0 or box_area(b) == 0.0:
        return 0.0
    return min(max(inter / union, 0.0), 1.0)
