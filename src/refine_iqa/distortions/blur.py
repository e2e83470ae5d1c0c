"""Blur family: gaussian, motion, glass, lens, zoom, jitter.

Every function takes a uint8 RGB array and a numpy Generator and returns a new uint8 RGB array of the
same shape; none writes into its input. Borders are mirrored (OpenCV's BORDER_REFLECT_101).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ._pixels import to_float, to_uint8


def gaussian_ksize(sigma: float) -> int:
    """The paper's kernel size floor(4 sigma) + 1, made odd (OpenCV needs an odd size)."""
    k = math.floor(4 * sigma) + 1
    return k if k % 2 == 1 else k + 1


def gaussian(img: np.ndarray, rng: np.random.Generator, *, sigma: float) -> np.ndarray:
    k = gaussian_ksize(sigma)
    return cv2.GaussianBlur(img, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)


def gaussian_pad(*, sigma: float) -> int:
    return gaussian_ksize(sigma) // 2


# ---------------------------------------------------------------- motion
def motion_kernel(radius: int, sigma: float, angle_deg: float) -> tuple[np.ndarray, tuple[int, int]]:
    """One-sided line kernel: 2r+1 taps at distance 0..2r along `angle`, Gaussian-weighted by distance.

    Returns the tight kernel and OpenCV's anchor (x, y) so that tap i reads the pixel at offset
    (round(i cos a), round(i sin a)) from the output pixel (y grows downwards).
    """
    n = 2 * radius + 1
    i = np.arange(n, dtype=np.float64)
    w = np.exp(-(i**2) / (2.0 * sigma**2))
    w /= w.sum()
    a = math.radians(angle_deg)
    dx = np.rint(i * math.cos(a)).astype(int)
    dy = np.rint(i * math.sin(a)).astype(int)
    x0, y0 = dx.min(), dy.min()
    k = np.zeros((dy.max() - y0 + 1, dx.max() - x0 + 1), dtype=np.float64)
    np.add.at(k, (dy - y0, dx - x0), w)  # taps that round to the same pixel add up
    return k.astype(np.float32), (int(-x0), int(-y0))


def motion(img: np.ndarray, rng: np.random.Generator, *, radius: int, sigma: float) -> np.ndarray:
    angle = rng.uniform(-90.0, 90.0)
    kernel, anchor = motion_kernel(radius, sigma, angle)
    out = cv2.filter2D(to_float(img), -1, kernel, anchor=anchor, borderType=cv2.BORDER_REFLECT_101)
    return to_uint8(out)


def motion_pad(*, radius: int, sigma: float) -> int:
    return 2 * radius


# ---------------------------------------------------------------- glass
def _glass_sigma_ksize(sigma: float) -> int:
    return 2 * math.ceil(3 * sigma) + 1


def local_swaps(h: int, w: int, rng: np.random.Generator, shift: int, iterations: int) -> np.ndarray:
    """Source index of every pixel after `iterations` rounds of random local swaps (flat indices, h * w).

    Each round swaps every pixel once with a random neighbour at offset (dy, dx) in [-shift, shift]^2,
    sequentially, as in the classic glass blur. The rounds are run in (2s+1)^2 conflict-free phases: the
    sources of one phase lie on a lattice of step 2s+1, so their (2s+1)^2 neighbourhoods are disjoint and
    all swaps of a phase can be done at once. A partner outside the array means no swap. The swaps act
    on an index map (one int per pixel), applied to the image once at the end.
    """
    step = 2 * shift + 1
    # int32 halves the memory traffic: every phase touches the whole index map.
    pos = np.arange(h * w, dtype=np.int32).reshape(h, w)
    perm = pos.ravel().copy()
    ys = np.arange(h, dtype=np.int32)[:, None]
    xs = np.arange(w, dtype=np.int32)[None, :]
    for _ in range(iterations):
        ty = ys + rng.integers(-shift, shift + 1, size=(h, w), dtype=np.int16)
        tx = xs + rng.integers(-shift, shift + 1, size=(h, w), dtype=np.int16)
        outside = (ty < 0) | (ty >= h) | (tx < 0) | (tx >= w)
        partner = np.where(outside, pos, ty * w + tx)
        for oy in range(min(step, h)):
            for ox in range(min(step, w)):
                src = pos[oy::step, ox::step].ravel()
                dst = partner[oy::step, ox::step].ravel()
                held = perm[src]
                perm[src] = perm[dst]
                perm[dst] = held
    return perm


