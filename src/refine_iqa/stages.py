"""One function per workflow step, composed from the library. The CLI and the workflow scripts call these.

Each step takes the validated params dict (see config.py) and explicit input/output paths, writes its
outputs atomically, and logs to MLflow through `tracking` (a no-op when tracking is off).
"""

from __future__ import annotations

import logging
from pathlib import Path

from refine_iqa import model_card, prompts, tracking
from refine_iqa.io_utils import atomic_write_json, read_json, read_jsonl, write_jsonl

log = logging.getLogger("refine_iqa")


# --- small shared helpers -------------------------------------------------------------------------------

def setup_compute(params: dict) -> str:
    import torch

    torch.set_num_threads(params["compute"]["threads"])
    device = params["compute"]["device"]
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compute.device is cuda but no GPU is visible; set compute.device: cpu")
    return device


def _load(params: dict, model_dir, device: str):
    from refine_iqa.model.loading import load_model_and_processor

    m = params["model"]
    return load_model_and_processor(model_dir, dtype=m["dtype"], attn_implementation=m["attn_implementation"],
                                    device=device, min_pixels=m["min_pixels"], max_pixels=m["max_pixels"])


def _load_for_training(params: dict, model_dir, device: str, grpo_settings: dict, checkpoints):
    """(training args, model, processor). The GRPOConfig comes first: with DeepSpeed ZeRO-3 its DeepSpeed
    config must exist before `from_pretrained` so that every process loads only its partition."""
    from refine_iqa.rl.grpo import training_args

    args = training_args(grpo_settings, seed=params["seed"], device=device, checkpoint_dir=checkpoints)
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


