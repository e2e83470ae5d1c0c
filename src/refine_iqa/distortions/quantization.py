"""Quantization family: multi-Otsu, median cut, histogram equalisation into few bins.

All three work on 256-bin histograms and end in a lookup table, so their cost barely depends on the
number of classes. Statistics are those of the region being distorted (the box, when one is given).
"""

from __future__ import annotations

import cv2
import numpy as np

from ._pixels import apply_lut, lut_from_float


def _histogram(img: np.ndarray, channel: int | None = None) -> np.ndarray:
    """256-bin counts of one channel, or of all channels together (channel None), float64."""
    img = np.ascontiguousarray(img)
    channels = [channel] if channel is not None else [0, 1, 2]
    total = np.zeros(256, dtype=np.float64)
    if img.shape[0] * img.shape[1] >= 2**24:  # calcHist counts in float32: exact only below 2^24
        for c in channels:
            total += np.bincount(img[..., c].ravel(), minlength=256)
        return total
    for c in channels:  # cv2.calcHist is ~10x faster than np.bincount on a strided channel
        total += cv2.calcHist([img], [c], None, [256], [0, 256]).ravel()
    return total


# ---------------------------------------------------------------- multi-Otsu
def multi_otsu_groups(counts: np.ndarray, classes: int) -> list[int]:
    """Split the occupied values of a histogram into contiguous classes maximising between-class variance.

    Exact dynamic programme on the distinct values present (n <= 256): maximising the between-class
    variance is maximising sum_k S_k^2 / W_k (W_k = pixel count, S_k = sum of values of class k), and
    the best split of values [0, j) into k classes is the best split of [0, i) into k - 1 plus class
    [i, j). O(classes * n^2) instead of the exponential search over threshold tuples.

    Returns the start index, in the list of distinct present values, of every class after the first
    (length min(classes, n) - 1). Ties go to the lowest threshold.
    """
    values = np.flatnonzero(counts)
    n = values.size
    k_eff = min(classes, n)
    if k_eff <= 1:
        return []
    w = np.concatenate([[0.0], np.cumsum(counts[values])])
    s = np.concatenate([[0.0], np.cumsum(counts[values] * values)])
    i = np.arange(n + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = (s[None, :] - s[:, None]) ** 2 / (w[None, :] - w[:, None])  # class = values [i, j)
    cost[i[:, None] >= i[None, :]] = -np.inf  # only i < j is a (non-empty) class
    best = cost[0].copy()  # one class covering [0, j)
    back = []
    for _ in range(1, k_eff):
        total = best[:, None] + cost
        arg = np.argmax(total, axis=0)
        back.append(arg)
        best = total[arg, i]
    starts = []
    j = n
    for arg in reversed(back):
        j = int(arg[j])
        starts.append(j)
    return starts[::-1]


def otsu_channel_lut(counts: np.ndarray, classes: int) -> np.ndarray:
    """Class c of K (those formed) maps to min + c * (max - min) / (K - 1), spread over the channel's range."""
    values = np.flatnonzero(counts)
    starts = multi_otsu_groups(counts, classes)
    k_eff = len(starts) + 1
    lo, hi = float(values[0]), float(values[-1])
    labels = np.zeros(256, dtype=np.float64)
    for start in starts:
        labels[values[start] :] += 1  # every value from the class's first value up
    levels = lo + labels * ((hi - lo) / (k_eff - 1)) if k_eff > 1 else np.full(256, lo)
    return lut_from_float(levels)


def otsu(img: np.ndarray, rng: np.random.Generator, *, classes: int) -> np.ndarray:
    luts = [otsu_channel_lut(_histogram(img, c), classes) for c in range(3)]
    return apply_lut(img, np.stack(luts, axis=1))


# ---------------------------------------------------------------- median cut
def median_cut_lut(counts: np.ndarray, colors: int) -> np.ndarray:
    """1-D median cut of one channel: split the widest range at its pixel median until `colors` ranges.

    Ranges are runs of the distinct present values; the widest (max - min; ties: more pixels, then
    lower) splittable range is cut where its cumulative pixel count reaches half. Each range maps to its
    pixel-weighted mean value.
    """
    values = np.flatnonzero(counts)
    cnt = counts[values]
    ranges = [(0, values.size)]  # [a, b) over `values`
    while len(ranges) < colors:
        splittable = [r for r in ranges if r[1] - r[0] >= 2]
        if not splittable:
            break
        a, b = max(splittable, key=lambda r: (values[r[1] - 1] - values[r[0]], cnt[r[0] : r[1]].sum(), -r[0]))
        cum = np.cumsum(cnt[a:b])
        m = a + 1 + int(np.searchsorted(cum, cum[-1] / 2.0))  # the value crossing half stays below
        m = min(max(m, a + 1), b - 1)
        ranges.remove((a, b))
        ranges += [(a, m), (m, b)]
    table = np.arange(256, dtype=np.float64)
    for a, b in ranges:
        mean = float(np.dot(cnt[a:b], values[a:b]) / cnt[a:b].sum())
        table[values[a] : values[b - 1] + 1] = mean
    return lut_from_float(table)


def median_cut(img: np.ndarray, rng: np.random.Generator, *, colors: int) -> np.ndarray:
    luts = [median_cut_lut(_histogram(img, c), colors) for c in range(3)]
    return apply_lut(img, np.stack(luts, axis=1))


# ---------------------------------------------------------------- histogram
def histogram_lut(counts: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins over 0-255; a value in bin b maps to the normalised CDF at the end of bin b.

    CDF normalised so the first occupied bin maps to 0 and the last to 255 (histogram equalisation with
    `bins` output levels). A region whose values all fall in one bin has no contrast to equalise and is
    left unchanged.
    """
    bin_of = (np.arange(256) * bins) // 256
    per_bin = np.bincount(bin_of, weights=counts, minlength=bins)
    cdf = np.cumsum(per_bin)
    first = cdf[np.flatnonzero(per_bin)[0]]
    total = cdf[-1]
    if total <= first:
        return np.arange(256, dtype=np.uint8)
    return lut_from_float(255.0 * (cdf[bin_of] - first) / (total - first))


def histogram(img: np.ndarray, rng: np.random.Generator, *, bins: int) -> np.ndarray:
    """One global histogram over all three channels, one table for all."""
    return apply_lut(img, histogram_lut(_histogram(img), bins))
