"""Helpers shared by the step functions of the model, training and evaluation rules files (rules/common.smk
holds the rules' own shared helpers; no step runs here): model loading, progress lines, tag style, the
perception split, and the scoring evaluation sets (evaluation and the report read them). The device setup
lives in refine_iqa/compute.py, so that the data steps, which need nothing else, do not read this file.
"""

from __future__ import annotations

import logging

from refine_iqa import prompts
from refine_iqa.io_utils import read_jsonl

log = logging.getLogger("refine_iqa")


def _load(params: dict, model_dir, device: str):
    from refine_iqa.model.loading import load_model_and_processor

    m = params["model"]
    return load_model_and_processor(model_dir, dtype=m["dtype"], attn_implementation=m["attn_implementation"],
                                    device=device, min_pixels=m["min_pixels"], max_pixels=m["max_pixels"])


def _load_for_training(params: dict, model_dir, device: str, grpo_settings: dict, checkpoints, *, seed: int):
    """(training args, model, processor). The GRPOConfig comes first: with DeepSpeed ZeRO-3 its DeepSpeed
    config must exist before `from_pretrained` so that every process loads only its partition. `seed`: the
    run's training seed (a Stage-2 replicate's is the global seed plus its offset); the trainer seeds from it."""
    from refine_iqa.rl.grpo import training_args

    args = training_args(grpo_settings, seed=seed, device=device, checkpoint_dir=checkpoints)
    model, processor = _load(params, model_dir, device)
    return args, model, processor


def _progress(name: str):
    """A progress callback printing at most ~20 lines (jobs log to files; tqdm bars there are noise)."""
    state = {"last": -1}

    def report(done: int, total: int, *extra):
        pct = int(100 * done / max(total, 1)) // 5
        if pct != state["last"] or done == total:
            state["last"] = pct
            tail = f" loss={extra[0]:.4f}" if extra else ""
            print(f"[{name}] {done}/{total}{tail}", flush=True)

    return report


def _tags(params: dict):
    return prompts.get_tag_style(params["prompts"]["tags"])


def perception_items(manifest_path, split: str) -> list[dict]:
    return [r for r in read_jsonl(manifest_path)
            if r.get("split") == split and r.get("review", {}).get("status") != "rejected"]


def scoring_eval_sets(params: dict, scoring_test_path) -> dict[str, list[dict]]:
    """name -> records with image_path, mos (raw label, sign-corrected as `label`) and mos_scaled."""
    sc = params["data"]["scoring"]
    if sc["source"] == "synthetic":
        recs = read_jsonl(scoring_test_path)
        for r in recs:
            r.setdefault("label", r["mos"])
        return {"synthetic": recs}
    from refine_iqa.data import iqa_datasets

    out = {}
    for name in sc["eval_datasets"]:
        df = iqa_datasets.load(name, sc["roots"][name], split_seed=params["seed"])  # the split scoring_set trained on
        df = df[df["split"] == "test"]
        out[name] = [{"id": f"{name}-{i}", "image_path": r.image_path, "mos": float(r.mos), "label": float(r.label),
                      "mos_scaled": float(r.mos_scaled)} for i, r in enumerate(df.itertuples())]
    return out
