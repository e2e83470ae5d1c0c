"""Peak RSS and time per item of scoring evaluation at N and 4N full-size photos, this tree vs another.

    .venv/bin/python benchmarks/bench_eval_memory.py [--n 8] [--size 4000x3000] [--max-pixels 12544]
        [--think] [--before-src DIR] [--json OUT.json]

Generates N*4 full-size JPEGs (smooth photo-like content, quality 90) and the embedded tiny model, then runs
scoring evaluation (`rl.samples.build_stage2` + `generation.score_samples`, batch 8, the path `eval_scoring`
takes) at N and at 4N images, each in a fresh subprocess; peak RSS is sampled every 10 ms during the
evaluation (model loading peaks higher, so the process's ru_maxrss would hide it). With
`--before-src DIR` (a `src/` folder of an older checkout, e.g. `git archive <commit> src | tar -x -C /tmp/old`)
the same is measured with that code side by side. Prints peak RSS, its 4N/N ratio and seconds per item.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _worker(args) -> None:
    """Runs in the subprocess: score the images listed in args.images and print one JSON line."""
    import torch

    from refine_iqa.generation import score_samples
    from refine_iqa.model.loading import load_model_and_processor
    from refine_iqa.rl.samples import build_stage2

    torch.set_num_threads(1)
    model, processor = load_model_and_processor(args.model, max_pixels=args.max_pixels)
    model.eval()
    paths = Path(args.images).read_text().split("\n")
    records = [{"id": f"i{k}", "image_path": p, "mos_scaled": 2.0} for k, p in enumerate(paths)]
    import gc

    gc.collect()
    rss_loaded = _rss_mb()
    # Loading transformers/torch peaks above the evaluation's own use (ru_maxrss would hide it): sample the
    # resident set every 10 ms while evaluating instead.
    peak, stop = [rss_loaded], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    samples = build_stage2(records, think=args.think)
    outs = score_samples(model, processor, samples, think=args.think, max_new_tokens=8, batch_size=8)
    seconds = time.perf_counter() - t
    stop.set()
    sampler.join()
    assert len(outs) == len(paths) and all(o.get("prob") is not None for o in outs)
    print(json.dumps({"n": len(paths), "peak_rss_mb": max(peak[0], _rss_mb()), "rss_after_load_mb": rss_loaded,
                      "s_per_item": seconds / len(paths)}))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _photo(w: int, h: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (h // 100, w // 100, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR), dtype=np.int16)
    return Image.fromarray(np.clip(big + rng.integers(-6, 7, big.shape), 0, 255).astype(np.uint8))


def _measure(src: Path, model: Path, paths: list[Path], args, tmp: Path) -> dict:
    lst = tmp / f"list-{len(paths)}.txt"
    lst.write_text("\n".join(str(p) for p in paths))
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, __file__, "--worker", "--model", str(model), "--images", str(lst),
           "--max-pixels", str(args.max_pixels)] + (["--think"] if args.think else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"worker failed ({src}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--max-pixels", type=int, default=12544)
    ap.add_argument("--think", action="store_true")
    ap.add_argument("--before-src", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--images", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args)

    w, h = (int(v) for v in args.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-mem-"))
    try:
        sys.path.insert(0, str(HERE / "src"))
        from refine_iqa.model.build_tiny import build_tiny_model

        model = build_tiny_model(tmp / "tiny", seed=0)
        first = tmp / "p0000.jpg"
        _photo(w, h).save(first, quality=90)
        paths = [first] + [tmp / f"p{k:04d}.jpg" for k in range(1, 4 * args.n)]
        for p in paths[1:]:
            shutil.copyfile(first, p)  # distinct files, each decoded on its own
        trees = [("after", HERE / "src")] + ([("before", args.before_src)] if args.before_src else [])
        results = {}
        print(f"scoring eval, {'think' if args.think else 'no-think'}, {w}x{h} JPEGs "
              f"({first.stat().st_size / 1e6:.1f} MB each), max_pixels {args.max_pixels}, batch 8, 1 thread")
        print(f"{'code':8s} {'N':>5s} {'peak RSS MB':>12s} {'RSS after load':>15s} {'s/item':>8s}")
        for name, src in trees:
            for n in (args.n, 4 * args.n):
                r = _measure(Path(src), model, paths[:n], args, tmp)
                results[f"{name}-{n}"] = r
                print(f"{name:8s} {n:5d} {r['peak_rss_mb']:12.0f} {r['rss_after_load_mb']:15.0f} {r['s_per_item']:8.3f}",
                      flush=True)
            a, b = results[f"{name}-{args.n}"], results[f"{name}-{4 * args.n}"]
            print(f"{name:8s} peak RSS 4N/N = {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}")
        if args.before_src:
            for n in (args.n, 4 * args.n):
                a, b = results[f"after-{n}"], results[f"before-{n}"]
                print(f"N={n}: peak RSS after/before = {a['peak_rss_mb'] / b['peak_rss_mb']:.2f}, "
                      f"time per item after/before = {a['s_per_item'] / b['s_per_item']:.2f}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
