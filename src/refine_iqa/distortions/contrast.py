"""Contrast families (strengthen / weaken): linear scale about the mean grey, or a sigmoid stretch.

Both are pointwise once the region's mean is known, so they are applied as 256-entry lookup tables.
The mean is that of the region being distorted (the box, when one is given).
"""

from __future__ import annotations

import cv2
import numpy as np

from ._pixels import LUMA_WEIGHTS, apply_lut, lut_from_float

_LEVELS = np.arange(256, dtype=np.float64)


def channel_means(img: np.ndarray) -> np.ndarray:
    """Mean of each channel over the region, float64 (OpenCV sums in double: exact for uint8)."""
    return np.array(cv2.mean(np.ascontiguousarray(img))[:3], dtype=np.float64)


def mean_grey(img: np.ndarray) -> float:
    """Mean BT.601 luma of the region (0-255 scale), computed from per-channel means (the luma is linear)."""
    return float(np.dot(channel_means(img), LUMA_WEIGHTS))


def scale(img: np.ndarray, rng: np.random.Generator, *, factor: float) -> np.ndarray:
    """mu + factor * (x - mu), mu = mean grey; the rule of Pillow's ImageEnhance.Contrast (unrounded mu)."""
    mu = mean_grey(img)
    return apply_lut(img, lut_from_float(mu + factor * (_LEVELS - mu)))


def stretch_table(mu: float, exponent: float) -> np.ndarray:
    """y = 1 / (1 + (mu / x) ** f) = x^f / (x^f + mu^f) on the 0-255 scale; y(0) = 0; identity if mu = 0."""
    if mu <= 0.0:  # the channel is all zeros: nothing to stretch
        return _LEVELS.copy()
    xf = (_LEVELS / 255.0) ** exponent
    mf = (mu / 255.0) ** exponent
    return 255.0 * xf / (xf + mf)


def stretch(img: np.ndarray, rng: np.random.Generator, *, exponent: float) -> np.ndarray:
    """Sigmoid about each channel's mean: f > 1 steepens (more contrast), f < 1 flattens (less)."""
    means = channel_means(img)
    lut = np.stack([lut_from_float(stretch_table(float(m), exponent)) for m in means], axis=1)
    return apply_lut(img, lut)
