"""Compression family: JPEG and JPEG 2000, encoded and decoded in memory with Pillow.

With a box, the box region alone is encoded (pad 0): the block grid starts at the box corner and the
JPEG 2000 PSNR target is the region's own.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _roundtrip(img: np.ndarray, fmt: str, **save_kw) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format=fmt, **save_kw)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


def jpeg(img: np.ndarray, rng: np.random.Generator, *, quality: int) -> np.ndarray:
    """Baseline JPEG, Pillow's defaults (4:2:0 chroma subsampling, standard tables scaled by quality)."""
    return _roundtrip(img, "JPEG", quality=int(quality))


def jpeg2000(img: np.ndarray, rng: np.random.Generator, *, psnr_db: float) -> np.ndarray:
    """JPEG 2000 (OpenJPEG through Pillow), one quality layer at a target PSNR in dB.

    The lossy 9/7 wavelet (irreversible=True) is used: it is the standard lossy path, ~30% faster to
    encode than 5/3 and lands closer to the target. OpenJPEG's rate control is approximate: the achieved
    PSNR is typically within ~1 dB of the target.
    """
    return _roundtrip(img, "JPEG2000", quality_mode="dB", quality_layers=[float(psnr_db)], irreversible=True)
