"""Pixelate family: box-filter downscale, nearest-neighbour upscale back to the original size."""

from __future__ import annotations

import cv2
import numpy as np


def reduced_size(n: int, scale: float) -> int:
    """round(n * scale), halves up, at least 1 pixel."""
    return max(1, int(np.floor(n * scale + 0.5)))


def box(img: np.ndarray, rng: np.random.Generator, *, scale: float) -> np.ndarray:
    """With a box, the grid of blocks starts at the box corner (pad 0): the region itself is pixelated."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (reduced_size(w, scale), reduced_size(h, scale)), interpolation=cv2.INTER_AREA)
    # INTER_NEAREST_EXACT samples at pixel centres (plain INTER_NEAREST is shifted by half a pixel).
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
