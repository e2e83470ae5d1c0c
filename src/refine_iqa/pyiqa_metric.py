"""Refine-IQA as a pyiqa metric: `pyiqa.create_metric("refine_iqa", pretrained_model_path=MODEL_DIR)`.

pyiqa 0.1.16 looks a metric name up in its `DEFAULT_CONFIGS` dict before anything else (its entry-point
plugin groups are only read later, when the network class is built), so a name cannot be added by an
installed entry point alone. Importing this module registers it: the config entry and the network class
`RefineIQA` in `ARCH_REGISTRY`. `import refine_iqa` also registers it when pyiqa is already imported.

The network wraps `refine_iqa.Scorer`, so both interfaces give the same numbers: a batch (N, 3, H, W) in
[0, 1] becomes N uint8 RGB images (x * 255, rounded: exact for images read from 8-bit files) and is scored
in batches. Nothing is downloaded: the model is the local folder given as `pretrained_model_path`.
"""

from __future__ import annotations

import math

import torch

METRIC_NAME = "refine_iqa"
ARCH_NAME = "RefineIQA"
SCORE_RANGE = "0, 5"  # prob: Eq. 8 lies in [0.5, 4.5]; numeric: the written number, clipped to [0, 4.999]

CONFIG = {
    "metric_opts": {"type": ARCH_NAME},
    "metric_mode": "NR",
    "lower_better": False,
    "score_range": SCORE_RANGE,
}


def tensor_to_images(x: torch.Tensor) -> list:
    """(N, 3, H, W) or (N, 1, H, W) floats in [0, 1] -> N uint8 (H, W, 3) arrays."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"refine_iqa: expected a float tensor (N, 3, H, W) in [0, 1], got "
                         f"{type(x).__name__} {tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    u8 = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return [img.permute(1, 2, 0).cpu().numpy() for img in u8]


class RefineIQA(torch.nn.Module):
    """The pyiqa network: a Refine-IQA model folder scored through `Scorer` (think / mode are its options)."""

    def __init__(self, pretrained_model_path=None, think: bool = False, mode: str = "prob", tags: str = "paper",
                 dtype: str = "float32", batch_size: int = 8, max_new_tokens: int = 256):
        super().__init__()
        from refine_iqa.inference import Scorer

        if pretrained_model_path is None:
            raise ValueError('refine_iqa: pass pretrained_model_path=<a Refine-IQA model folder> to '
                             'pyiqa.create_metric("refine_iqa", ...); no weights are downloaded')
        self.scorer = Scorer(pretrained_model_path, think=think, mode=mode, tags=tags, dtype=dtype,
                             batch_size=batch_size, max_new_tokens=max_new_tokens)
        self.vlm = self.scorer.model  # a submodule, so pyiqa's .to(device) moves the model
        self.last_results: list[dict] = []  # the Scorer's records of the last call (errors, interpretations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_results = self.scorer.score(tensor_to_images(x))
        # An unparsable answer (numeric mode, or a model that never wrote a score) is NaN, never a made-up value.
        return torch.tensor([math.nan if r["score"] is None else r["score"] for r in self.last_results],
                            dtype=torch.float32, device=x.device)


def register() -> None:
    """Add the metric to pyiqa (idempotent). Called when this module is imported."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS
    from pyiqa.utils.registry import ARCH_REGISTRY

    DEFAULT_CONFIGS[METRIC_NAME] = {**CONFIG, "metric_opts": dict(CONFIG["metric_opts"])}
    ARCH_REGISTRY.register(RefineIQA, name=ARCH_NAME, override=True)


register()
