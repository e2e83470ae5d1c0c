"""The paper's review quality controls: oversized boxes removed before review, a cap on deletions per batch."""

from __future__ import annotations

import math
from typing import Sequence

DEFAULT_MAX_BOX_FRAC = 0.9  # paper: "removal of images with oversized bounding boxes (exceeding 90% coverage)"
DEFAULT_MAX_DELETE_FRAC = 0.2  # paper: "preservation of at least 80% of the original dataset"


def box_area_fraction(box: Sequence[int], width: int, height: int) -> float:
    """Share of the image area that the box [x1, y1, x2, y2] (x2/y2 exclusive) covers."""
    x1, y1, x2, y2 = box
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return (x2 - x1) * (y2 - y1) / float(width * height)


def oversize_rule_name(max_box_frac: float) -> str:
    """Same rule name as the assemble step's QC ('box_over_90pct' for 0.9)."""
    return f"box_over_{round(max_box_frac * 100)}pct"


def oversize_rejection(box: Sequence[int], width: int, height: int, max_box_frac: float = DEFAULT_MAX_BOX_FRAC):
    """(rule, reason) when the box covers MORE than `max_box_frac` of the image, else None (exactly at it passes)."""
    return oversize_rejection_of_fraction(box_area_fraction(box, width, height), max_box_frac)


def oversize_rejection_of_fraction(frac: float, max_box_frac: float = DEFAULT_MAX_BOX_FRAC):
    """`oversize_rejection` for a box covering `frac` of its image."""
    check_fraction("max_box_frac", max_box_frac, allow_zero=False)
    if frac > max_box_frac:
        return oversize_rule_name(max_box_frac), f"box covers {frac:.1%} of the image (limit {max_box_frac:.0%})"
    return None


def max_deletions(n_items: int, max_delete_frac: float = DEFAULT_MAX_DELETE_FRAC) -> int:
    """How many of a batch's `n_items` reviewers may delete: floor(frac * n), so the batch keeps >= (1-frac)."""
    check_fraction("max_delete_frac", max_delete_frac, allow_zero=True)
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0, got {n_items}")
    # The small epsilon keeps 0.2 * 10 == 2 from becoming 1.9999999 -> 1.
    return int(math.floor(max_delete_frac * n_items + 1e-9))


def check_fraction(name: str, value: float, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if value > 1 or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be in {'[0' if allow_zero else '(0'}, 1], got {value}")
    return float(value)
