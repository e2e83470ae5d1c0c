"""The Stage-2 runs of the workflow, declared once: the variants (main and the ablations of Tables 5-6) and
their training-seed replicates (ablations.seeds), with the one parser of their names. Read by the Stage-2
step (refine_iqa.stages.stage2), rules/common.smk, workflow_scripts/gen_dvc.py and the report; kept out of
refine_iqa.stages so that the report step does not read the Stage-2 training code (tests/test_steps.py)."""

from __future__ import annotations

# Stage-2 variants: the main run and the ablations of Tables 5-6.
STAGE2_VARIANTS = {
    "main": {},
    "no_stage1": {"init": "base"},
    "no_pd": {"pd": False},
    "no_pm": {"pm": False},
    "no_pd_no_pm": {"pd": False, "pm": False},
    "no_think": {"mode": "no_think"},
}
# A training-seed replicate of a variant: `<variant>_seed<k>` trains with seed `seed + k` (k >= 1, no leading
# zero). Offset 0 is the variant's own name (`main`, `no_pd`): one name per run, so `main_seed0` is refused.
SEED_SUFFIX = "_seed"


def parse_stage2_name(name: str) -> tuple[str, int]:
    """A Stage-2 run name -> (its variant, its seed offset). The one place that reads the `_seed<k>` suffix."""
    variant, offset = name, 0
    if SEED_SUFFIX in name:
        variant, _, k = name.rpartition(SEED_SUFFIX)
        if k and set(k) == {"0"}:
            raise ValueError(f"Stage-2 run name {name!r}: seed offset 0 is the variant's own name {variant!r} "
                             f"(replicates are {variant}{SEED_SUFFIX}1, {variant}{SEED_SUFFIX}2, ...)")
        if not (k.isascii() and k.isdigit()) or k.startswith("0"):
            raise ValueError(f"Stage-2 run name {name!r}: after {SEED_SUFFIX!r} comes the seed offset, a whole "
                             f"number from 1 up without leading zeros (e.g. {variant}{SEED_SUFFIX}1), not {k!r}")
        offset = int(k)
    if variant not in STAGE2_VARIANTS:
        raise ValueError(f"unknown Stage-2 variant {variant!r} (run name {name!r}); use one of "
                         f"{sorted(STAGE2_VARIANTS)}, optionally with a seed suffix like {variant!r}{SEED_SUFFIX}1")
    return variant, offset


def stage2_run_name(variant: str, offset: int) -> str:
    """The inverse of parse_stage2_name: offset 0 is the variant's own name."""
    return variant if offset == 0 else f"{variant}{SEED_SUFFIX}{offset}"


def stage2_runs(params: dict) -> list[str]:
    """Every Stage-2 run of the workflow, declared once (rules/common.smk, workflow_scripts/gen_dvc.py and the
    report read it): main and each enabled ablation variant, once per `ablations.seeds` offset."""
    a = params["ablations"]
    variants = ["main"] + (list(a["variants"]) if a["enabled"] else [])
    seeds = a["seeds"] if a["enabled"] else [0]
    return [stage2_run_name(v, k) for v in variants for k in seeds]
