"""Perceptual hash (DCT pHash), Hamming distance, and near-duplicate removal.

pHash: grey (ITU-R BT.601 luma) -> 32x32 by area averaging -> 2-D DCT-II (orthonormal) -> the 8x8 lowest
frequencies (DC included) -> bit = coefficient > median of those 64. Bits are read row by row, the first
being the most significant, giving a 64-bit integer (16 hex digits).

Near duplicates: two images whose hashes differ in at most `max_distance` bits are linked; a cluster is a
connected group of links, and its first member (in the given order) is kept. Unlike "drop anything close to
an earlier kept image", this does not depend on how the items were split into shards, so sharded curation
merges to the same result as one run.
"""

from __future__ import annotations

from typing import Hashable, Iterable

import numpy as np
from PIL import Image
from scipy.fft import dctn

HASH_BITS = 64
_LINEAR_SCAN_ABOVE = 15  # for large distances the chunk index stops paying off


# Images are box-reduced by an integer factor to at least this many pixels on the shorter side before the
# float copy: a 12 MP photo then costs ~1 MB of float32 instead of a 384 MB float64 copy (issue 13).
_REDUCE_TO_MIN_SIDE = 256


def _reduce_factor(width: int, height: int) -> int:
    return max(1, min(width, height) // _REDUCE_TO_MIN_SIDE)


def _hash_grey(grey: np.ndarray) -> int:
    if grey.shape != (32, 32):
        grey = np.asarray(Image.fromarray(grey.astype(np.float32)).resize((32, 32), Image.Resampling.BOX))
    low = dctn(grey.astype(np.float64), type=2, norm="ortho")[:8, :8]
    bits = (low > np.median(low)).ravel()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def _grey(arr: np.ndarray) -> np.ndarray:
    """BT.601 luma in float32 (channels weighted one at a time: no (H, W, 3) float copy)."""
    arr = arr[..., :3]
    return (np.float32(0.299) * arr[..., 0] + np.float32(0.587) * arr[..., 1]
            + np.float32(0.114) * arr[..., 2]).astype(np.float32)


def phash(image: np.ndarray) -> int:
    """64-bit perceptual hash of a uint8 RGB (H, W, 3) or grey (H, W) image.

    A large image is first box-reduced (PIL `reduce`, uint8) by an integer factor so its shorter side stays
    >= 256 px; the 32x32 area average is then taken from that copy. That equals the full-resolution area
    average up to uint8 rounding of the reduced pixels and cell edges moving by < 1 reduced pixel. Images
    under 512 px on the shorter side are not reduced (hash unchanged). Measured (benchmarks/bench_phash.py):
    123 of 130 hashes identical to the full-resolution formula, 7 at 2 bits; a 12 MP hash 0.16 s and 1 MB
    traced memory instead of 1.9 s and 384 MB.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"phash: expected an (H, W) or (H, W, 3) image, got shape {arr.shape}")
    factor = _reduce_factor(arr.shape[1], arr.shape[0])
    if factor > 1 and arr.dtype == np.uint8:
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., :3] if arr.ndim == 3 else arr)).reduce(factor))
    grey = _grey(arr) if arr.ndim == 3 else arr.astype(np.float32)
    return _hash_grey(grey)


def to_hex(value: int) -> str:
    return f"{int(value):016x}"


def from_hex(text: str) -> int:
    try:
        value = int(text, 16)
    except (TypeError, ValueError):
        raise ValueError(f"phash {text!r} is not a hexadecimal string") from None
    if not 0 <= value < 1 << HASH_BITS:
        raise ValueError(f"phash {text!r} does not fit in {HASH_BITS} bits")
    return value


def _as_int(h: int | str) -> int:
    return from_hex(h) if isinstance(h, str) else int(h)


def hamming(a: int | str, b: int | str) -> int:
    """Number of differing bits between two hashes (ints or hex strings)."""
    return (_as_int(a) ^ _as_int(b)).bit_count()


class _NearIndex:
    """Finds stored hashes within `max_distance` bits.

    Pigeonhole: split the 64 bits into max_distance + 1 chunks; two hashes within max_distance bits agree
    exactly on at least one chunk, so only hashes sharing a chunk value need a full comparison.
    """

    def __init__(self, max_distance: int):
        self.max_distance = max_distance
        self.hashes: list[int] = []
        self.linear = max_distance > _LINEAR_SCAN_ABOVE
        n_chunks = max_distance + 1
        edges = np.linspace(0, HASH_BITS, n_chunks + 1).round().astype(int)
        self.chunks = [(int(lo), int(hi - lo)) for lo, hi in zip(edges[:-1], edges[1:])]
        self.tables: list[dict[int, list[int]]] = [{} for _ in self.chunks]

    def _keys(self, h: int):
        for lo, width in self.chunks:
            yield (h >> lo) & ((1 << width) - 1)

    def near(self, h: int) -> list[int]:
        """Positions of stored hashes within max_distance of h."""
        if self.linear:
            cands: Iterable[int] = range(len(self.hashes))
        else:
            found: set[int] = set()
            for table, key in zip(self.tables, self._keys(h)):
                found.update(table.get(key, ()))
            cands = sorted(found)
        return [i for i in cands if (self.hashes[i] ^ h).bit_count() <= self.max_distance]

    def add(self, h: int) -> int:
        pos = len(self.hashes)
        self.hashes.append(h)
        if not self.linear:
            for table, key in zip(self.tables, self._keys(h)):
                table.setdefault(key, []).append(pos)
        return pos


class DuplicateClusters:
    """Incremental near-duplicate clustering; items must arrive in their final order.

    `add(key, hash)` returns the key of an earlier item it is linked to, or None when it links to nothing
    earlier. An item that links to an earlier one can never become the first of its cluster, so callers can
    skip work on it at once; an item that arrived unlinked may still be joined to an earlier cluster by a later
    item (chains), so read the final answer from `representative()` / `firsts()` after the last add.
    """

    def __init__(self, max_distance: int):
        if not 0 <= int(max_distance) <= HASH_BITS:
            raise ValueError(f"dedup max_distance={max_distance}: must be between 0 and {HASH_BITS} bits")
        self._index = _NearIndex(int(max_distance))
        self._keys: list[Hashable] = []
        self._parent: list[int] = []
        self._pos: dict[Hashable, int] = {}

    def _find(self, i: int) -> int:
        root = i
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[i] != root:  # path compression
            self._parent[i], i = root, self._parent[i]
        return root

    def add(self, key: Hashable, h: int | str) -> Hashable | None:
        if key in self._pos:
            raise ValueError(f"dedup: key {key!r} added twice; source ids must be unique")
        h = _as_int(h)
        near = self._index.near(h)
        pos = self._index.add(h)
        self._keys.append(key)
        self._parent.append(pos)
        self._pos[key] = pos
        for j in near:
            a, b = self._find(j), self._find(pos)
            if a != b:  # the root is always the earliest member, so it is the one to keep
                self._parent[max(a, b)] = min(a, b)
        return self._keys[near[0]] if near else None

    def representative(self, key: Hashable) -> Hashable:
        """The first item of `key`'s cluster (the key itself when it is kept)."""
        return self._keys[self._find(self._pos[key])]

    def firsts(self) -> list[Hashable]:
        """Keys that are the first of their cluster, in arrival order."""
        return [k for i, k in enumerate(self._keys) if self._find(i) == i]


def dedup(items: Iterable[tuple[Hashable, int | str]], max_distance: int) -> tuple[list[Hashable], dict[Hashable, Hashable]]:
    """Keep the first item of each near-duplicate cluster.

    `items` are (key, hash) pairs in the order that decides which one is "first". Returns (kept keys in
    order, {dropped key: key of the kept first item of its cluster}).
    """
    clusters = DuplicateClusters(max_distance)
    keys = []
    for key, h in items:
        clusters.add(key, h)
        keys.append(key)
    kept = clusters.firsts()
    kept_set = set(kept)
    dropped = {k: clusters.representative(k) for k in keys if k not in kept_set}
    return kept, dropped
