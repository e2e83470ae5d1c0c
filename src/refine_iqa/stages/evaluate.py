"""The steps of rules/evaluate.smk: perception, scoring and Q-Bench evaluation of each model, the Q-Bench set,
and the pyiqa baselines. Evaluations resume after a kill (per-batch journals, per-dataset caches)."""

from __future__ import annotations

from pathlib import Path

from refine_iqa import tracking
from refine_iqa.io_utils import atomic_write_json, read_json, read_jsonl, write_jsonl
from refine_iqa.compute import job_device, setup_compute
from refine_iqa.stages.common import _load, _progress, _tags, perception_items, scoring_eval_sets


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
