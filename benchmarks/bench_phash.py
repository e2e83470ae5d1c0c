"""pHash before and after issue 13: the full-resolution float64 copy vs the box-reduced copy.

Prints how many hashes of 130 images (skimage photos at 5 sizes up to 4000x3000, procedural scenes at 640x480
and 1920x1080) are identical to the old formula, the largest difference in bits, and time and peak traced
memory of one 12 MP hash side by side.  Run: python benchmarks/bench_phash.py
"""

import time
import tracemalloc

import numpy as np
import skimage.data
from PIL import Image
from scipy.fft import dctn

from refine_iqa.data.phash import hamming, phash
from refine_iqa.data.scenes import generate_scene

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "colorwheel", "logo", "cat")


def old_phash(arr: np.ndarray) -> int:
    """The formula before issue 13 (full-resolution float64 grey)."""
    grey = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if grey.shape != (32, 32):
        grey = np.asarray(Image.fromarray(grey.astype(np.float32)).resize((32, 32), Image.Resampling.BOX))
    low = dctn(grey.astype(np.float64), type=2, norm="ortho")[:8, :8]
    value = 0
    for bit in (low > np.median(low)).ravel():
        value = (value << 1) | int(bit)
    return value


def images() -> list[np.ndarray]:
    out = []
    for name in PHOTOS:
        a = np.asarray(getattr(skimage.data, name)())[..., :3]
        for size in [(a.shape[1], a.shape[0]), (1920, 1080), (4000, 3000), (640, 480), (1333, 999)]:
            out.append(np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BICUBIC)))
    for i in range(40):
        out.append(generate_scene(i, 640, 480)[0])
        out.append(generate_scene(1000 + i, 1920, 1080)[0])
    return out


def measure(fn, arr) -> tuple[float, float]:
    tracemalloc.start()
    t = time.perf_counter()
    fn(arr)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return seconds, peak


def main() -> None:
    imgs = images()
    d = [hamming(old_phash(x), phash(x)) for x in imgs]
    print(f"images {len(d)}  identical {sum(v == 0 for v in d)}  max bits {max(d)}  bits histogram {np.bincount(d).tolist()}")
    big = imgs[2]  # astronaut at 4000x3000
    (t_old, m_old), (t_new, m_new) = measure(old_phash, big), measure(phash, big)
    print(f"12 MP hash: before {t_old:.3f} s {m_old:.0f} MB traced | after {t_new:.3f} s {m_new:.1f} MB traced "
          f"| {t_old / t_new:.1f}x faster")


if __name__ == "__main__":
    main()
