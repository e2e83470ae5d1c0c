"""Synthetic scoring sets for the embedded configuration (no human MOS exists offline).

Both sets are labelled `synthetic: true` in every record: their scores are NOT human opinions.

- `build_synthetic_scoring_set`: random crops of offline photos and procedural scenes, a random global
  distortion (or none), and a PROXY MOS from a full-reference metric computed by pyiqa against the
  undistorted crop, mapped linearly to 0-100 (higher = better) by `METRIC_RANGES`.
- `build_brightness_set`: the easy, learnable signal measured in docs (score = mean brightness x 5):
  textured, tinted, noisy images whose label is computed from the saved pixels themselves.

Every item's randomness comes from stable_seed(seed, item id), so a set is a pure function of its arguments.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from refine_iqa.data.assemble import stable_seed
from refine_iqa.data.iqa_datasets import scale_mos
from refine_iqa.io_utils import load_rgb, save_image, write_jsonl

SPLITS = ("train", "test")

# Metric value that maps to proxy MOS 0 and value that maps to 100 (linear in between, clipped).
# A "from" larger than "to" means lower is better. Each span covers roughly the 2nd-98th percentile of the
# metric over the library's 35 types x 5 levels on 112-pixel crops (measured; see docs/synthesis.md).
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "psnr": (8.0, 38.0),
    "ssim": (0.1, 1.0),
    "ms_ssim": (0.4, 1.0),
    "fsim": (0.45, 1.0),
    "gmsd": (0.3, 0.0),
    "vif": (0.0, 1.0),
    "vsi": (0.65, 1.0),
    "nlpd": (0.85, 0.0),
}
# Smallest square input each pyiqa metric accepts (measured): ms_ssim needs five dyadic scales of an
# 11-pixel window. Smaller images are upsampled bicubically to this side for the metric only.
METRIC_MIN_SIDE = {"ms_ssim": 161, "vif": 33, "ssim": 11}

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "hubble_deep_field",
                  "immunohistochemistry", "retina")


def proxy_mos(values, metric: str) -> np.ndarray:
    """Map raw metric values to [0, 100], higher better, by the metric's METRIC_RANGES entry."""
    if metric not in METRIC_RANGES:
        raise ValueError(f"metric {metric!r} has no proxy-MOS mapping; choose one of {sorted(METRIC_RANGES)}")
    at0, at100 = METRIC_RANGES[metric]
    v = np.asarray(values, dtype=np.float64)
    return np.clip(100.0 * (v - at0) / (at100 - at0), 0.0, 100.0)


def default_scoring_sources(seed: int = 0, n_scenes: int = 8, scene_size: int = 256) -> dict[str, np.ndarray]:
    """skimage's offline colour photos plus `n_scenes` procedural scenes (seeded), keyed by a source name."""
    from skimage import data

    from refine_iqa.data.scenes import generate_scene, scene_seed

    out = {}
    for name in SKIMAGE_PHOTOS:
        img = getattr(data, name)()
        out[f"skimage:{name}"] = img[0] if isinstance(img, tuple) else img
    for i in range(n_scenes):
        out[f"scene:{seed}:{i}"] = generate_scene(scene_seed(seed, i), scene_size, scene_size)[0]
    return out


def _as_sources(images, seed: int) -> tuple[list[str], list[np.ndarray]]:
    if images is None:
        images = default_scoring_sources(seed)
    items = list(images.items()) if isinstance(images, Mapping) else [
        (str(x) if isinstance(x, (str, Path)) else f"image-{k}", x) for k, x in enumerate(images)]
    if not items:
        raise ValueError("build_synthetic_scoring_set: no source images given")
    names, arrays = [], []
    for name, x in items:
        arr = load_rgb(x) if isinstance(x, (str, Path)) else np.asarray(x)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"source image {name!r}: need uint8 RGB (H, W, 3), got {arr.dtype} {arr.shape}")
        names.append(name)
        arrays.append(np.ascontiguousarray(arr[..., :3]))
    return names, arrays


