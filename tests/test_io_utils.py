"""Atomic writes and safe image reading: bad files give a reason, interrupted writes leave nothing behind."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from refine_iqa.io_utils import (ImageReadError, atomic_write_json, atomic_write_text, load_rgb, read_json,
                                 read_jsonl, write_jsonl)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": np.float32(1.5), "y": np.arange(2)})
    assert read_json(p) == {"x": 1.5, "y": [0, 1]}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "m.jsonl"
    write_jsonl(p, [{"a": 1}])

    def records():
        yield {"a": 2}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_jsonl(p, records())
    assert read_jsonl(p) == [{"a": 1}]
    assert [f.name for f in tmp_path.iterdir()] == ["m.jsonl"]


def test_read_jsonl_names_the_bad_line(tmp_path):
    p = tmp_path / "x.jsonl"
    atomic_write_text(p, '{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"x.jsonl: line 2: invalid JSON"):
        read_jsonl(p)


def _png_header(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + iend


@pytest.mark.parametrize("maker,reason", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("not an image"), "not_an_image"),
    (lambda p: p.write_bytes(_png_header(100000, 100000)), "too_large"),
    (lambda p: Image.new("RGB", (10, 10)).save(p), "too_small"),
])
def test_bad_images_give_a_reason(tmp_path, maker, reason):
    p = tmp_path / "img.png"
    maker(p)
    with pytest.raises(ImageReadError) as e:
        load_rgb(p)
    assert e.value.reason == reason and str(p) in str(e.value)


def test_truncated_jpeg(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(ImageReadError) as e:
        load_rgb(p)
    assert e.value.reason == "truncated"


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
def test_odd_modes_are_converted_to_rgb(tmp_path, mode):
    p = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    Image.new(mode, (40, 40)).save(p)
    arr = load_rgb(p)
    assert arr.shape == (40, 40, 3) and arr.dtype == np.uint8


def test_exif_orientation_is_applied(tmp_path):
    p = tmp_path / "r.jpg"
    im = Image.new("RGB", (60, 40), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(p, exif=exif)
    assert load_rgb(p).shape == (60, 40, 3)


def test_exif_orientation_from_the_header(tmp_path, monkeypatch):
    from PIL import Image, PngImagePlugin

    from refine_iqa.io_utils import exif_orientation

    exif = Image.Exif()
    exif[0x0112] = 6
    img = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    for name, kw in [("a.png", {"exif": exif}), ("b.jpg", {"exif": exif}), ("c.png", {}), ("d.jpg", {})]:
        img.save(tmp_path / name, **kw)
    # A PNG's pixels are not decoded to find out (Pillow's own getexif() would).
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: pytest.fail("decoded a PNG"))
    got = {}
    for name in ("a.png", "b.jpg", "c.png", "d.jpg"):
        with Image.open(tmp_path / name) as im:
            got[name] = exif_orientation(im)
    assert got == {"a.png": 6, "b.jpg": 6, "c.png": 1, "d.jpg": 1}
