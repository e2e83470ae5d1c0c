"""pHash before and after issue 13: the full-resolution float64 copy vs the box-reduced copy.

Prints how many hashes of 130 images (skimage photos at 5 sizes up to 4000x3000, procedural scenes at 640x480
and 1920x1080) are identical to the old formula, the largest difference in bits, and time and peak traced
memory of one 12 MP hash side by side.  Run: python benchmarks/bench_phash.py
"""
import time, numpy as np
from PIL import Image
from scipy.fft import dctn
import skimage.data
from refine_iqa.data.phash import phash, hamming
from refine_iqa.data.scenes import generate_scene
def old(arr):
    grey = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if grey.shape != (32, 32):
        grey = np.asarray(Image.fromarray(grey.astype(np.float32)).resize((32, 32), Image.Resampling.BOX))
    low = dctn(grey.astype(np.float64), type=2, norm="ortho")[:8, :8]
    bits = (low > np.median(low)).ravel(); v = 0
    for b in bits: v = (v << 1) | int(b)
    return v
imgs = []
for n in ("astronaut","chelsea","coffee","rocket","hubble_deep_field","immunohistochemistry","retina","colorwheel","logo","cat"):
    a = np.asarray(getattr(skimage.data, n)())[..., :3]
    for size in [(a.shape[1], a.shape[0]), (1920,1080), (4000,3000), (640,480), (1333, 999)]:
        imgs.append(np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BICUBIC)))
rng = np.random.default_rng(0)
for i in range(40):
    im, _ = generate_scene(i, 640, 480); imgs.append(im)
    im, _ = generate_scene(1000+i, 1920, 1080); imgs.append(im)
d = [hamming(old(x), phash(x)) for x in imgs]
print("images", len(d), "identical", sum(v == 0 for v in d), "max bits", max(d), "hist", np.bincount(d))
big = imgs[2]
t=time.perf_counter(); old(big); t1=time.perf_counter()-t
t=time.perf_counter(); phash(big); t2=time.perf_counter()-t
print(f"12MP old {t1:.3f}s new {t2:.3f}s")
import tracemalloc
tracemalloc.start(); old(big); print("old peak MB", tracemalloc.get_traced_memory()[1]/1e6); tracemalloc.stop()
tracemalloc.start(); phash(big); print("new peak MB", tracemalloc.get_traced_memory()[1]/1e6); tracemalloc.stop()