# --- model -----------------------------------------------------------------------------------------------

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
    from refine_iqa.rl.warmstart import warm_start as _warm

    device = setup_compute(params)
    ws = params["warmstart"]
    model, processor = _load(params, model_dir, device)
    tags = _tags(params)
    items = perception_items(manifest_path, "train")
    scoring = read_jsonl(scoring_train_path)
    samples = build_stage1_train(items, processor, task_mix={"description": 1, "grounding": 1}, fr_fraction=0.5,
                                 seed=params["seed"], tags=tags)
    samples += build_stage2(scoring, think=True, tags=tags) + build_stage2(scoring, think=False, tags=tags)
    with tracking.stage_run("warmstart", params["tracking"], params={"warmstart": ws, "model": params["model"]}) as run:
        losses = _warm(model, processor, samples, steps=ws["steps"], learning_rate=ws["learning_rate"],
                       batch_size=ws["batch_size"], seed=params["seed"], tags=tags, think_words=ws["think_words"],
                       progress=_progress("warmstart"))
        curve = [{"step": i + 1, "loss": v} for i, v in enumerate(losses)]
        for rec in curve[:: max(1, len(curve) // 100)]:
            run.log_metrics({"warmstart/loss": rec["loss"]}, step=rec["step"])
        write_jsonl(curve_path, curve)
        save_model_and_processor(model, processor, out_dir)
        model_card.write_training_card(params, out_dir, stage="warmstart", base_model=model_dir,
                                       data={"manifest": manifest_path, "scoring_train": scoring_train_path})
    return Path(out_dir)


# --- training ---------------------------------------------------------------------------------------------

def train_stage1(params: dict, base_dir, manifest_path, out_dir, curve_path) -> Path:
    from refine_iqa.rewards import get_stage1_reward_funcs
    from refine_iqa.rl.grpo import checkpoint_dir_for, discard_checkpoints, folder_signature, run_grpo
    from refine_iqa.rl.samples import build_stage1_train

    device = setup_compute(params)
    s1 = params["stage1"]
    checkpoints = checkpoint_dir_for(out_dir)  # a killed job's re-run resumes from here
    args, model, processor = _load_for_training(params, base_dir, device, s1["grpo"], checkpoints)
    tags = _tags(params)
    samples = build_stage1_train(perception_items(manifest_path, "train"), processor, task_mix=s1["task_mix"],
                                 fr_fraction=s1["fr_fraction"], seed=params["seed"], tags=tags)
    print(f"[stage1] {len(samples)} training samples", flush=True)
    with tracking.stage_run("stage1", params["tracking"], params={"stage1": s1, "model": params["model"]}) as run:
        trainer = run_grpo(model, processor, samples, get_stage1_reward_funcs(tags, s1["choice_reward"]), s1["grpo"],
                 seed=params["seed"], curve_path=curve_path, device=device, on_log=run.log_metrics,
                 checkpoint_dir=checkpoints, resume_key_extra={"start_model": folder_signature(base_dir)}, args=args,
                 on_checkpoints=run.attach_checkpoints)  # issue 15: a resume continues its MLflow run
        trainer.save_final(out_dir)  # every process calls it; only the main process writes
        if trainer.accelerator.is_main_process:
            model_card.write_training_card(params, out_dir, stage="stage1", base_model=base_dir,
                                           data={"manifest": manifest_path})
        discard_checkpoints(checkpoints)
    return Path(out_dir)


# Stage-2 variants: the main run and the ablations of Tables 5-6.
STAGE2_VARIANTS = {
    "main": {},
    "no_stage1": {"init": "base"},
    "no_pd": {"pd": False},
    "no_pm": {"pm": False},
    "no_pd_no_pm": {"pd": False, "pm": False},
    "no_think": {"mode": "no_think"},
}


def stage2_settings(params: dict, variant: str) -> dict:
    if variant not in STAGE2_VARIANTS:
        raise ValueError(f"unknown Stage-2 variant {variant!r}; use one of {sorted(STAGE2_VARIANTS)}")
    s2 = params["stage2"]
    v = STAGE2_VARIANTS[variant]
    return {
        "mode": v.get("mode", s2["mode"]),
        "init": v.get("init", s2["init"]),
        "pd": v.get("pd", s2["pd"]["enabled"]),
        "pm": v.get("pm", s2["pm"]["enabled"]),
    }


def train_stage2(params: dict, init_dir, scoring_train_path, out_dir, curve_path, variant: str = "main") -> Path:
    from refine_iqa.rewards import get_stage2_reward_funcs
    from refine_iqa.rl.grpo import checkpoint_dir_for, discard_checkpoints, folder_signature, run_grpo
    from refine_iqa.rl.pd import PDReward
    from refine_iqa.rl.samples import build_stage2

    device = setup_compute(params)
    s2 = params["stage2"]
    v = stage2_settings(params, variant)
    think = v["mode"] == "think"
    tags = _tags(params)
    checkpoints = checkpoint_dir_for(out_dir)  # a killed job's re-run resumes from here
    args, model, processor = _load_for_training(params, init_dir, device, s2["grpo"], checkpoints)
    skipped: list = []
    samples = build_stage2(read_jsonl(scoring_train_path), think=think, tags=tags, skipped=skipped)
    for rec, reason in skipped:
        print(f"[stage2] skipped unreadable training image {rec['image_path']}: {reason}", flush=True)
    funcs = get_stage2_reward_funcs(tags, mode=v["mode"], eps=s2["answer_eps"])
    weights = list(s2["lambdas"][:2])
    bind = []
    if v["pd"] and think:  # PD compares think against no-think: it has no meaning in no-think training
        pd = PDReward(processor, tags=tags, eps=s2["answer_eps"], weights=s2["pd"]["weights"])
        funcs = funcs + [pd]
        weights.append(s2["lambdas"][2])
        bind.append(pd)
    pm = {k: s2["pm"][k] for k in ("delta", "sigma_min", "eps")} if v["pm"] else None
    print(f"[stage2:{variant}] {len(samples)} samples, settings {v}", flush=True)
    with tracking.stage_run(f"stage2-{variant}", params["tracking"],
                            params={"stage2": s2, "variant": variant, **{f"variant.{k}": x for k, x in v.items()}}) as run:
        trainer = run_grpo(model, processor, samples, funcs, s2["grpo"], seed=params["seed"], curve_path=curve_path,
                 device=device, reward_weights=weights, pm=pm, correct_from=("answer_reward", "format_reward"),
                 think_tags=tags if think else None, on_log=run.log_metrics, bind=bind, checkpoint_dir=checkpoints,
                 resume_key_extra={"start_model": folder_signature(init_dir), "variant": variant}, args=args,
                 on_checkpoints=run.attach_checkpoints)  # issue 15: a resume continues its MLflow run
        trainer.save_final(out_dir)  # every process calls it; only the main process writes
        if trainer.accelerator.is_main_process:
            model_card.write_training_card(params, out_dir, stage="stage2", name=f"stage2-{variant}", base_model=init_dir,
                                           data={"scoring_train": scoring_train_path}, extra={"variant": variant, "variant_settings": v})
        discard_checkpoints(checkpoints)
        run.register_model(f"refine-iqa-stage2-{variant}", out_dir)  # issue 15: registry entry, DVC hash as lineage
    return Path(out_dir)


# --- evaluation -------------------------------------------------------------------------------------------

def eval_perception(params: dict, model_dir, manifest_path, out_json, preds_path, name: str) -> dict:
    from refine_iqa.eval.perception import evaluate_perception
    from refine_iqa.rl.samples import build_stage1_eval

    from refine_iqa.eval.journal import PredictionJournal

    device = setup_compute(params)
    model, processor = _load(params, model_dir, device)
    items = perception_items(manifest_path, "test")
    samples = build_stage1_eval(items, processor, tags=_tags(params))
    # Answers are appended per batch: a killed job's re-run asks only the samples not answered yet.
    journal = PredictionJournal(_journal_path(preds_path, "perception"),
                                {**_eval_fingerprint(params, model_dir), "items": len(items),
                                 "first": items[0]["id"] if items else None})
    with tracking.stage_run(f"eval-perception-{name}", params["tracking"]) as run:
        summary, preds = evaluate_perception(model, processor, samples, tags=_tags(params),
                                             batch_size=params["evaluate"]["batch_size"],
                                             progress=_progress(f"perception:{name}"), journal=journal)
        for item_id in summary["skipped_unreadable"]:
            print(f"[perception:{name}] skipped unreadable item {item_id}", flush=True)
        write_jsonl(preds_path, preds)
        atomic_write_json(out_json, {"model": name, **summary})
        journal.discard()
        run.log_metrics({"description_overall": summary["description"]["all"]["overall"],
                         "grounding_iou_overall": summary["grounding"]["all"]["overall"]})
        run.log_artifact(out_json)
    return summary


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


def _cached(cache_dir, key: str, fingerprint: dict, compute):
    """Resumable evaluation: reuse a finished dataset's result when its fingerprint matches."""
    path = Path(cache_dir) / f"{key}.json"
    if path.exists():
        cached = read_json(path)
        if cached.get("fingerprint") == fingerprint:
            print(f"[cache] reusing {path}", flush=True)
            return cached["result"], cached["preds"]
    result, preds, journal = compute()
    atomic_write_json(path, {"fingerprint": fingerprint, "result": result, "preds": preds})
    journal.discard()  # the finished result replaces the per-batch journal
    return result, preds


def _model_fingerprint(model_dir) -> str:
    st = (Path(model_dir) / "model.safetensors")
    files = sorted(Path(model_dir).glob("*.safetensors")) or [st]
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.exists())


def _eval_fingerprint(params: dict, model_dir) -> dict:
    """What decides a model's predictions: its weight files and the settings that change its inputs/outputs."""
    ev, m = params["evaluate"], params["model"]
    return {"model": _model_fingerprint(model_dir), "tags": params["prompts"]["tags"],
            "max_new_tokens": ev["max_new_tokens"], "dtype": m["dtype"], "min_pixels": m["min_pixels"],
            "max_pixels": m["max_pixels"]}


def _journal_path(preds_path, key: str) -> Path:
    """Per-batch prediction journals live next to the predictions file, in `<preds stem>.cache/`."""
    p = Path(preds_path)
    return p.with_name(p.stem + ".cache") / f"{key}.partial.jsonl"


def eval_scoring(params: dict, model_dir, scoring_test_path, out_json, preds_path, name: str) -> dict:
    """Scoring on every evaluation dataset in think and no-think mode; each (dataset, mode) is cached when done,
    and inside one its predictions are appended per batch, so a killed job resumes where it stopped."""
    from refine_iqa.eval.journal import PredictionJournal
    from refine_iqa.eval.scoring import evaluate_scoring
    from refine_iqa.rl.samples import build_stage2

    device = setup_compute(params)
    model, processor = _load(params, model_dir, device)
    tags = _tags(params)
    ev = params["evaluate"]
    cache_dir = Path(preds_path).with_name(Path(preds_path).stem + ".cache")
    result, all_preds = {"model": name, "datasets": {}}, []
    with tracking.stage_run(f"eval-scoring-{name}", params["tracking"]) as run:
        for ds, recs in scoring_eval_sets(params, scoring_test_path).items():
            result["datasets"][ds] = {}
            for think in (False, True):
                mode = "think" if think else "no_think"
                fp = {**_eval_fingerprint(params, model_dir), "n": len(recs),
                      "first": recs[0]["image_path"] if recs else None}

                def compute(recs=recs, think=think, mode=mode, ds=ds, fp=fp):
                    skipped: list = []
                    samples = build_stage2(recs, think=think, tags=tags, skipped=skipped)  # paths, header-checked
                    bad = {id(rec) for rec, _ in skipped}
                    kept = [r for r in recs if id(r) not in bad]
                    journal = PredictionJournal(cache_dir / f"{ds}-{mode}.partial.jsonl", fp)
                    res, preds = evaluate_scoring(
                        model, processor, samples, [r["label"] for r in kept], think=think, tags=tags,
                        scaled=[r["mos_scaled"] for r in kept], max_new_tokens=ev["max_new_tokens"],
                        batch_size=ev["batch_size"], progress=_progress(f"scoring:{name}:{ds}:{mode}"),
                        journal=journal)
                    res["skipped_unreadable"] = [str(rec["image_path"]) for rec, _ in skipped] + res["skipped_unreadable"]
                    for path in res["skipped_unreadable"]:
                        print(f"[scoring:{ds}] skipped unreadable {path}", flush=True)
                    return res, preds, journal

                res, preds = _cached(cache_dir, f"{ds}-{mode}", fp, compute)
                result["datasets"][ds][mode] = res
                all_preds += [{"dataset": ds, "mode": mode, **p} for p in preds]
                run.log_metrics({f"{ds}.{mode}.prob.srcc": res["prob"]["srcc"], f"{ds}.{mode}.prob.plcc": res["prob"]["plcc"],
                                 f"{ds}.{mode}.numeric.hit_rate": res["numeric"]["hit_rate"]})
        write_jsonl(preds_path, all_preds)
        atomic_write_json(out_json, result)
        run.log_artifact(out_json)
    return result


def qbench_set(params: dict, scoring_test_path, manifest_path, out_dir) -> Path:
    """Table 4 data: the real LLVisionQA folder when configured, else a synthetic one in its native format."""
    from refine_iqa.data.qbench_synthetic import build_synthetic_llvisionqa

    build_synthetic_llvisionqa(out_dir, scoring_records=read_jsonl(scoring_test_path),
                               manifest_records=perception_items(manifest_path, "test"),
                               n_dev=params["evaluate"]["qbench_questions"], n_test=params["evaluate"]["qbench_questions"],
                               seed=params["seed"])
    return Path(out_dir)


def eval_qbench(params: dict, model_dir, qbench_root, out_json, name: str) -> dict:
    from refine_iqa.data.qbench import load_llvisionqa
    from refine_iqa.eval.qbench_eval import evaluate_qbench

    device = setup_compute(params)
    model, processor = _load(params, model_dir, device)
    ev = params["evaluate"]
    records = load_llvisionqa(qbench_root, ev["qbench_split"])
    result = {"model": name, "split": ev["qbench_split"], "n": len(records),
              "synthetic": qbench_root != params["data"]["scoring"]["qbench_root"]}
    from refine_iqa.eval.journal import PredictionJournal

    fp = {**_eval_fingerprint(params, model_dir), "split": ev["qbench_split"], "n": len(records),
          "first": str(records[0]["image_path"]) if records else None}
    journals = []
    with tracking.stage_run(f"eval-qbench-{name}", params["tracking"]) as run:
        for think in (False, True):
            mode = "think" if think else "no_think"
            # Answers appended per batch: a killed job's re-run asks only the questions not answered yet.
            journal = PredictionJournal(_journal_path(out_json, f"qbench-{mode}"), fp)
            journals.append(journal)
            acc, _ = evaluate_qbench(model, processor, records, think=think, tags=_tags(params),
                                     max_new_tokens=ev["max_new_tokens"], batch_size=ev["batch_size"],
                                     progress=_progress(f"qbench:{name}:{mode}"), journal=journal)
            result[mode] = acc
            run.log_metrics({f"qbench.{mode}.overall": acc["accuracy"]["overall"]})
        atomic_write_json(out_json, result)
        for journal in journals:
            journal.discard()
    return result


def job_device(params: dict, job: str) -> str:
    """The device of a job that can run on either (baselines, curation): cuda only when the configuration asks
    for it AND this job sees a GPU. Under SLURM a job sees GPUs only when its resources request them
    (profiles/slurm/config.yaml), so a CPU-partition job runs on the CPU instead of failing."""
    import torch

    torch.set_num_threads(params["compute"]["threads"])
    if params["compute"]["device"] == "cuda":
        if torch.cuda.is_available():
            return "cuda"
        print(f"[{job}] compute.device is cuda but this job has no GPU (its resources request none): "
              "running on the CPU", flush=True)
    return "cpu"


def eval_baselines(params: dict, scoring_test_path, out_json) -> dict:
    """Table 3 baselines: pyiqa metrics (learned ones with local weights) on the same evaluation sets.

    Images go in by pyiqa's protocol (`quality.metric_input`: SPAQ and any image over 1024 px on its shorter
    side resized to 448). Each (metric, dataset) result is saved under `<out>.cache/` as it finishes, so a
    killed job resumes with the next dataset. Unreadable images are skipped and listed.
    """
    import numpy as np
    import torch

    from refine_iqa.data.quality import get_metric, metric_info, metric_input
    from refine_iqa.eval import metrics
    from refine_iqa.io_utils import ImageReadError, load_rgb

    device = job_device(params, "baseline")
    cache_dir = Path(out_json).with_name(Path(out_json).name + ".cache")
    out: dict = {}
    sets = scoring_eval_sets(params, scoring_test_path)
    for b in params["evaluate"]["baselines"]:
        metric = get_metric(b["metric"], b.get("weights"), device)
        sign = -1.0 if metric_info(b["metric"])["lower_better"] else 1.0
        out[b["metric"]] = {}
        weights = b.get("weights")
        wstat = [Path(weights).stat().st_size, Path(weights).stat().st_mtime_ns] if weights else None
        for ds, recs in sets.items():
            fp = {"metric": b["metric"], "weights": weights, "weights_stat": wstat, "n": len(recs),
                  "images": [r["image_path"] for r in recs[:1]] + [r["image_path"] for r in recs[-1:]],
                  "protocol": "pyiqa-0.1.16-short448"}

            def compute(recs=recs, ds=ds):
                scores, labels, skipped = [], [], []
                for r in recs:
                    try:
                        x = metric_input(load_rgb(r["image_path"]), ds)
                    except ImageReadError as e:
                        print(f"[baseline] skipped unreadable {r['image_path']}: {e}", flush=True)
                        skipped.append(r["image_path"])
                        continue
                    with torch.no_grad():
                        scores.append(sign * float(torch.as_tensor(metric(x.to(device))).flatten().mean()))
                    labels.append(r["label"])
                res = metrics.correlation_report(np.array(scores), labels)
                res["skipped_unreadable"] = skipped
                return res

            cached = cache_dir / f"{b['metric']}-{ds}.json"  # one finished (metric, dataset) per file
            if cached.exists() and read_json(cached).get("fingerprint") == fp:
                print(f"[cache] reusing {cached}", flush=True)
                out[b["metric"]][ds] = read_json(cached)["result"]
            else:
                out[b["metric"]][ds] = compute()
                atomic_write_json(cached, {"fingerprint": fp, "result": out[b["metric"]][ds]})
            print(f"[baseline] {b['metric']} on {ds}: SRCC {out[b['metric']][ds]['srcc']:.3f}", flush=True)
    atomic_write_json(out_json, out)
    return out


# --- data --------------------------------------------------------------------------------------------------

def make_scenes(params: dict, out_dir) -> Path:
    """Embedded source: procedurally generated scenes written as an image folder + COCO annotations."""
    from refine_iqa.data.scenes import write_scene_dataset

    s = params["data"]["perception"]["scenes"]
    return write_scene_dataset(out_dir, s["n_images"], params["seed"], s["width"], s["height"])


def _perception_sources(params: dict, scenes_dir, frames_dir, shard: int | None = None):
    """The configured sources. With `shard`, videos of other shards are skipped before decoding (curation
    shards by video, `curate.shard_key`), so each video is decoded by one shard only."""
    from refine_iqa.data import sources
    from refine_iqa.data.curate import stable_shard

    per = params["data"]["perception"]
    src = per["source"]
    if src == "scenes":
        return [sources.iter_coco(Path(scenes_dir) / "annotations.json", Path(scenes_dir) / "images",
                                  source="scenes", prefix="scene")]
    if src == "coco":
        return [sources.iter_coco(per["coco"]["annotations"], per["coco"]["images"])]
    if src == "folder":
        return [sources.iter_folder(per["folder"])]
    v = per["video"]
    ks = sources.KeyframeSettings(count=v["keyframes"], mode=v["mode"])
    n = per["curate"]["shards"]
    select = None if shard is None else (lambda video_id: stable_shard(video_id, n) == shard)
    return [sources.iter_videos(v["path"], frames_dir, ks, select=select)]


def curate_shard(params: dict, scenes_dir, out_dir, shard: int) -> Path:
    from refine_iqa.data.curate import CurateSettings, curate
    from refine_iqa.data.objects import ObjectRules, VlmSettings

    per = params["data"]["perception"]
    obj = per["objects"]
    device = job_device(params, f"curate shard {shard}")
    if device == "cpu" and (obj["backend"] == "vlm" or any(q.get("weights") for q in per["curate"]["quality"])):
        print(f"[curate shard {shard}] a VLM object finder or learned quality metric on the CPU is slow: give "
              "curate_shard a GPU in profiles/slurm/config.yaml (see the comment there)", flush=True)
    settings = CurateSettings(
        dedup_max_distance=per["curate"]["dedup_max_distance"], quality=per["curate"]["quality"],
        objects_backend=obj["backend"],
        rules=ObjectRules(min_objects=obj["min_objects"], max_objects=obj["max_objects"], max_iou=obj["max_iou"],
                          max_box_frac=obj["max_box_frac"], min_box_side=obj["min_box_side"]),
        vlm=VlmSettings(obj["vlm"], obj["detector"], device=device) if obj["backend"] == "vlm" else None,
        shard_index=shard, num_shards=per["curate"]["shards"], device=device, show_progress=False,
    )
    summary = curate(_perception_sources(params, scenes_dir, Path(out_dir) / "frames", shard), out_dir, settings=settings)
    print(f"[curate shard {shard}] {summary}", flush=True)
    return Path(out_dir) / "curated.jsonl"


def _synthesis_settings(params: dict):
    from refine_iqa.data.assemble import SynthesisSettings

    per = params["data"]["perception"]
    syn = per["synthesize"]
    test_size = syn["test_size"]
    return SynthesisSettings(
        seed=params["seed"], sample_by=syn["sample_by"], max_box_area_frac=per["objects"]["max_box_frac"],
        min_box_side=per["objects"]["min_box_side"], review_mode="auto" if per["review"]["mode"] == "auto" else "manual",
        test_size=test_size if test_size < 1 else int(test_size),
    )


def synthesize_shard(params: dict, curated_path, out_dir, shard: int) -> Path:
    from refine_iqa.data.assemble import read_curated, synthesize_shard as _synth

    num = params["data"]["perception"]["synthesize"]["shards"]
    return _synth(read_curated(curated_path), out_dir, shard, num, _synthesis_settings(params))


def synthesize_merge(params: dict, shard_paths, manifest_path, stats_json, plots_dir) -> dict:
    """Merge shards, apply review decisions (manual mode), build the split, write statistics and plots."""
    from refine_iqa.data import assemble, stats

    settings = _synthesis_settings(params)
    records = assemble.merge_manifests(shard_paths, manifest_path, settings)
    review = params["data"]["perception"]["review"]
    if review["mode"] == "manual":
        from refine_iqa.review.decisions import load_decisions

        records = assemble.apply_review_decisions(records, load_decisions(review["decisions"]))
        records = assemble.build_split(records, settings.test_size, params["seed"], include_pending=False)
        write_jsonl(manifest_path, records)
    summary = {"stats": stats.manifest_stats(records), "qc": assemble.summarise_qc(records),
               "review_mode": review["mode"]}
    plots = stats.write_stats_plots(records, plots_dir)
    summary["plots"] = {k: str(v) for k, v in plots.items()}
    atomic_write_json(stats_json, summary)
    with tracking.stage_run("synthesize", params["tracking"], params={"synthesize": params["data"]["perception"]["synthesize"]}) as run:
        run.log_metrics({"items": len(records)})
        run.log_artifact(stats_json)
    return summary


def scoring_set(params: dict, out_dir) -> dict:
    """Stage-2 training records (and the synthetic test set): synthetic in the embedded configuration,
    KonIQ-10k + SPAQ train (or any configured mix) from their native files in the paper's."""
    sc = params["data"]["scoring"]
    out_dir = Path(out_dir)
    if sc["source"] == "synthetic":
        from refine_iqa.data import scoring_set as ss

        syn = sc["synthetic"]
        if syn["kind"] == "brightness":
            return ss.build_brightness_set(out_dir, n_train=syn["n_train"], n_test=syn["n_test"], seed=params["seed"], size=syn["size"])
        return ss.build_synthetic_scoring_set(None, out_dir, n_train=syn["n_train"], n_test=syn["n_test"],
                                              seed=params["seed"], metric=syn["metric"], size=syn["size"])
    from refine_iqa.data import iqa_datasets

    train = []
    for name in sc["train_datasets"]:
        df = iqa_datasets.load(name, sc["roots"][name], split_seed=params["seed"])
        df = df[df["split"] == "train"]
        train += [{"id": f"{name}-{i}", "image_path": r.image_path, "mos": float(r.mos), "label": float(r.label),
                   "mos_scaled": float(r.mos_scaled), "dataset": name, "synthetic": False, "split": "train"}
                  for i, r in enumerate(df.itertuples())]
    write_jsonl(out_dir / "scoring_train.jsonl", train)
    write_jsonl(out_dir / "scoring_test.jsonl", [])  # the real test sets are read per dataset at evaluation
    return {"train": len(train)}
