"""Scale benchmark (issue 13): peak memory and time per item of the data and evaluation jobs at N and 4N items.

Generated full-size data: 4000x3000 JPEG photos (SPAQ-like) for scoring evaluation and `score`; 1920x1080 JPEG
scenes with COCO annotations plus 1080p videos for curation (2 shards); the curated scenes are synthesized
(one distorted copy per object) and the result feeds perception evaluation; the review API runs on a manifest
of `review_items` entries. The model is the embedded tiny Qwen2.5-VL on the CPU, so model time is small and the
figures show the data path: decoding, shrinking, encoding, bookkeeping.

Each job runs in its own subprocess, which reports its own peak RSS (VmHWM) and the job's time
(imports excluded), so one job's memory never hides another's. The last column is the RSS ratio 4N / N,
which should stay <= 1.2 (bounded memory: nothing grows with the number of items). The "4N-N" row is the
marginal time per item, (t(4N) - t(N)) / (items(4N) - items(N)), free of fixed costs such as model loading.

    make bench-scale            # N = 4 (4N = 16) images, review API at 5000 / 20000 items
    python benchmarks/bench_scale.py --n 8 --jobs curate,synthesize --keep /tmp/scale
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
JOBS = ("scoring_eval", "score", "curate", "synthesize", "perception_eval", "review_api")


# ------------------------------------------------------------------------------------------------ data


def _photo(seed: int, width: int, height: int) -> np.ndarray:
    """A photo-like uint8 image: smooth random structure plus fine grain (compresses like a real JPEG)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 100 + 2, width // 100 + 2, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
    return np.clip(base + grain, 0, 255).astype(np.uint8)


def make_photos(folder: Path, k: int, width: int = 4000, height: int = 3000) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(k):
        p = folder / f"photo-{i:05d}.jpg"
        if not p.exists():
            Image.fromarray(_photo(i, width, height)).save(p, quality=90)
        paths.append(p)
    return paths


def make_coco(folder: Path, k: int, width: int = 1920, height: int = 1080) -> Path:
    """k procedural 1080p scenes as JPEGs with a COCO instances file (their objects)."""
    from PIL import Image

    from refine_iqa.data.scenes import generate_scene
    from refine_iqa.io_utils import atomic_write_json

    ann = folder / "annotations.json"
    if ann.exists():
        return ann
    (folder / "images").mkdir(parents=True, exist_ok=True)
    cats: dict[str, int] = {}
    images, annotations = [], []
    for i in range(k):
        img, objs = generate_scene(5000 + i, width, height)
        grain = np.random.default_rng(i).integers(-4, 5, img.shape, dtype=np.int16)
        img = np.clip(img.astype(np.int16) + grain, 0, 255).astype(np.uint8)  # not a flat cartoon to the pHash
        name = f"scene-{i:05d}.jpg"
        Image.fromarray(img).save(folder / "images" / name, quality=90)
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
        for o in objs:
            cid = cats.setdefault(o["name"], len(cats) + 1)
            x1, y1, x2, y2 = o["box"]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cid,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
    atomic_write_json(ann, {"images": images, "annotations": annotations,
                            "categories": [{"id": v, "name": n} for n, v in cats.items()]})
    return ann


