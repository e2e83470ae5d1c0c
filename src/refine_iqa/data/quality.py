"""Quality filter: score each source image with pyiqa no-reference metrics; keep it only if all pass.

The paper keeps images that Q-Align, DBCNN and HyperIQA all score above 80 (0-100). Those need weight files,
so each metric takes an optional local `weights` path (given to pyiqa as `pretrained_model_path`). Metrics
that need no file (piqe, entropy) make the offline default.

Pass rule: direction "higher" -> score > threshold; "lower" -> score < threshold (strict, as the paper's
"above 80"). The direction defaults to pyiqa's own `lower_better` for the metric; a NaN score fails.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_METRIC_CACHE: dict[tuple, object] = {}  # one instance per (metric, weights, device) per process


@dataclass(frozen=True)
class QualityMetricSpec:
    metric: str
    threshold: float
    direction: str | None = None  # "higher" | "lower" is better; None: take pyiqa's lower_better
    weights: str | None = None  # local weight file for learned metrics

    @classmethod
    def parse(cls, text: str) -> "QualityMetricSpec":
        """`NAME:THRESHOLD[:higher|lower[:WEIGHTS]]`, e.g. `piqe:50:lower` or `dbcnn:0.6:higher:/w/dbcnn.pth`."""
        parts = text.split(":", 3)
        if len(parts) < 2 or not parts[0]:
            raise ValueError(f"quality metric {text!r}: write NAME:THRESHOLD[:higher|lower[:WEIGHTS]]")
        try:
            threshold = float(parts[1])
        except ValueError:
            raise ValueError(f"quality metric {text!r}: threshold {parts[1]!r} is not a number") from None
        direction = parts[2] if len(parts) > 2 and parts[2] else None
        weights = parts[3] if len(parts) > 3 and parts[3] else None
        return cls(parts[0], threshold, direction, weights)

    @classmethod
    def from_dict(cls, d: dict, where: str = "quality") -> "QualityMetricSpec":
        unknown = set(d) - {"metric", "threshold", "direction", "weights"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: metric, threshold, direction, weights")
        if "metric" not in d or "threshold" not in d:
            raise ValueError(f"{where}: needs 'metric' and 'threshold'")
        return cls(str(d["metric"]), float(d["threshold"]), d.get("direction"), d.get("weights"))


def metric_info(name: str) -> dict:
    """pyiqa's declared properties of a metric (mode, lower_better, score_range) without building it."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    if name not in DEFAULT_CONFIGS:
        raise ValueError(f"quality metric {name!r} is not a pyiqa metric; see pyiqa.list_models(metric_mode='NR')")
    cfg = DEFAULT_CONFIGS[name]
    return {
        "metric_mode": cfg.get("metric_mode"),
        "lower_better": bool(cfg.get("lower_better", False)),
        "score_range": cfg.get("score_range"),
    }


def _resolve(spec: QualityMetricSpec) -> QualityMetricSpec:
    info = metric_info(spec.metric)
    if info["metric_mode"] != "NR":
        raise ValueError(
            f"quality metric {spec.metric!r} is full-reference ({info['metric_mode']}); source images have no "
            "reference, use a no-reference metric (piqe, entropy, or a learned one such as dbcnn with weights)"
        )
    own = "lower" if info["lower_better"] else "higher"
    direction = spec.direction or own
    if direction not in ("higher", "lower"):
        raise ValueError(f"quality metric {spec.metric!r}: direction {direction!r} must be 'higher' or 'lower'")
    if direction != own:
        warnings.warn(
            f"quality metric {spec.metric!r}: pyiqa says {own} is better, the filter uses {direction}; "
            "the threshold then works as the opposite bound",
            stacklevel=3,
        )
    if spec.weights is not None and not Path(spec.weights).is_file():
        raise FileNotFoundError(f"quality metric {spec.metric!r}: weights file {spec.weights!r} not found")
    return QualityMetricSpec(spec.metric, float(spec.threshold), direction, spec.weights)