def random_square_crop(image: np.ndarray, rng: np.random.Generator, size: int,
                       scale: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """A square crop whose side is U(scale) x the shorter side, at a random place, resized to size x size."""
    h, w = image.shape[:2]
    side = max(1, round(rng.uniform(*scale) * min(h, w)))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(image[y:y + side, x:x + side])
    return np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def _check_counts(n_train, n_test, size, min_size=16):
    for key, v in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {v!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < min_size:
        raise ValueError(f"size must be an integer >= {min_size}, got {size!r}")


def _item_ids(prefix: str, n_train: int, n_test: int) -> list[tuple[str, str]]:
    # Ids name their split, so changing n_train never changes a test item (and vice versa).
    return [(f"{prefix}-{s}-{i:06d}", s) for s, n in zip(SPLITS, (n_train, n_test)) for i in range(n)]


class _Metric:
    """A pyiqa full-reference metric on CPU, fed uint8 batches; upsamples below the metric's minimum side."""

    def __init__(self, name: str, device: str = "cpu"):
        import pyiqa
        import torch

        self.torch = torch
        self.name = name
        self.min_side = METRIC_MIN_SIDE.get(name, 1)
        self.model = pyiqa.create_metric(name, device=device, as_loss=False)
        self.device = device

    def __call__(self, dist: np.ndarray, ref: np.ndarray) -> np.ndarray:
        torch = self.torch
        d, r = (torch.from_numpy(a).permute(0, 3, 1, 2).to(self.device, torch.float32) / 255.0 for a in (dist, ref))
        side = min(d.shape[-2:])
        if side < self.min_side:
            f = self.min_side / side
            size = (int(np.ceil(d.shape[-2] * f)), int(np.ceil(d.shape[-1] * f)))
            d, r = (torch.nn.functional.interpolate(t, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
                    for t in (d, r))
        with torch.no_grad():
            return self.model(d, r).detach().cpu().double().numpy().reshape(-1)


def _write_splits(out_dir: Path, records: list[dict]) -> dict:
    paths = {}
    for s in SPLITS:
        paths[s] = out_dir / f"scoring_{s}.jsonl"
        write_jsonl(paths[s], [r for r in records if r["split"] == s])
    mos = np.array([r["mos"] for r in records], dtype=np.float64)
    return {"n_train": sum(r["split"] == "train" for r in records),
            "n_test": sum(r["split"] == "test" for r in records), "train_path": paths["train"], "test_path": paths["test"],
            "mos_mean": float(mos.mean()) if mos.size else None, "mos_std": float(mos.std()) if mos.size else None}


def severity_mos(level: int) -> float:
    """The `severity` kind's MOS on 0-100: 100 for a clean image, 20 less per distortion level (level 5: 0),
    so the scaled MOS is 5 - level (4.9 for a clean image: `scale_mos` clips at 4.9)."""
    return 100.0 - 20.0 * level


def build_synthetic_scoring_set(images, out_dir: str | Path, *, n_train: int, n_test: int, seed: int,
                                metric: str = "ms_ssim", size: int = 112, clean_fraction: float = 0.1,
                                crop_scale: tuple[float, float] = (0.5, 1.0), batch_size: int = 64,
                                kind: str = "proxy", families: Sequence[str] | None = None) -> dict:
    """Distorted crops with a synthetic MOS; writes images/, scoring_train.jsonl, scoring_test.jsonl in `out_dir`.

    `images`: a sequence of uint8 RGB arrays or image paths, a mapping name -> either, or None for
    `default_scoring_sources(seed)`. Each item: a random source, a random square crop resized to `size`, then
    with probability `clean_fraction` no distortion, else a type drawn uniformly over the library's types (of
    `families` only, when given) and a level uniform in 1-5, applied to the whole image. The MOS: `kind`
    "proxy", the full-reference `metric` against the crop (`proxy_mos`); "severity", the level itself
    (`severity_mos`: what the eye sees grows with the level, whatever the metric says). Returns counts, paths
    and the MOS mean/std.
    """
    if kind not in ("proxy", "severity"):
        raise ValueError(f"data.scoring.synthetic.kind: expected proxy or severity here, got {kind!r}")
    _check_counts(n_train, n_test, size)
    if not 0 <= clean_fraction <= 1:
        raise ValueError(f"clean_fraction must be in [0, 1], got {clean_fraction}")
    if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if kind == "proxy":
        proxy_mos(0.0, metric)  # validates the metric name before any work
    distortions = importlib.import_module("refine_iqa.distortions")
    family_of = {spec.name: spec.family for spec in distortions.catalog()}
    if families is not None:
        known = sorted(set(family_of.values()))
        if not families or any(f not in known for f in families):
            raise ValueError(f"data.scoring.synthetic.families: expected a non-empty list of catalogue families "
                             f"{known} (or null for all), got {list(families)!r}")
    types = sorted(t for t in distortions.names() if families is None or family_of[t] in families)
    names, sources = _as_sources(images, seed)
    out_dir = Path(out_dir)
    items = _item_ids("syn", n_train, n_test)
    scorer = _Metric(metric) if items and kind == "proxy" else None
    records = []
    # Work in batches so memory stays flat however large the set is.
    for b in range(0, len(items), batch_size):
        refs, dists, meta = [], [], []
        for item_id, split in items[b:b + batch_size]:
            item_seed = stable_seed(seed, item_id)
            rng = np.random.default_rng(item_seed)
            k = int(rng.integers(len(sources)))
            ref = random_square_crop(sources[k], rng, size, crop_scale)
            if rng.uniform() < clean_fraction:
                name, level, dist = None, 0, ref
            else:
                name, level = types[int(rng.integers(len(types)))], int(rng.integers(1, 6))
                dist = distortions.apply(ref, name, level, seed=item_seed)
            path = out_dir / "images" / f"{item_id}.png"
            save_image(path, dist)
            refs.append(ref)
            dists.append(dist)
            meta.append((item_id, split, names[k], name, level, path))
        if kind == "proxy":
            values = scorer(np.stack(dists), np.stack(refs))
            # Two decimals keep the file stable against last-bit differences in the metric's float arithmetic.
            mos = np.round(proxy_mos(values, metric), 2)
        else:
            values = np.array([m[4] for m in meta], dtype=np.float64)  # the levels
            mos = np.array([severity_mos(int(v)) for v in values])
        for (item_id, split, src, name, level, path), m, v in zip(meta, mos, values):
            records.append({
                "id": item_id, "image_path": str(path), "mos": float(m),
                "mos_scaled": float(scale_mos(m, 0.0, 100.0)), "dataset": "synthetic", "synthetic": True,
                "split": split, "source": src, "distortion": name, "level": level,
                "metric": metric if kind == "proxy" else "severity", "metric_value": round(float(v), 6),
            })
    return _write_splits(out_dir, records)


def brightness_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured, tinted, noisy uint8 image around a random target brightness."""
    target = rng.uniform(0.03, 0.97)
    cells = int(rng.integers(2, 9))
    coarse = (rng.uniform(0, 255, size=(cells, cells))).astype(np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), np.float64) / 255.0
    texture = (texture - texture.mean()) * rng.uniform(0.05, 0.3)
    tint = rng.uniform(-0.08, 0.08, size=3)
    noise = rng.normal(0.0, rng.uniform(0.0, 0.04), size=(size, size, 3))
    img = target + texture[..., None] + (tint - tint.mean())[None, None, :] + noise
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def brightness_score(image: np.ndarray) -> tuple[float, float]:
    """(mos, mos_scaled) of an image: mos = 100 x mean brightness in [0, 1] (4 decimals), scaled by the
    project rule, i.e. round(min(5 x brightness, 4.9), 1) half-up."""
    mos = round(float(np.asarray(image, dtype=np.float64).mean()) / 255.0 * 100.0, 4)
    return mos, float(scale_mos(mos, 0.0, 100.0))


def build_brightness_set(out_dir: str | Path, *, n_train: int, n_test: int, seed: int, size: int = 112) -> dict:
    """The brightness task; labels come from the saved pixels. Same outputs as the synthetic scoring set."""
    _check_counts(n_train, n_test, size)
    out_dir = Path(out_dir)
    records = []
    for item_id, split in _item_ids("bright", n_train, n_test):
        img = brightness_image(np.random.default_rng(stable_seed(seed, item_id)), size)
        path = out_dir / "images" / f"{item_id}.png"
        save_image(path, img)
        mos, scaled = brightness_score(img)
        records.append({"id": item_id, "image_path": str(path), "mos": mos, "mos_scaled": scaled,
                        "dataset": "brightness", "synthetic": True, "split": split})
    return _write_splits(out_dir, records)
