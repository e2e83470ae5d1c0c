"""File I/O shared by every stage: atomic writes, JSON Lines, and safe image reading.

Everything that writes a result goes through `atomic_write*` so an interrupted job never leaves a
half-written file behind (write to a temporary file in the same folder, fsync, then rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

# Largest image accepted (pixels). Pillow's own bomb guard trips at 2x its MAX_IMAGE_PIXELS; we refuse
# anything above this explicitly so a decompression bomb is quarantined, never decoded.
MAX_IMAGE_PIXELS = 8192 * 8192
MIN_IMAGE_SIDE = 32


class ImageReadError(ValueError):
    """An image file that cannot be used; `reason` is a short machine-readable cause."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        msg = f"{path}: {reason}" + (f" ({detail})" if detail else "")
        super().__init__(msg)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, **kw) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False, **kw)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, dumps(obj, indent=indent, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from None


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records atomically, one JSON object per line; returns the count."""
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(dumps(r) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())
    return n


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {lineno}: invalid JSON ({e.msg}); fix or delete that line") from None
    return out


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record durably (used for resumable logs; a line is either whole or absent on crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def load_rgb(path: str | os.PathLike, *, min_side: int = MIN_IMAGE_SIDE, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3) with EXIF orientation applied.

    Raises ImageReadError with a short reason (missing, empty, not_an_image, truncated, too_small,
    too_large, unsupported_mode) for anything unusable. Grey, palette, RGBA, CMYK and 16-bit images are
    converted to 8-bit RGB (alpha composited on black, 16-bit scaled down).
    """
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    # Some libraries (pyiqa's dataset module) switch this on globally; a truncated file must fail here.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "missing")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty", "zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageReadError(path, "too_large", f"{w}x{h} exceeds {max_pixels} pixels")
                if min(w, h) < min_side:
                    raise ImageReadError(path, "too_small", f"{w}x{h}, shorter side below {min_side}")
                im.load()
                im = ImageOps.exif_transpose(im)
                return pil_to_rgb_array(im, path)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(path, "too_large", str(e)) from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not_an_image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(path, "truncated", str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def exif_orientation(im) -> int:
    """EXIF orientation (1 = upright) of an opened image, read from the header without decoding pixels.

    Pillow's `getexif()` on a PNG decodes the whole image to look for an eXIf chunk after the pixels; here a
    PNG counts only the chunk found before them (what `Image.open` read), which is where writers put it.
    """
    from PIL import Image

    if im.format == "PNG":
        raw = im.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(0x0112, 1))
    return int(im.getexif().get(0x0112, 1))


def pil_to_rgb_array(im, path: str | os.PathLike = "<image>") -> np.ndarray:
    """Convert any Pillow image mode to uint8 RGB."""
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im)
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as e:
        raise ImageReadError(path, "unsupported_mode", f"{mode}: {e}") from None


def save_image(path: str | os.PathLike, image: np.ndarray, **pil_kwargs) -> None:
    """Save a uint8 RGB array atomically (format from the suffix; PNG is lossless)."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format=_pil_format(path), **pil_kwargs)


def _pil_format(path: Path) -> str:
    ext = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}.get(ext, "PNG")
