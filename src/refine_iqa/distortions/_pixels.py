"""Small pixel helpers shared by the distortion modules.

The spec works in float [0, 1]; the code works in float32 on the 0-255 scale instead (the same maths with
parameters scaled by 255), which saves a multiplication per pixel on both ends.
"""

from __future__ import annotations

import cv2
import numpy as np

# Full-range ITU-R BT.601 luma weights (the Y of JPEG's YCbCr and of Pillow's "L" mode).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 -> float32 on the 0-255 scale (a new array)."""
    return img.astype(np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float (0-255 scale) -> uint8, rounded to nearest (ties to even) and saturated at 0 and 255."""
    # cv2 rounds and saturates in one pass, ~4x faster than np.clip + astype.
    return cv2.add(np.ascontiguousarray(x, dtype=np.float32), 0.0, dtype=cv2.CV_8U)


def lut_from_float(values: np.ndarray) -> np.ndarray:
    """A 256-entry float table (0-255 scale) -> a uint8 lookup table."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def apply_lut(img: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Apply a 256-entry uint8 table to every channel, or a (256, 3) table channel by channel."""
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    if lut.ndim == 2:
        lut = lut.reshape(1, 256, 3)
    return cv2.LUT(np.ascontiguousarray(img), lut)


def luma(imgf: np.ndarray) -> np.ndarray:
    """BT.601 luma of a float RGB image, same scale as the input, shape (H, W)."""
    r, g, b = LUMA_WEIGHTS
    return imgf[..., 0] * np.float32(r) + imgf[..., 1] * np.float32(g) + imgf[..., 2] * np.float32(b)


def channel_max(img: np.ndarray) -> np.ndarray:
    """max(R, G, B) per pixel, same dtype; OpenCV is ~20x faster than ndarray.max(axis=2) here."""
    r, g, b = cv2.split(np.ascontiguousarray(img))
    return cv2.max(cv2.max(r, g), b)


def channel_min(img: np.ndarray) -> np.ndarray:
    r, g, b = cv2.split(np.ascontiguousarray(img))
    return cv2.min(cv2.min(r, g), b)