def make_videos(folder: Path, k: int, frames: int = 48, width: int = 1920, height: int = 1080) -> Path:
    import av

    folder.mkdir(parents=True, exist_ok=True)
    for v in range(k):
        path = folder / f"clip-{v:03d}.mp4"
        if path.exists():
            continue
        scenes = [_photo(100 + 7 * v + s, width, height) for s in range(3)]
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=24)
            stream.width, stream.height, stream.pix_fmt, stream.gop_size = width, height, "yuv420p", 12
            for f in range(frames):
                frame = scenes[f * 3 // frames].copy()
                frame[100:300, 40 + 20 * f: 240 + 20 * f] = 255  # a moving block: frames differ
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return folder


def _params(work: Path) -> dict:
    from refine_iqa.config import load_params

    return load_params(REPO / "params.yaml", {"tracking": {"enabled": False}, "compute": {"threads": 1},
                                              "evaluate": {"max_new_tokens": 8, "batch_size": 4}})


# ------------------------------------------------------------------------------------------------ jobs (child side)


def job_build_model(work: Path, k: int) -> dict:
    from refine_iqa.model.build_tiny import build_tiny_model

    build_tiny_model(work / "model", seed=0)
    return {"items": 0, "seconds": 0.0, "unit": "-"}


def job_scoring_eval(work: Path, k: int) -> dict:
    from refine_iqa.stages.evaluate import eval_scoring
    from refine_iqa.io_utils import write_jsonl

    photos = make_photos(work / "photos", k)
    test = work / f"scoring-{k}" / "scoring_test.jsonl"
    write_jsonl(test, [{"id": f"p{i}", "image_path": str(p), "mos": 1.0 + i % 4, "label": 1.0 + i % 4,
                        "mos_scaled": 1.0 + i % 4} for i, p in enumerate(photos)])
    t = time.perf_counter()
    eval_scoring(_params(work), work / "model", test, test.with_name("scoring.json"),
                 test.with_name("preds.jsonl"), "tiny")
    return {"items": k, "seconds": time.perf_counter() - t, "unit": "12 MP image (both modes)"}


def job_score(work: Path, k: int) -> dict:
    from refine_iqa.inference import Scorer

    photos = make_photos(work / "photos", k)
    t = time.perf_counter()
    results = Scorer(str(work / "model"), batch_size=4, max_new_tokens=8).score([str(p) for p in photos])
    assert sum(r["score"] is not None for r in results) == k, results[:2]
    return {"items": k, "seconds": time.perf_counter() - t, "unit": "12 MP image"}


def job_curate(work: Path, k: int) -> dict:
    from refine_iqa.data import sources
    from refine_iqa.data.curate import CurateSettings, curate, merge_curated, stable_shard

    ann = make_coco(work / f"coco-{k}", k)
    vids = make_videos(work / f"videos-{k}", max(1, k // 4))
    out = work / f"curated-{k}"
    t = time.perf_counter()
    n_items = 0
    for shard in (0, 1):
        ks = sources.KeyframeSettings(mode="even", count=4)
        srcs = [sources.iter_coco(ann, ann.parent / "images"),
                sources.iter_videos(vids, out / f"shard-{shard}" / "frames", ks,
                                    select=lambda vid, shard=shard: stable_shard(vid, 2) == shard)]
        summary = curate(srcs, out / f"shard-{shard}", settings=CurateSettings(shard_index=shard, num_shards=2,
                                                                                 show_progress=False))
        n_items += summary.total
    merge_curated([out / f"shard-{s}" / "curated.jsonl" for s in (0, 1)], out / "curated.jsonl")
    return {"items": n_items, "seconds": time.perf_counter() - t,
            "unit": "1080p image or keyframe", "videos": max(1, k // 4)}


def job_synthesize(work: Path, k: int) -> dict:
    from refine_iqa.data import assemble

    curated = assemble.read_curated(work / f"curated-{k}" / "curated.jsonl")
    out = work / f"synth-{k}"
    settings = assemble.SynthesisSettings(seed=0, review_mode="manual", test_size=0)
    # Memory kept between sources (what would grow if anything accumulated), beside the peak, which is the
    # largest single source's transient and so depends on which distortion types were drawn.
    retained = []
    real = assemble._synthesize_source

    def tracked(*a, **kw):
        out_ = real(*a, **kw)
        retained.append(_vm("VmRSS"))
        return out_

    assemble._synthesize_source = tracked
    t = time.perf_counter()
    paths = [assemble.synthesize_shard(curated, out, s, 2, settings) for s in (0, 1)]
    seconds = time.perf_counter() - t
    # Nearly every item in the test split: perception evaluation reads the test split.
    records = assemble.merge_manifests(paths, out / "manifest.jsonl", assemble.SynthesisSettings(seed=0, test_size=0.99))
    dist = sum(Path(r["dist_path"]).stat().st_size for r in records)
    refs = {r["ref_path"] for r in records}
    linked = sum(Path(p).stat().st_nlink > 1 for p in refs)
    return {"items": len(records), "seconds": seconds, "unit": "1080p distorted copy",
            "dist_mb_per_item": dist / 1e6 / max(1, len(records)), "refs": len(refs), "refs_linked": linked,
            "retained_mb_first_last": [round(retained[0]), round(retained[-1])], "retained_mb_max": round(max(retained))}


def job_perception_eval(work: Path, k: int) -> dict:
    from refine_iqa.stages.common import perception_items
    from refine_iqa.stages.evaluate import eval_perception

    manifest = work / f"synth-{k}" / "manifest.jsonl"
    n = len(perception_items(manifest, "test"))
    out = work / f"perception-{k}"
    t = time.perf_counter()
    eval_perception(_params(work), work / "model", manifest, out / "perception.json", out / "preds.jsonl", "tiny")
    return {"items": n, "seconds": time.perf_counter() - t, "unit": "1080p item (all tasks, FR and NR)"}


def job_review_api(work: Path, k: int) -> dict:
    """The review app over `k` manifest items (cycling the synthesized images): requests, actions, restart."""
    from refine_iqa.io_utils import atomic_path, dumps, read_jsonl
    from refine_iqa.review import create_app
    from refine_iqa.review.app import EXTENSION_KEY

    base = [r for r in read_jsonl(work / f"synth-{_synth_k(work)}" / "manifest.jsonl")
            if r["review"]["status"] == "pending"]
    manifest = work / f"review-{k}" / "manifest.jsonl"
    # Written line by line: the harness's own copy of k records would otherwise count in the job's peak RSS.
    with atomic_path(manifest) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i in range(k):
            f.write(dumps({**base[i % len(base)], "id": f"item-{i:06d}"}) + "\n")
    dec = manifest.with_name("decisions.jsonl")
    dec.unlink(missing_ok=True)
    t0 = time.perf_counter()
    app = create_app(manifest, dec, reviewer="bench", batch="all", max_delete_frac=0.2, image_root=None)
    start = time.perf_counter() - t0
    c, service = app.test_client(), app.extensions[EXTENSION_KEY]
    t = time.perf_counter()
    for _ in range(50):
        assert c.get("/api/state").status_code == 200
    state_ms = (time.perf_counter() - t) / 50 * 1e3
    t = time.perf_counter()
    n_img = 0
    for _ in range(10):
        item = c.get("/api/state").get_json()["item"]
        for url in (item["dist_url"], item["ref_url"]):
            assert c.get(url).status_code == 200
            n_img += 1
        c.post("/api/action", json={"action": "accept", "item_id": item["id"]})
    image_ms = (time.perf_counter() - t) / n_img * 1e3
    # The whole first pass (every 6th item deleted) and the verification pass through the service, then the
    # restart that replays all of it; 200 actions of each kind timed through HTTP on the way.
    t = time.perf_counter()
    http = 0
    while service.session.mode != "done":
        s = service.session
        action = "delete" if (s.mode == "review" and s.index[s.cursor] % 6 == 1) else "accept"
        body = {"action": action, "item_id": s.cursor, "reason": "other" if action == "delete" else None}
        if http < 200:
            assert c.post("/api/action", json=body).status_code == 200
            http += 1
            if http == 200:
                action_ms = (time.perf_counter() - t) / 200 * 1e3
        else:
            service.act(action, s.cursor, body["reason"])
    with open(dec, "rb") as f:
        events = sum(1 for _ in f)
    service.close()
    # A restart is a new process: the first server's objects are let go before the second one is built.
    del app, c, service
    gc.collect()
    t0 = time.perf_counter()
    app2 = create_app(manifest, dec, reviewer="bench", batch="all", max_delete_frac=0.2, image_root=None)
    restart = time.perf_counter() - t0
    app2.extensions[EXTENSION_KEY].close()
    return {"items": k, "seconds": restart, "unit": "item (restart replay)", "start_s": start,
            "state_ms": state_ms, "action_ms": action_ms, "image_ms": image_ms, "events": events,
            "restart_s": restart}


def _synth_k(work: Path) -> int:
    ks = sorted(int(p.name.split("-")[1]) for p in work.glob("synth-*") if (p / "manifest.jsonl").exists())
    if not ks:
        raise SystemExit("review_api needs a synthesized manifest: run the synthesize job first")
    return ks[0]


# ------------------------------------------------------------------------------------------------ driver


def _vm(field: str) -> float:
    """A /proc/self/status memory figure in MB (Linux), or 0.0."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the process's own memory map; getrusage's ru_maxrss would
    also carry the parent's peak across fork + exec on Linux."""
    return _vm("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: upper bound


def child(job: str, work: Path, k: int) -> None:
    os.chdir(REPO)
    result = globals()[f"job_{job}"](work, k)
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


def run_child(job: str, work: Path, k: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", job, "--size", str(k), "--work", str(work)],
                          capture_output=True, text=True, env=env)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{job} at {k} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4, help="N: images at the small size (4N at the large)")
    ap.add_argument("--review-items", type=int, default=5000, help="review API items at the small size")
    ap.add_argument("--jobs", default=",".join(JOBS))
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, Path(a.work), a.size)
        return
    jobs = [j for j in a.jobs.split(",") if j]
    unknown = set(jobs) - set(JOBS)
    if unknown:
        raise SystemExit(f"unknown jobs {sorted(unknown)}; choose from {JOBS}")
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    if any(j in jobs for j in ("scoring_eval", "score", "perception_eval")) and not (work / "model").exists():
        run_child("build_model", work, 0)  # in a subprocess: this driver stays small
    print(f"work folder {work}; N = {a.n}, review API N = {a.review_items}", flush=True)
    print(f"{'job':16} {'size':>6} {'items':>6} {'s/item':>9} {'peak RSS MB':>12} {'RSS 4N/N':>9}  details")
    results = {}
    for job in JOBS:
        if job not in jobs:
            continue
        small = a.review_items if job == "review_api" else a.n
        rows = []
        for k in (small, 4 * small):
            r = run_child(job, work, k)
            rows.append(r)
            extra = {x: (round(v, 3) if isinstance(v, float) else v) for x, v in r.items()
                     if x not in ("items", "seconds", "unit", "peak_rss_mb")}
            ratio = f"{rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}" if len(rows) == 2 else ""
            print(f"{job:16} {('N' if k == small else '4N'):>6} {r['items']:>6} {r['seconds'] / max(1, r['items']):>9.4f} "
                  f"{r['peak_rss_mb']:>12.0f} {ratio:>9}  per {r['unit']}; {extra}", flush=True)
        (a_, b_) = rows
        if b_["items"] > a_["items"]:  # fixed costs (model loading, app start) cancel out
            marginal = (b_["seconds"] - a_["seconds"]) / (b_["items"] - a_["items"])
            print(f"{job:16} {'4N-N':>6} {b_['items'] - a_['items']:>6} {marginal:>9.4f} {'':>12} {'':>9}  "
                  f"marginal time per {a_['unit']}", flush=True)
        results[job] = rows
    (work / "bench_scale.json").write_text(json.dumps(results, indent=2))
    print(f"figures saved in {work / 'bench_scale.json'}")


if __name__ == "__main__":
    main()
