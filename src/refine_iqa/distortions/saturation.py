"""Saturate strengthen / weaken families: scale HSV's S, or the YCbCr chroma about 128.

Both are computed exactly without a colour-space round trip:
- HSV: with V and H fixed, every channel is c = V - (V - c), and V - c is proportional to S, so S -> S'
  means c' = V - (V - c) * S' / S. S' = min(S * s, 1) (the spec's clip).
- YCbCr (full range, BT.601): RGB is linear in (Y, Cb - 128, Cr - 128) and Cb = Cr = 128 is the grey Y,
  so scaling the chroma by s is c' = Y + s * (c - Y).
"""

from __future__ import annotations

import cv2
import numpy as np

from ._pixels import channel_max, channel_min, luma, to_float, to_uint8


def hsv(img: np.ndarray, rng: np.random.Generator, *, factor: float) -> np.ndarray:
    v8 = channel_max(img)
    spread8 = cv2.subtract(v8, channel_min(img))  # V * S, on the 0-255 scale
    # S' / S = min(s, 1 / S) = min(s, V / (V - min)): a table over (V, V - min). Grey pixels (V = min)
    # have nothing to scale; any ratio leaves them unchanged.
    vv, ss = np.meshgrid(np.arange(256.0), np.arange(256.0), indexing="ij")
    with np.errstate(divide="ignore", invalid="ignore"):
        table = np.where(ss > 0, np.minimum(factor, vv / ss), factor).astype(np.float32).ravel()
    ratio = np.take(table, v8.astype(np.intp) * 256 + spread8)
    v = v8.astype(np.float32)
    # c' = V - (V - c) * ratio = c * ratio + V * (1 - ratio)
    out = img * ratio[..., None]
    out += (v * (np.float32(1.0) - ratio))[..., None]
    return to_uint8(out)


def ycrcb(img: np.ndarray, rng: np.random.Generator, *, factor: float) -> np.ndarray:
    imgf = to_float(img)
    y = luma(imgf)[..., None]
    out = imgf - y
    out *= np.float32(factor)
    out += y
    return to_uint8(out)
