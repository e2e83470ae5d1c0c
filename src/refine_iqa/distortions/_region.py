"""Input normalisation and the box logic shared by every distortion.

A distortion restricted to a box works on a crop of the box grown by the filter's support (`pad`), so
filters see the real surrounding pixels; only the box is pasted back. Pointwise distortions and those
with region statistics use pad 0, so their statistics are those of the box itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[int, int, int, int]


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Return `image` as uint8 RGB (H, W, 3) without modifying it.

    Accepted: uint8 or uint16, shaped (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). Grey is repeated into
    three channels, a fourth (alpha) channel is dropped, uint16 is scaled to uint8 (round(v * 255 / 65535)).
    Anything else (float, bool, signed ints, other shapes) raises, because its value range is ambiguous.
    A uint8 RGB input is returned as is (callers never write into it).
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array (uint8 RGB, H x W x 3); got {type(image).__name__}")
    if image.dtype == np.uint16:
        # Exact integer rounding of v * 255 / 65535 (65535 = 255 * 257).
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise TypeError(
            f"image dtype must be uint8 (or uint16, scaled down); got {image.dtype}. "
            "Convert float images in [0, 1] with np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)"
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image shape must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return image


def check_box(box: Sequence[int], width: int, height: int) -> Box:
    """Validate an (x1, y1, x2, y2) box, x2/y2 exclusive, inside a width x height image."""
    where = f"box {list(box) if isinstance(box, (list, tuple, np.ndarray)) else box!r} on a {width}x{height} image"
    try:
        values = [v for v in box]
    except TypeError:
        raise ValueError(f"{where}: a box must be 4 integers [x1, y1, x2, y2]") from None
    if len(values) != 4:
        raise ValueError(f"{where}: a box must be 4 integers [x1, y1, x2, y2], got {len(values)} values")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)):
            # ValueError like every other box problem, so callers catch one exception type
            raise ValueError(f"{where}: coordinates must be integers, got {v!r}")  # noqa: TRY004
        if float(v) != int(v):
            raise ValueError(f"{where}: coordinates must be whole pixels, got {v!r}")
        out.append(int(v))
    x1, y1, x2, y2 = out
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: empty or inverted (need x1 < x2 and y1 < y2; x2, y2 are exclusive)")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise ValueError(f"{where}: outside the image (need 0 <= x1 < x2 <= {width}, 0 <= y1 < y2 <= {height})")
    return x1, y1, x2, y2


def padded_bounds(box: Box, pad: int, width: int, height: int) -> Box:
    """The box grown by `pad` pixels on every side, clipped to the image."""
    x1, y1, x2, y2 = box
    return max(0, x1 - pad), max(0, y1 - pad), min(width, x2 + pad), min(height, y2 + pad)
