"""Measure Stage-2-main's training-seed spread, for Table 5's verdicts (refine_iqa/eval/seed_spread.py).

    make run                                                  # the workflow first: its Stage-1 model and data
    nice -n 5 .venv/bin/python benchmarks/stage2_seed_spread.py --seeds 8 [--jobs 2] [--out FILE]

Trains Stage-2-main again with seed offsets 1..N-1 (`main_seed<k>`: the global seed plus k; the same code path
as `ablations.seeds`) from the workflow's `models/stage1` and `work/scoring/scoring_train.jsonl`, evaluates each
on the workflow's scoring test set, and takes offset 0 from the workflow's own `results/scoring/stage2-main.json`.
Writes the per-seed SRCC / hit rate / MAE with the lineage fingerprint (the code and settings that produced them)
to benchmarks/measured/stage2_seed_spread.json (temp file, then rename). The report applies it while the
fingerprint matches. Scratch models go to a temporary folder and are deleted; MLflow tracking is off for them.
Each seed runs in its own process with the workflow's thread count (compute.threads); --jobs at a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from refine_iqa.config import load_params  # noqa: E402
from refine_iqa.eval.seed_spread import MEASURED, lineage_fingerprint, summarise  # noqa: E402
from refine_iqa.io_utils import atomic_write_json, read_json  # noqa: E402
from refine_iqa.variants import stage2_run_name  # noqa: E402


def measures(result: dict) -> dict:
    """dataset -> the think-mode measures of one eval_scoring result (results/scoring/<model>.json)."""
    out = {}
    for ds, r in result["datasets"].items():
        t = r["think"]
        out[ds] = {"srcc_prob_think": t["prob"]["srcc"], "srcc_numeric_think": t["numeric"].get("srcc"),
                   "hit_rate_think": t["numeric"]["hit_rate"], "mae_think": t["numeric"]["mae_scaled"],
                   "format_think": t["format_compliance"]}
    return out


def worker(params_path: str, offset: int, scratch: str) -> dict:
    """Train and evaluate main_seed<offset> (runs in a child process)."""
    from refine_iqa.stages.evaluate import eval_scoring
    from refine_iqa.stages.stage2 import train_stage2

    params = load_params(params_path)
    params["tracking"] = {**params["tracking"], "enabled": False}  # scratch runs: nothing to compare in MLflow
    name = stage2_run_name("main", offset)
    w, m = Path(params["paths"]["work"]), Path(params["paths"]["models"])
    out = Path(scratch) / name
    t0 = time.process_time()
    train_stage2(params, m / "stage1", w / "scoring" / "scoring_train.jsonl", out, Path(scratch) / f"{name}.jsonl",
                 variant=name)
    train_cpu = time.process_time() - t0
    res = eval_scoring(params, out, w / "scoring" / "scoring_test.jsonl", Path(scratch) / f"{name}.json",
                       Path(scratch) / f"scoring-{name}.jsonl", f"stage2-{name}")
    return {"offset": offset, "measures": measures(res), "train_cpu_s": round(train_cpu, 1)}


def workflow_is_current() -> str | None:
    """None when DVC finds the workflow's outputs current, else what `dvc status` printed."""
    r = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status"], cwd=REPO, capture_output=True, text=True)
    text = (r.stdout + r.stderr).strip()
    return None if r.returncode == 0 and "up to date" in text.lower() else text or f"dvc status exit {r.returncode}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=8, help="seed offsets 0..N-1 (0: the workflow's own run)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--out", default=str(MEASURED))
    ap.add_argument("--skip-dvc-check", action="store_true", help="do not require `dvc status` to be clean")
    a = ap.parse_args(argv)
    if a.seeds < 2:
        ap.error("--seeds must be at least 2: a spread needs two runs")
    os.chdir(REPO)  # params.yaml's paths are relative to the repository
    params = load_params(a.params)
    main_json = Path(params["paths"]["results"]) / "scoring" / "stage2-main.json"
    if not main_json.is_file():
        sys.exit(f"{main_json} is missing: run the workflow first (`make run`)")
    if not a.skip_dvc_check and (stale := workflow_is_current()) is not None:
        sys.exit(f"the workflow's outputs are not current (`dvc status`):\n{stale}\nrun `make run` first, so that "
                 f"offset 0 is this code's run")
    fingerprint = lineage_fingerprint(params)
    per_seed = {"0": measures(read_json(main_json))}
    cpu = {}
    threads = str(params["compute"]["threads"])
    env_threads = {k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(env_threads)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="seed-spread-") as scratch, \
            cf.ProcessPoolExecutor(max_workers=a.jobs) as pool:
        futures = {pool.submit(worker, a.params, k, scratch): k for k in range(1, a.seeds)}
        for f in cf.as_completed(futures):
            r = f.result()
            per_seed[str(r["offset"])], cpu[str(r["offset"])] = r["measures"], r["train_cpu_s"]
            shown = ", ".join(f"{ds}: SRCC prob {v['srcc_prob_think']:.3f}, hit {v['hit_rate_think']:.3f}"
                              for ds, v in r["measures"].items())
            print(f"[seed-spread] offset {r['offset']}: {shown} ({r['train_cpu_s']:.0f} s CPU training, "
                  f"{time.time() - t0:.0f} s elapsed)", flush=True)
    per_seed = dict(sorted(per_seed.items(), key=lambda kv: int(kv[0])))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    record = {
        "what": "Stage-2-main retrained with seed offsets 0..N-1 from the workflow's Stage-1 model; think mode",
        "fingerprint": fingerprint, "seed": params["seed"], "offsets": [int(k) for k in per_seed],
        "per_seed": per_seed, "train_cpu_s": cpu, "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "threads": params["compute"]["threads"], "wall_s": round(time.time() - t0, 1),
        "command": "python benchmarks/stage2_seed_spread.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    atomic_write_json(a.out, record)
    for ds in sorted({d for by_ds in per_seed.values() for d in by_ds}):
        s = summarise({k: v[ds]["srcc_prob_think"] for k, v in per_seed.items() if ds in v})
        print(f"[seed-spread] {ds}: main's SRCC (think, prob) over {s['n']} seeds: mean {s['mean']:.3f}, "
              f"std {s['std']:.3f}, {s['min']:.3f}..{s['max']:.3f}; gaps within +-{s['noise']:.3f} are seed noise")
    print(f"[seed-spread] wrote {a.out} (fingerprint {fingerprint})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
