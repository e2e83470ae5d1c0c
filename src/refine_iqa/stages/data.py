"""The steps of rules/data.smk: scenes, curation shards, synthesis shards and merge, the scoring set."""

from __future__ import annotations

from pathlib import Path

from refine_iqa import tracking
from refine_iqa.io_utils import atomic_write_json, write_jsonl
from refine_iqa.compute import job_device


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
        seed=params["seed"], sample_by=syn["sample_by"],
        families=tuple(syn["families"]) if syn["families"] is not None else None,
        level_weights=tuple(syn["level_weights"]) if syn["level_weights"] is not None else None,
        max_box_area_frac=per["objects"]["max_box_frac"],
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
                                              seed=params["seed"], metric=syn["metric"], size=syn["size"],
                                              kind=syn["kind"], families=syn["families"])
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
