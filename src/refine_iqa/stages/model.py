"""The steps of rules/model.smk: build the embedded tiny base model, and its format warm start."""

from __future__ import annotations

from pathlib import Path

from refine_iqa import model_card, tracking
from refine_iqa.io_utils import read_jsonl, write_jsonl
from refine_iqa.compute import setup_compute
from refine_iqa.stages.common import _load, _progress, _tags, perception_items


def build_model(params: dict, out_dir) -> Path:
    from refine_iqa.model.build_tiny import build_tiny_model

    t = params["model"]["tiny"]
    out = build_tiny_model(out_dir, seed=t["seed"], min_pixels=params["model"]["min_pixels"],
                           max_pixels=params["model"]["max_pixels"], vocab_size=t["vocab_size"],
                           hidden_size=t["hidden_size"], num_layers=t["num_layers"])
    model_card.write_training_card(params, out, stage="build")
    return out


def warm_start(params: dict, model_dir, manifest_path, scoring_train_path, out_dir, curve_path) -> Path:
    """EMBEDDED ONLY: format warm start on random answers over all four output formats."""
    from refine_iqa.model.loading import save_model_and_processor
    from refine_iqa.rl.samples import build_stage1_train, build_stage2
    from refine_iqa.rl.warmstart import answer_families, warm_start as _warm

    device = setup_compute(params)
    ws = params["warmstart"]
    model, processor = _load(params, model_dir, device)
    tags = _tags(params)
    items = perception_items(manifest_path, "train")
    scoring = read_jsonl(scoring_train_path)
    samples = build_stage1_train(items, processor, task_mix={"description": 1, "grounding": 1}, fr_fraction=0.5,
                                 seed=params["seed"], tags=tags)
    samples += build_stage2(scoring, think=True, tags=tags) + build_stage2(scoring, think=False, tags=tags)
    # A narrowed family list (data.perception.synthesize.families) makes the random family answers come from
    # the data's own label set, so the start is even over the answers the task can have (docs/learnability.md);
    # with all 12 families the catalogue default (and its random stream) is kept.
    narrowed = params["data"]["perception"]["synthesize"]["families"] is not None
    families = answer_families(samples) if narrowed else None
    with tracking.stage_run("warmstart", params["tracking"], params={"warmstart": ws, "model": params["model"]}) as run:
        losses = _warm(model, processor, samples, steps=ws["steps"], learning_rate=ws["learning_rate"],
                       batch_size=ws["batch_size"], seed=params["seed"], tags=tags, think_words=ws["think_words"],
                       families=families,
                       progress=_progress("warmstart"))
        curve = [{"step": i + 1, "loss": v} for i, v in enumerate(losses)]
        for rec in curve[:: max(1, len(curve) // 100)]:
            run.log_metrics({"warmstart/loss": rec["loss"]}, step=rec["step"])
        write_jsonl(curve_path, curve)
        save_model_and_processor(model, processor, out_dir)
        model_card.write_training_card(params, out_dir, stage="warmstart", base_model=model_dir,
                                       data={"manifest": manifest_path, "scoring_train": scoring_train_path})
    return Path(out_dir)
