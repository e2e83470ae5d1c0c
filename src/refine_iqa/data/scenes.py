"""Procedurally generated scenes: textured backgrounds with 2-3 named shapes and exact boxes.

These give the embedded configuration unlimited source images whose object names and boxes are known
exactly, so the whole data engine (COCO loader included) runs without any download. Each scene is a pure
function of its seed.

Boxes follow the project convention `[x1, y1, x2, y2]`, x2/y2 exclusive, tight around the drawn pixels.
Objects never share a pixel (so no box is changed by occlusion) and their boxes overlap by at most
`max_iou`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from refine_iqa.data.objects import box_iou
from refine_iqa.io_utils import atomic_write_json, save_image

# Saturated object colours; backgrounds are kept low-saturation and mid-grey so every colour word stays
# true against them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 220, 30),
    "purple": (135, 45, 175),
    "orange": (245, 130, 20),
    "white": (248, 248, 248),
    "black": (12, 12, 12),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon")

MAX_ATTEMPTS_PER_OBJECT = 200
MAX_SCENE_RESTARTS = 50


def category_names() -> list[str]:
    """Every object name a scene can contain, in a fixed order (COCO category ids are 1 + index)."""
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def scene_seed(seed: int, index: int) -> int:
    """Independent, stable seed for scene `index` of a dataset seeded with `seed`."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _shape_mask(shape: str, size: int, angle: float) -> np.ndarray:
    """Binary (size, size) mask of `shape` filling a square cell; polygons are rotated by `angle` radians."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    c = (size - 1) / 2.0
    r = (size - 1) / 2.0

    def polygon(points_polar):
        pts = [(c + rad * math.cos(a + angle), c + rad * math.sin(a + angle)) for rad, a in points_polar]
        draw.polygon(pts, fill=255)

    if shape == "circle":
        draw.ellipse([0, 0, size - 1, size - 1], fill=255)
    elif shape == "ring":
        draw.ellipse([0, 0, size - 1, size - 1], fill=255)
        hole = max(2, int(round(size * 0.28)))
        draw.ellipse([hole, hole, size - 1 - hole, size - 1 - hole], fill=0)
    elif shape == "square":
        draw.rectangle([0, 0, size - 1, size - 1], fill=255)
    elif shape == "triangle":
        polygon([(r, -math.pi / 2 + k * 2 * math.pi / 3) for k in range(3)])
    elif shape == "diamond":
        # Upright rhombus, never rotated: a turned diamond would just be a turned square.
        w = 0.62 * r
        draw.polygon([(c, 0), (c + w, c), (c, size - 1), (c - w, c)], fill=255)
    elif shape == "hexagon":
        polygon([(r, k * math.pi / 3) for k in range(6)])
    elif shape == "star":
        polygon([(r if k % 2 == 0 else r * 0.45, -math.pi / 2 + k * math.pi / 5) for k in range(10)])
    elif shape == "cross":
        t = max(2, int(round(size * 0.34)))
        lo = (size - t) // 2
        draw.rectangle([lo, 0, lo + t - 1, size - 1], fill=255)
        draw.rectangle([0, lo, size - 1, lo + t - 1], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    return np.asarray(mask) > 127


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    # Near-grey: far enough from every object colour that the colour word picks out the object.
    grey = rng.uniform(100, 160)
    return np.clip(grey + rng.uniform(-12, 12, size=3), 0, 255)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A float (H, W, 3) textured background: gradient, smooth noise, stripes or checks, plus grain."""
    kind = rng.choice(["gradient", "noise", "stripes", "checks"])
    a, b = _muted_colour(rng), _muted_colour(rng)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(theta) + yy * np.sin(theta)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    elif kind == "noise":
        cells = int(rng.integers(3, 9))
        coarse = rng.uniform(0, 255, size=(cells, cells)).astype(np.uint8)
        t = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float64) / 255.0
    elif kind == "stripes":
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(6, 24)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    else:
        cell = int(rng.integers(8, 24))
        t = ((xx // cell + yy // cell) % 2) * 0.8 + 0.1
    img = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    return img + rng.normal(0, 3.0, size=img.shape)


def _object_pixels(rng: np.random.Generator, colour: tuple[int, int, int], h: int, w: int) -> np.ndarray:
    """Colour with a soft lighting gradient and grain, so distortions inside the object are visible."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = rng.uniform(0, 2 * np.pi)
    shade = (xx * np.cos(theta) + yy * np.sin(theta)) / max(h, w)
    base = np.asarray(colour, np.float64)[None, None, :]
    # Shade towards black/white by up to 10% of the way so the colour word stays right.
    light = 0.10 * shade[..., None]
    img = np.where(light >= 0, base + (255 - base) * light, base * (1 + light))
    return img + rng.normal(0, 4.0, size=img.shape)


def _try_scene(rng, width, height, n, max_iou, min_side_px, max_side_px):
    shapes = list(rng.choice(SHAPES, size=n, replace=False))
    colours = list(rng.choice(list(COLOURS), size=n, replace=False))
    occupied = np.zeros((height, width), bool)
    placed: list[tuple[str, str, list[int], np.ndarray]] = []
    for shape, colour in zip(shapes, colours):
        for _ in range(MAX_ATTEMPTS_PER_OBJECT):
            size = int(rng.integers(min_side_px, max_side_px + 1))
            angle = float(rng.uniform(0, 2 * np.pi))
            cell = _shape_mask(shape, size, angle)
            x0 = int(rng.integers(0, width - size + 1))
            y0 = int(rng.integers(0, height - size + 1))
            mask = np.zeros((height, width), bool)
            mask[y0 : y0 + size, x0 : x0 + size] = cell
            ys, xs = np.nonzero(mask)
            box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            if min(box[2] - box[0], box[3] - box[1]) < min_side_px:
                continue  # a rotated triangle/star can come out narrower than its cell
            if (mask & occupied).any():
                continue
            if any(box_iou(box, other[2]) >= max_iou for other in placed):
                continue
            occupied |= mask
            placed.append((colour, shape, box, mask))
            break
        else:
            return None
    return placed


def generate_scene(
    seed: int,
    width: int = 112,
    height: int = 112,
    n_objects: tuple[int, int] = (2, 3),
    *,
    max_iou: float = 0.1,
    min_box_frac: float = 0.15,
    max_box_frac: float = 0.45,
) -> tuple[np.ndarray, list[dict]]:
    """Draw one scene; returns (uint8 RGB (H, W, 3), [{"name": "red circle", "box": [x1, y1, x2, y2]}, ...]).

    `n_objects` is the inclusive (min, max) object count; every box side is at least `min_box_frac` of the
    shorter image side; the drawing cell is at most `max_box_frac` of it.
    """
    lo, hi = int(n_objects[0]), int(n_objects[1])
    if not 1 <= lo <= hi <= len(SHAPES):
        raise ValueError(f"n_objects={n_objects}: need 1 <= min <= max <= {len(SHAPES)}")
    if width < 16 or height < 16:
        raise ValueError(f"scene size {width}x{height} is too small (need at least 16x16)")
    if not 0 < min_box_frac <= max_box_frac <= 1:
        raise ValueError(f"min_box_frac={min_box_frac}, max_box_frac={max_box_frac}: need 0 < min <= max <= 1")
    short = min(width, height)
    min_side_px = max(1, math.ceil(min_box_frac * short))
    max_side_px = max(min_side_px, int(max_box_frac * short))
    rng = np.random.default_rng(seed)
    for _ in range(MAX_SCENE_RESTARTS):
        n = int(rng.integers(lo, hi + 1))
        placed = _try_scene(rng, width, height, n, max_iou, min_side_px, max_side_px)
        if placed is not None:
            break
    else:
        raise RuntimeError(
            f"could not place {n_objects} objects in a {width}x{height} scene (seed {seed}); "
            "lower n_objects or min_box_frac, or use a larger image"
        )
    canvas = _background(rng, height, width)
    for colour, _shape, box, mask in placed:
        x1, y1, x2, y2 = box
        patch = _object_pixels(rng, COLOURS[colour], y2 - y1, x2 - x1)
        sub = mask[y1:y2, x1:x2]
        canvas[y1:y2, x1:x2][sub] = patch[sub]
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    objects = [{"name": f"{colour} {shape}", "box": box} for colour, shape, box, _ in placed]
    return image, objects


def write_scene_dataset(
    out_dir: str | Path,
    n: int,
    seed: int,
    width: int = 112,
    height: int = 112,
    *,
    n_objects: tuple[int, int] = (2, 3),
    max_iou: float = 0.1,
    min_box_frac: float = 0.15,
) -> Path:
    """Write `n` scenes as `images/scene-000000.png`... plus COCO instances `annotations.json`; returns its path.

    Category ids are fixed (1 + index in `category_names()`), so datasets of any size share them.
    """
    if n < 0:
        raise ValueError(f"n={n}: the number of scenes cannot be negative")
    out_dir = Path(out_dir)
    names = category_names()
    cat_id = {name: i + 1 for i, name in enumerate(names)}
    images, annotations = [], []
    for i in range(n):
        image, objects = generate_scene(
            scene_seed(seed, i), width, height, n_objects, max_iou=max_iou, min_box_frac=min_box_frac
        )
        file_name = f"scene-{i:06d}.png"
        save_image(out_dir / "images" / file_name, image)
        images.append({"id": i + 1, "file_name": file_name, "width": width, "height": height})
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cat_id[obj["name"]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    coco = {
        "info": {"description": "Refine-IQA procedural scenes", "seed": seed, "width": width, "height": height},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cat_id[name], "name": name, "supercategory": "shape"} for name in names],
    }
    ann_path = out_dir / "annotations.json"
    atomic_write_json(ann_path, coco)
    return ann_path
