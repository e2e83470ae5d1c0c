"""One function per workflow step, composed from the library; one module per rules file (mirroring
`rules/*.smk`): `data`, `model`, `stage1`, `stage2`, `evaluate`, and `common` for helpers shared by several.
The CLI and the workflow scripts import the function from its module (`from refine_iqa.stages.stage2 import
train_stage2`), so refine_iqa.steps follows each step into the module it runs and no other.

Each step takes the validated params dict (see config.py) and explicit input/output paths, writes its
outputs atomically, and logs to MLflow through `tracking` (a no-op when tracking is off).

`refine_iqa.stages.<name>` still works for outside callers: resolved lazily (PEP 562), so importing one
module never imports the others. Workflow code must not use it (refine_iqa.steps refuses: it could not
follow the step's code).
"""

from __future__ import annotations

import importlib

# name -> the module that defines it
_WHERE = {
    "common": ("_load", "_load_for_training", "_progress", "_tags", "perception_items", "scoring_eval_sets", "log"),
    "model": ("build_model", "warm_start"),
    "stage1": ("train_stage1",),
    "stage2": ("stage2_settings", "train_stage2"),  # the variants and run names: refine_iqa.variants
    "evaluate": ("eval_perception", "_cached", "_model_fingerprint", "_eval_fingerprint", "_journal_path",
                 "eval_scoring", "qbench_set", "eval_qbench", "eval_baselines"),
    "data": ("make_scenes", "_perception_sources", "curate_shard", "_synthesis_settings", "synthesize_shard",
             "synthesize_merge", "scoring_set"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'refine_iqa.stages' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))