def glass(img: np.ndarray, rng: np.random.Generator, *, sigma: float, shift: int, iterations: int) -> np.ndarray:
    k = _glass_sigma_ksize(sigma)
    h, w = img.shape[:2]
    out = cv2.GaussianBlur(img, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
    perm = local_swaps(h, w, rng, shift, iterations)
    out = np.take(out.reshape(-1, 3), perm, axis=0).reshape(h, w, 3)
    return cv2.GaussianBlur(out, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)


def glass_pad(*, sigma: float, shift: int, iterations: int) -> int:
    return 2 * (_glass_sigma_ksize(sigma) // 2) + shift * iterations


# ---------------------------------------------------------------- lens
def disk_kernel(radius: int) -> np.ndarray:
    """Normalised flat disk: the pixels with x^2 + y^2 <= r^2."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    k = ((x * x + y * y) <= radius * radius).astype(np.float32)
    return k / k.sum()


def lens(img: np.ndarray, rng: np.random.Generator, *, radius: int) -> np.ndarray:
    out = cv2.filter2D(to_float(img), -1, disk_kernel(radius), borderType=cv2.BORDER_REFLECT_101)
    return to_uint8(out)


def lens_pad(*, radius: int) -> int:
    return radius


# ---------------------------------------------------------------- zoom
def zoom_factors(max_zoom: float, step: float) -> list[float]:
    n = round((max_zoom - 1.0) / step)
    return [1.0 + step * i for i in range(n + 1)]


def zoom(img: np.ndarray, rng: np.random.Generator, *, max_zoom: float, step: float) -> np.ndarray:
    """Mean of the image and its centre zooms by 1, 1+step, ..., max_zoom (bilinear, same size).

    The image itself counts twice (as the original and as zoom 1), as in the classic zoom blur. Zooms
    are about the centre of the array, i.e. of the box when a box is given (no padding: every source
    pixel of a zoom lies closer to the centre than its target).
    """
    h, w = img.shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    factors = zoom_factors(max_zoom, step)
    acc = img.astype(np.uint16) * 2  # original + zoom 1.0
    for z in factors[1:]:
        s = 1.0 / z
        # WARP_INVERSE_MAP: the matrix maps each output pixel to its source, src = c + (dst - c) / z.
        m = np.array([[s, 0.0, cx * (1 - s)], [0.0, s, cy * (1 - s)]], dtype=np.float64)
        warped = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        cv2.add(acc, warped, dst=acc, dtype=cv2.CV_16U)
    return to_uint8(acc.astype(np.float32) * np.float32(1.0 / (len(factors) + 1)))


def zoom_pad(*, max_zoom: float, step: float) -> int:
    return 0


# ---------------------------------------------------------------- jitter
def jitter(img: np.ndarray, rng: np.random.Generator, *, shift: int) -> np.ndarray:
    """Each pixel takes the pixel at a random offset (dy, dx) in [-shift, shift]^2 (clamped at borders)."""
    h, w = img.shape[:2]
    dy = rng.integers(-shift, shift + 1, size=(h, w), dtype=np.int16)
    dx = rng.integers(-shift, shift + 1, size=(h, w), dtype=np.int16)
    ys = np.clip(np.arange(h, dtype=np.intp)[:, None] + dy, 0, h - 1)
    xs = np.clip(np.arange(w, dtype=np.intp)[None, :] + dx, 0, w - 1)
    # np.take on rows is ~20x faster than fancy indexing img[idx] here.
    return np.take(img.reshape(-1, 3), (ys * w + xs).ravel(), axis=0).reshape(img.shape)


def jitter_pad(*, shift: int) -> int:
    return shift
