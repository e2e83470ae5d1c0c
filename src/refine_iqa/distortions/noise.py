"""Noise family: gaussian_rgb, gaussian_ycrcb, speckle, spatially_correlated, poisson, impulse.

Values follow the spec's [0, 1] convention (sigma 0.1 = 25.5 grey levels); the code works on 0-255.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ._pixels import to_uint8


def _normal(rng: np.random.Generator, shape, scale: float) -> np.ndarray:
    z = rng.standard_normal(shape, dtype=np.float32)
    z *= np.float32(scale)
    return z


def gaussian_rgb(img: np.ndarray, rng: np.random.Generator, *, sigma: float) -> np.ndarray:
    out = _normal(rng, img.shape, 255.0 * sigma)
    out += img
    return to_uint8(out)


# Full-range (JPEG) YCbCr -> RGB: how a change of (Y, Cb, Cr) moves (R, G, B).
_YCBCR_TO_RGB = np.array(
    [[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], dtype=np.float32
)


def gaussian_ycrcb(img: np.ndarray, rng: np.random.Generator, *, sigma_y: float, chroma_factor: float) -> np.ndarray:
    """Independent noise on Y (sigma_y) and on Cb, Cr (sigma_y * chroma_factor), back to RGB, clipped.

    The conversion is linear and only the final RGB is clipped, so adding the converted noise to RGB is
    exactly "convert, add noise, convert back".
    """
    h, w = img.shape[:2]
    z = rng.standard_normal((h, w, 3), dtype=np.float32)  # (Y, Cb, Cr) noise, unit variance
    scale = np.float32(255.0) * np.array([sigma_y, sigma_y * chroma_factor, sigma_y * chroma_factor], np.float32)
    # cv2.transform: out[c] = sum_j m[c, j] * z[j], with column j of the conversion scaled by its sigma.
    out = cv2.transform(z, np.ascontiguousarray(_YCBCR_TO_RGB * scale[None, :]))
    out += img
    return to_uint8(out)


def speckle(img: np.ndarray, rng: np.random.Generator, *, sigma: float) -> np.ndarray:
    """Multiplicative: x + x * N(0, sigma)."""
    out = _normal(rng, img.shape, sigma)
    out += np.float32(1.0)
    out *= img
    return to_uint8(out)


def spatially_correlated(img: np.ndarray, rng: np.random.Generator, *, sigma: float) -> np.ndarray:
    """Additive N(0, sigma), then a 3x3 mean filter of image plus noise."""
    out = _normal(rng, img.shape, 255.0 * sigma)
    out += img
    out = cv2.blur(out, (3, 3), borderType=cv2.BORDER_REFLECT_101)
    return to_uint8(out)


def spatially_correlated_pad(*, sigma: float) -> int:
    return 1


# ---------------------------------------------------------------- poisson
_GUIDE_SIZE = 1024


def poisson_cdf(mu: np.ndarray, kmax: int) -> np.ndarray:
    """P(X <= k) for X ~ Poisson(mu), k = 0..kmax, one row per mu (float64).

    From the pmf in log space, exp(-mu + k log mu - log k!), summed: within 1e-13 of scipy.stats.poisson.cdf
    (tested), without importing scipy.stats, which alone kept 43 MB in every synthesis process that drew
    this type (docs/PERFORMANCE.md, issue 13).
    """
    mu = np.asarray(mu, dtype=np.float64).reshape(-1, 1)
    k = np.arange(kmax + 1, dtype=np.float64)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(k[1:]))])
    with np.errstate(divide="ignore", invalid="ignore"):
        pmf = np.exp(k * np.log(mu) - mu - log_fact)
    pmf[mu[:, 0] == 0] = (k == 0)  # mu = 0: all mass at 0 (0 * log 0 is nan above)
    return np.minimum(np.cumsum(pmf, axis=1), 1.0)


@functools.lru_cache(maxsize=16)
def _poisson_tables(lam: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Inverse-CDF tables for Poisson(v / 255 * lam), v = 0..255 (about 0.3 MB for the largest lam).

    cdf[v, k] = P(X <= k) in float32 (the precision of the uniforms it is compared with), forced to 1 at
    k = lam + 12 sqrt(lam) + 20, far in the tail. guide[v, j] is the smallest k with cdf[v, k] > j / G:
    where the search for a u in [j / G, (j + 1) / G) starts, usually at its answer already.
    """
    kmax = int(np.ceil(lam + 12 * np.sqrt(lam) + 20))
    mu = np.arange(256, dtype=np.float64) / 255.0 * lam
    cdf = poisson_cdf(mu, kmax).astype(np.float32)
    cdf[:, -1] = 1.0
    u = np.arange(_GUIDE_SIZE, dtype=np.float64) / _GUIDE_SIZE
    guide = np.stack([np.searchsorted(row, u, side="right") for row in cdf]).astype(np.int16)
    return cdf, guide, kmax + 1


def poisson_counts(values: np.ndarray, lam: float, u: np.ndarray) -> np.ndarray:
    """Poisson(values / 255 * lam) by inverse CDF: the smallest k with cdf(k) > u (u uniform in [0, 1)).

    Exact sampling from lookup tables (values are uint8, so there are only 256 distributions); about
    4x faster than numpy's per-pixel Poisson generator.
    """
    cdf, guide, width = _poisson_tables(float(lam))
    flat_cdf = cdf.ravel()
    v = values.ravel().astype(np.int32)
    uf = np.ascontiguousarray(u, dtype=np.float32).ravel()
    cell = (uf * np.float32(_GUIDE_SIZE)).astype(np.int32)
    cell += v * _GUIDE_SIZE
    k = np.take(guide.ravel(), cell).astype(np.int32)
    rows = v * width
    todo = np.flatnonzero(np.take(flat_cdf, rows + k) <= uf)
    while todo.size:  # few pixels, few steps: only guide cells that straddle several k need a search
        k[todo] += 1
        todo = todo[np.take(flat_cdf, rows[todo] + k[todo]) <= uf[todo]]
    return k.reshape(values.shape)


def poisson(img: np.ndarray, rng: np.random.Generator, *, lam: float) -> np.ndarray:
    """Photon noise: Poisson(x * lam) / lam with x in [0, 1]; lower lam = fewer photons = more noise."""
    u = rng.random(img.shape, dtype=np.float32)
    k = poisson_counts(img, lam, u)
    return to_uint8(k.astype(np.float32) * np.float32(255.0 / lam))


# ---------------------------------------------------------------- impulse
def impulse(img: np.ndarray, rng: np.random.Generator, *, amount: float) -> np.ndarray:
    """Salt and pepper: round(amount * H * W) distinct pixels become black or white (probability 1/2)."""
    h, w = img.shape[:2]
    n = int(np.floor(amount * h * w + 0.5))
    out = img.copy()
    flat = out.reshape(-1, 3)
    idx = rng.choice(h * w, size=n, replace=False)
    salt = rng.random(n) < 0.5
    flat[idx[salt]] = 255
    flat[idx[~salt]] = 0
    return out
