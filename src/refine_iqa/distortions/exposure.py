"""Brighten and darken families: shift or gamma, in RGB or on HSV's V channel.

The same four functions serve both families; darken uses a negative shift or a gamma above 1.

HSV without a colour-space round trip: hue and saturation depend only on the ratios of R, G, B to
V = max(R, G, B), so setting V to V' while keeping H and S is exactly RGB * V' / V. A black pixel
(V = 0) has S = 0 and becomes the grey V'.
"""

from __future__ import annotations

import numpy as np

from ._pixels import apply_lut, channel_max, lut_from_float, to_uint8

_LEVELS = np.arange(256, dtype=np.float64)


def shift_rgb(img: np.ndarray, rng: np.random.Generator, *, delta: float) -> np.ndarray:
    """x + delta, clipped to [0, 1]."""
    return apply_lut(img, lut_from_float(_LEVELS + 255.0 * delta))


def gamma_rgb(img: np.ndarray, rng: np.random.Generator, *, gamma: float) -> np.ndarray:
    """x ** gamma per channel, x in [0, 1]."""
    return apply_lut(img, lut_from_float(255.0 * (_LEVELS / 255.0) ** gamma))


def _set_value(img: np.ndarray, new_v: np.ndarray) -> np.ndarray:
    """Replace HSV's V by new_v[V] (a 256-entry float table on the 0-255 scale), keeping H and S."""
    v = channel_max(img)
    ratio = np.zeros(256, dtype=np.float32)
    ratio[1:] = new_v[1:] / _LEVELS[1:]
    scale = np.take(ratio, v)
    out = img * scale[..., None]
    if new_v[0] != 0:
        out[v == 0] = np.float32(new_v[0])
    return to_uint8(out)


def shift_hsv(img: np.ndarray, rng: np.random.Generator, *, delta: float) -> np.ndarray:
    """V + delta, clipped to [0, 1]; hue and saturation unchanged."""
    return _set_value(img, np.clip(_LEVELS + 255.0 * delta, 0.0, 255.0))


def gamma_hsv(img: np.ndarray, rng: np.random.Generator, *, gamma: float) -> np.ndarray:
    """V ** gamma, V in [0, 1]; hue and saturation unchanged."""
    return _set_value(img, 255.0 * (_LEVELS / 255.0) ** gamma)
