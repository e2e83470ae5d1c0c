"""Oversharpen family: unsharp masking with a strong gain, (1 + a) x - a * blur(x), saturating."""

from __future__ import annotations

import cv2
import numpy as np

from ._pixels import to_float, to_uint8

# A 5x5 Gaussian; sigma 1.1 is what OpenCV derives for a 5x5 kernel (0.3 * ((5 - 1) / 2 - 1) + 0.8).
UNSHARP_KSIZE = 5
UNSHARP_SIGMA = 1.1


def unsharp(img: np.ndarray, rng: np.random.Generator, *, alpha: float) -> np.ndarray:
    imgf = to_float(img)
    blurred = cv2.GaussianBlur(imgf, (UNSHARP_KSIZE, UNSHARP_KSIZE), UNSHARP_SIGMA, borderType=cv2.BORDER_REFLECT_101)
    # (1 + a) x - a * blur in one OpenCV pass.
    out = cv2.addWeighted(imgf, 1.0 + alpha, blurred, -alpha, 0.0)
    return to_uint8(out)


def unsharp_pad(*, alpha: float) -> int:
    return UNSHARP_KSIZE // 2
