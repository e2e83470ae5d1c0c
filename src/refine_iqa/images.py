"""Images for the model: decoded from a path when a batch needs them, shrunk ONCE to the processor's size.

Samples hold image PATHS (`image_paths`), never pixels, so a dataset of any size costs no image memory until a
batch is built. `load_for_model(path, processor)` decodes a file (EXIF orientation, RGB, `io_utils.load_rgb`'s
safety checks) and resizes it to exactly the (width, height) the Qwen2-VL image processor would resize it to,
with the processor's OWN resize call (same interpolation, same uint8 rounding), so the processor then finds
the image already at its target size and leaves it alone: pixel_values are identical to feeding the full
image, at a fraction of the memory and of the (repeated) resize time.

Public names (kept stable for other modules and benchmarks):
- `image_size(path)`: (width, height) after EXIF orientation, from the file header only (no decode).
- `check_readable(path)`: the header-level checks of `load_rgb` (missing, empty, not an image, size limits).
- `pixel_limits(processor)`: the processor's {min_pixels, max_pixels, factor}.
- `shrink(image, processor | limits)`: a PIL image at the processor's size (no-op when already there).
- `load_for_model(path, processor | limits)`: decode + shrink; raises `io_utils.ImageReadError`.
- `ImageCache(capacity)`: a small LRU of shrunk images keyed by (path, limits): the G repeats of a training
  prompt and the four perception samples of one item decode each file once.
- `sample_images(sample, processor, cache)`: the PIL images of a sample (`images` if it holds pixels already,
  else its `image_paths` decoded).
- `live_images()` / `peak_live_images()` / `reset_peak()`: how many shrunk images are alive now / at most
  since the last reset (a registry of weak references; tests use it to show memory does not grow with N).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from refine_iqa.boxes import resize_settings, smart_resize_size
from refine_iqa.io_utils import ImageReadError, load_rgb

# EXIF orientations 5-8 rotate by 90 degrees: width and height swap.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112

_live: dict[int, weakref.ref] = {}  # id -> weak reference (PIL images are unhashable: no WeakSet)
_peak = [0]
_lock = threading.RLock()  # reentrant: a weakref callback may fire while it is held


def _forget(key: int) -> None:
    with _lock:
        _live.pop(key, None)


def _register(im: Image.Image) -> Image.Image:
    key = id(im)
    with _lock:
        _live[key] = weakref.ref(im, lambda _r, k=key: _forget(k))
        _peak[0] = max(_peak[0], len(_live))
    return im


def live_images() -> int:
    return len(_live)


def peak_live_images() -> int:
    return _peak[0]


def reset_peak() -> None:
    with _lock:
        _peak[0] = len(_live)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as `load_rgb` would return the image (EXIF rotation applied), from the header only."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "missing")
    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(_EXIF_ORIENTATION)
            except Exception:  # a broken EXIF block: load_rgb's exif_transpose would ignore it too
                orientation = None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not_an_image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(path, "truncated", str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return (h, w) if orientation in _SWAPPING_ORIENTATIONS else (w, h)


def check_readable(path: str | Path) -> tuple[int, int]:
    """Header-level check (no decode): raises ImageReadError as `load_rgb` would for a missing, empty,
    non-image, too small or too large file; returns (width, height). A truncated body shows only at decode."""
    from refine_iqa.io_utils import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE

    path = Path(path)
    if path.exists() and path.stat().st_size == 0:
        raise ImageReadError(path, "empty", "zero bytes")
    w, h = image_size(path)
    if w * h > MAX_IMAGE_PIXELS:
        raise ImageReadError(path, "too_large", f"{w}x{h} exceeds {MAX_IMAGE_PIXELS} pixels")
    if min(w, h) < MIN_IMAGE_SIDE:
        raise ImageReadError(path, "too_small", f"{w}x{h}, shorter side below {MIN_IMAGE_SIDE}")
    return w, h


def pixel_limits(processor: Any) -> dict[str, int]:
    """{"min_pixels", "max_pixels", "factor"} of a processor (or image processor), or a dict of them."""
    if isinstance(processor, dict):
        return {k: int(processor[k]) for k in ("min_pixels", "max_pixels", "factor")}
    return resize_settings(processor)


def _resize_like_processor(arr: np.ndarray, wh: tuple[int, int], processor: Any) -> np.ndarray:
    """Resize uint8 (H, W, 3) to (w, h) with the image processor's own resize (torchvision backend), else
    Pillow with the processor's resample filter."""
    w, h = wh
    image_processor = getattr(processor, "image_processor", processor)
    resample = getattr(image_processor, "resample", None)
    from transformers.image_processing_backends import TorchvisionBackend

    if isinstance(image_processor, TorchvisionBackend):
        import torch
        from transformers.image_utils import SizeDict

        if not arr.flags.writeable:  # torch refuses read-only memory (np.asarray of a PIL image)
            arr = arr.copy()
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]
        # The backend's plain resize (not Qwen2-VL's smart one, which would decide the size again).
        out = TorchvisionBackend.resize(image_processor, t, SizeDict(height=h, width=w), resample=resample)
        return out[0].permute(1, 2, 0).contiguous().numpy()
    filt = int(resample) if isinstance(resample, int) else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(arr).resize((w, h), resample=filt))


def shrink(image: Image.Image | np.ndarray, processor: Any) -> Image.Image:
    """The image at the size the processor would resize it to (RGB PIL)."""
    arr = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {arr.dtype} {arr.shape}")
    limits = pixel_limits(processor)
    h0, w0 = arr.shape[:2]
    wh = smart_resize_size(w0, h0, factor=limits["factor"], min_pixels=limits["min_pixels"],
                           max_pixels=limits["max_pixels"])
    if wh != (w0, h0):
        if isinstance(processor, dict):  # limits only: Pillow bicubic (the Qwen2-VL processor's filter)
            arr = np.asarray(Image.fromarray(arr).resize(wh, resample=Image.Resampling.BICUBIC))
        else:
            arr = _resize_like_processor(arr, wh, processor)
    return _register(Image.fromarray(np.ascontiguousarray(arr)))


def load_for_model(path: str | Path, processor: Any) -> Image.Image:
    """Decode `path` and shrink it to the processor's size; the full-size pixels are freed on return."""
    arr = load_rgb(path)
    try:
        return shrink(arr, processor)
    finally:
        del arr


class ImageCache:
    """LRU of shrunk images keyed by (path, limits); thread-safe (the prefetch thread fills it)."""

    def __init__(self, capacity: int = 16):
        self.capacity = max(int(capacity), 0)
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.decodes = 0  # files actually decoded (cache misses)

    def get(self, path: str | Path, processor: Any) -> Image.Image:
        limits = pixel_limits(processor)
        key = (str(path), limits["min_pixels"], limits["max_pixels"], limits["factor"])
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        im = load_for_model(path, processor)
        with self._lock:
            self.decodes += 1
            if self.capacity:
                self._items[key] = im
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        return im

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def sample_images(sample: dict, processor: Any, cache: ImageCache | None = None) -> list[Image.Image]:
    """The sample's images at the processor's size: decoded from `image_paths`, or `images` (pixels a caller
    passed in memory) shrunk. Raises ImageReadError for an unusable file."""
    if sample.get("images"):
        return [shrink(im, processor) for im in sample["images"]]
    paths = sample.get("image_paths") or []
    if cache is None:
        return [load_for_model(p, processor) for p in paths]
    return [cache.get(p, processor) for p in paths]
