"""Stage-2-main's training-seed spread, measured once outside the workflow and applied where it still holds.

Table 5 trains each ablation variant once (`ablations.seeds: [0]`, the budget), so the report cannot tell a
variant's gap to main from the noise of training main again with another seed. `benchmarks/stage2_seed_spread.py`
measures that noise: it trains Stage-2-main again with seed offsets 1..K-1 from the workflow's own Stage-1 model
and data (offset 0 is the workflow's run) and writes MEASURED. The report uses a measurement only when its
`fingerprint` equals this checkout's: a digest of the code and the settings of every step that produces
Stage-2-main's scoring predictions (LINEAGE; refine_iqa.steps derives both), so any edit to that code or those
settings makes the measurement "stale" and the report says so instead of using it.

A variant's gap is the difference of two training runs, each with main's seed noise (std s), so its own noise
is about s * sqrt(2); the report calls a gap "within the measured seed noise" when |gap| <= 2 * sqrt(2) * s
(NOISE_SIGMAS standard deviations of the difference).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from refine_iqa import steps
from refine_iqa.io_utils import read_json

MEASURED_REL = "benchmarks/measured/stage2_seed_spread.json"  # relative to the repository (a workflow input)
MEASURED = steps.REPO_DIR / MEASURED_REL
# The steps whose code and settings decide Stage-2-main's scoring predictions (data, model, both stages, eval).
LINEAGE = ("scenes", "curate_shard", "curate_merge", "synthesize_shard", "synthesize_merge", "scoring_set",
           "build_model", "warm_start", "stage1", "stage2", "eval_scoring")
NOISE_SIGMAS = 2.0


def lineage_fingerprint(params: dict) -> str:
    """sha256 (16 hex) over each LINEAGE step's code version and settings in the resolved `params`."""
    parts = {s: [steps.code_version(s), steps.config_values(params, s)] for s in LINEAGE}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def summarise(per_seed: dict[str, float]) -> dict:
    """{n, mean, std (sample, n - 1), min, max, noise} of main's SRCC over seeds; noise = NOISE_SIGMAS * sqrt(2) *
    std, the band a gap between two single runs stays within by seed noise alone. NaN values are left out."""
    xs = [float(v) for v in per_seed.values() if v is not None and not math.isnan(float(v))]
    n = len(xs)
    mean = sum(xs) / n if n else math.nan
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n >= 2 else math.nan
    return {"n": n, "mean": mean, "std": std, "min": min(xs) if xs else math.nan, "max": max(xs) if xs else math.nan,
            "noise": NOISE_SIGMAS * math.sqrt(2.0) * std}


def measured_spread(params: dict, path: Path = MEASURED) -> dict:
    """{"status": "applies" | "stale" | "absent", "path", and for a measurement: its fields}. Raises ValueError
    naming the file when it is not the JSON the benchmark writes."""
    path = Path(path)
    if not path.is_file():
        return {"status": "absent", "path": str(path)}
    try:
        m = read_json(path)
        per_seed, fp = m["per_seed"], m["fingerprint"]  # per_seed: offset -> dataset -> measures
        datasets = sorted({ds for by_ds in per_seed.values() for ds in by_ds})
        summary = {ds: summarise({k: by_ds[ds]["srcc_prob_think"] for k, by_ds in per_seed.items() if ds in by_ds})
                   for ds in datasets}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a seed-spread measurement ({type(e).__name__}: {e}); re-create it with "
                         f"`python benchmarks/stage2_seed_spread.py` or delete it") from e
    status = "applies" if fp == lineage_fingerprint(params) else "stale"
    return {**m, "status": status, "path": str(path), "summary": summary}