def get_metric(name: str, weights: str | None = None, device: str = "cpu"):
    """A pyiqa metric, created once per process (creating a learned metric loads its network)."""
    key = (name, weights, device)
    if key not in _METRIC_CACHE:
        import pyiqa

        kwargs = {"pretrained_model_path": weights} if weights else {}
        try:
            _METRIC_CACHE[key] = pyiqa.create_metric(name, device=device, **kwargs)
        except Exception as e:  # pyiqa raises many kinds; a download attempt offline is the usual one
            hint = "" if weights else "; it may need a weight file: give `weights` (a local path)"
            raise RuntimeError(f"quality metric {name!r} could not be created: {type(e).__name__}: {e}{hint}") from e
    return _METRIC_CACHE[key]


# pyiqa's input protocol (pyiqa 0.1.16): RGB float32 in [0, 1], shape (1, 3, H, W). Its test sets are scored
# at the size pyiqa's own benchmark uses (default_dataset_configs.yml): SPAQ resized so the shorter side is
# 448 (torchvision Resize(448): bilinear, antialiased), the others at their released size (KonIQ 512x384,
# LIVE-C 500x500, ...). Any image whose shorter side exceeds 1024 is resized the SPAQ way too: pyiqa has no
# test set that large, and some metrics (entropy: ~2 GB per megapixel) cannot take 12 MP photos.
PYIQA_DATASET_SHORT_SIDE = {"spaq": 448}
LARGE_SHORT_SIDE = 1024
LARGE_RESIZE_TO = 448


def protocol_short_side(width: int, height: int, dataset: str | None = None) -> int | None:
    """The shorter side an image is resized to before a pyiqa metric sees it (None: keep its size)."""
    if dataset in PYIQA_DATASET_SHORT_SIDE:
        return PYIQA_DATASET_SHORT_SIDE[dataset]
    return LARGE_RESIZE_TO if min(width, height) > LARGE_SHORT_SIDE else None


def metric_input(image: np.ndarray, dataset: str | None = None):
    """A uint8 RGB image as pyiqa metrics take it: resized per `protocol_short_side`, then (1, 3, H, W) in [0, 1]."""
    import torch
    from PIL import Image

    h, w = image.shape[:2]
    short = protocol_short_side(w, h, dataset)
    if short is not None and short != min(w, h):
        # torchvision Resize(int): the shorter side becomes `short`, the longer int(short * long / short_side)
        size = (int(short * w / h), short) if h <= w else (short, int(short * h / w))
        image = np.array(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=None)).permute(2, 0, 1)[None].float().div_(255.0)


def passes(score: float, threshold: float, direction: str) -> bool:
    if score is None or math.isnan(score):
        return False
    return score > threshold if direction == "higher" else score < threshold


@dataclass
class QualityResult:
    passed: bool
    scores: dict[str, float]
    failures: list[str]


class QualityFilter:
    """All metrics must pass; scores are kept for the record. An empty filter passes everything."""

    def __init__(self, specs: list[QualityMetricSpec] | tuple = (), device: str = "cpu"):
        self.specs = [_resolve(s if isinstance(s, QualityMetricSpec) else QualityMetricSpec.from_dict(s)) for s in specs]
        names = [s.metric for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"quality metrics listed twice: {names}")
        self.device = device

    def score(self, image: np.ndarray) -> dict[str, float]:
        if not self.specs:
            return {}
        import torch

        x = metric_input(np.asarray(image, dtype=np.uint8))  # bounded size (protocol_short_side)
        scores = {}
        for spec in self.specs:
            metric = get_metric(spec.metric, spec.weights, self.device)
            with torch.no_grad():
                out = metric(x.to(self.device))
            scores[spec.metric] = float(torch.as_tensor(out, dtype=torch.float64).flatten().mean())
        return scores

    def __call__(self, image: np.ndarray) -> QualityResult:
        scores = self.score(image)
        failures = []
        for spec in self.specs:
            s = scores[spec.metric]
            if not passes(s, spec.threshold, spec.direction):
                op = ">" if spec.direction == "higher" else "<"
                failures.append(f"{spec.metric}={s:.3f} not {op} {spec.threshold:g}")
        return QualityResult(not failures, {k: round(v, 4) for k, v in scores.items()}, failures)

    def describe(self) -> list[dict]:
        return [{"metric": s.metric, "threshold": s.threshold, "direction": s.direction, "weights": s.weights}
                for s in self.specs]
