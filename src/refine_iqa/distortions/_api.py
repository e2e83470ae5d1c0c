"""Public entry points: look up a distortion, apply it (optionally inside a box), list the catalogue."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._catalog import ENTRIES, _Entry
from ._region import as_rgb_uint8, check_box, padded_bounds
from .spec import FAMILIES, DistortionSpec


def names() -> list[str]:
    """The 35 canonical names "family.type", grouped by family in FAMILIES order."""
    return list(ENTRIES)


def _entry(name: str) -> _Entry:
    if not isinstance(name, str):
        raise TypeError(f"distortion name must be a string like 'blur.gaussian'; got {type(name).__name__}")
    try:
        return ENTRIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(ENTRIES), n=5, cutoff=0.5)
        if not close and name in FAMILIES:
            close = [n for n in ENTRIES if n.startswith(name + ".")]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(
            f"unknown distortion {name!r}{hint} (names are 'family.type'; see refine_iqa.distortions.names())"
        ) from None


def _check_level(level: Any) -> int:
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, np.integer)) or not 1 <= level <= 5:
        raise ValueError(f"level must be an integer from 1 (slight) to 5 (very severe); got {level!r}")
    return int(level)


def params_for(name: str, level: int) -> dict[str, Any]:
    """The parameters of `name` at `level` (1-5), as a new dict."""
    return dict(_entry(name).levels[_check_level(level) - 1])


def catalog() -> list[DistortionSpec]:
    """Every distortion type with its five parameter sets (fresh copies: safe to modify)."""
    out = []
    for e in ENTRIES.values():
        family, type_ = e.name.split(".", 1)
        out.append(DistortionSpec(family, type_, e.name, copy.deepcopy(e.levels), e.description))
    return out


def apply(
    image: np.ndarray,
    name: str,
    level: int,
    *,
    seed: int | None = None,
    box: Sequence[int] | None = None,
) -> np.ndarray:
    """Apply distortion `name` ("family.type") at `level` (1-5) and return a new uint8 RGB (H, W, 3) array.

    image: uint8 RGB (H, W, 3). Also accepted and converted first: grey (H, W) or (H, W, 1) is repeated
      into 3 channels, RGBA (H, W, 4) loses its alpha channel, uint16 is scaled to uint8 (v * 255 / 65535,
      rounded). Float or any other dtype raises TypeError (its range is ambiguous). The input is never
      modified.
    seed: the same seed gives the same output (numpy default_rng); None draws fresh randomness.
    box: (x1, y1, x2, y2) in pixels, x2 and y2 exclusive. Only image[y1:y2, x1:x2] changes. Filters read the
      real pixels around the box (the box is grown by the filter's support before filtering, then only
      the box is pasted back); region statistics (means, histograms, thresholds, palettes, the JPEG 2000
      PSNR target, the zoom centre) are those of the box itself. A box that is empty, inverted or not
      inside the image raises ValueError naming the box and the image size.
    """
    entry = _entry(name)
    params = entry.levels[_check_level(level) - 1]
    img = as_rgb_uint8(image)
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    if box is None:
        out = entry.fn(np.ascontiguousarray(img), rng, **params)
        return out if out is not image else out.copy()
    x1, y1, x2, y2 = check_box(box, w, h)
    cx1, cy1, cx2, cy2 = padded_bounds((x1, y1, x2, y2), entry.pad(**params), w, h)
    region = entry.fn(np.ascontiguousarray(img[cy1:cy2, cx1:cx2]), rng, **params)
    out = img.copy()
    out[y1:y2, x1:x2] = region[y1 - cy1 : y2 - cy1, x1 - cx1 : x2 - cx1]
    return out
