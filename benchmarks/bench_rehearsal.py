"""Paper-shape rehearsal on the CPU (`make rehearsal`; figures in docs/rehearsal.md).

The real Qwen2.5-VL architecture class with the real vocabulary (151,936) but narrow, shallow layers
(benchmarks/scale_model.py NARROW), the paper's processor pixel limits and lengths (configs/rehearsal.yaml over
params.yaml: max_pixels 1920x1080, G = 8, completions 256 / 512 tokens), full-size 12 MP JPEG photos in both
stages, two processes through `accelerate launch`, training through the project's own stage functions.

Subcommands:
  prepare    --work W --images N: the narrow model folder, N 4000x3000 photos, a perception manifest and
             scoring records pointing at them
  train      (under accelerate launch) --work W --stage stage1|stage2 --tag T: trains through
             stages.stage1.train_stage1 / stages.stage2.train_stage2, each rank writes W/figures/T-rank<k>.json (peak RSS, step times)
  pd-memory  --work W: peak memory of one PD readout, the old full-vocabulary fp32 log_softmax over every
             completion position vs the new rows-only fp32 readout, same inputs (fresh process each)
  report     --work W: prints every figure and the RSS ratio between tags
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale_model as S  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTO_W, PHOTO_H = 4000, 3000  # 12 MP


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakSampler:
    """Peak resident memory above the level at start, sampled every 2 ms in a thread."""

    def __enter__(self):
        self.base = _rss_mib()
        self.peak = self.base
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, _rss_mib())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, _rss_mib())

    @property
    def delta(self) -> float:
        return self.peak - self.base


def prepare(work: Path, n: int) -> None:
    from refine_iqa.io_utils import write_jsonl

    if not (work / "model" / "config.json").exists():
        S.build_model(work / "model", S.NARROW, device="cpu", dtype="float32", max_pixels=1920 * 1080)
    photos = S.photos(ROOT / "work" / "rehearsal-photos", 2 * n, PHOTO_W, PHOTO_H)
    items, scoring = [], []
    for i in range(n):
        ref, dist = photos[2 * i], photos[2 * i + 1]
        items.append({"id": f"r{i}", "source_id": f"s{i}", "ref_path": str(ref), "dist_path": str(dist),
                      "width": PHOTO_W, "height": PHOTO_H, "objects": ["red circle", "blue square"],
                      "object": "blue square", "box": [1000, 800, 2200, 1900], "family": "blur",
                      "type": "blur.gaussian", "level": 3, "split": "train",
                      "review": {"status": "accepted", "reason": None, "by": None, "rule": None}})
        scoring.append({"id": f"q{i}", "image_path": str(dist), "mos": 50.0, "mos_scaled": round(0.3 + 4.4 * i / max(n - 1, 1), 1),
                        "dataset": "rehearsal", "synthetic": True, "split": "train"})
    write_jsonl(work / "manifest.jsonl", items)
    write_jsonl(work / "scoring_train.jsonl", scoring)
    print(f"[rehearsal] {n} items, {2 * n} photos of {PHOTO_W}x{PHOTO_H} in {work}", flush=True)


def params(work: Path, steps: int, completion: int | None = None) -> dict:
    """params.yaml + configs/rehearsal.yaml; `completion` shortens both stages' rollouts (the slow test)."""
    from refine_iqa.config import load_params

    grpo = {"max_steps": steps, **({"max_completion_length": completion} if completion else {})}
    return load_params(ROOT / "params.yaml", overrides={
        "overlay": str(ROOT / "configs" / "rehearsal.yaml"), "model": {"path": str(work / "model")},
        "stage1": {"grpo": grpo}, "stage2": {"grpo": grpo}})


def train(work: Path, stage: str, tag: str, steps: int, completion: int | None = None) -> None:
    from refine_iqa.stages.stage1 import train_stage1
    from refine_iqa.stages.stage2 import train_stage2
    from refine_iqa.rl.trainer import read_curve

    p = params(work, steps, completion)
    out = work / "models" / f"{tag}-{stage}"
    curve = work / "curves" / f"{tag}-{stage}.jsonl"
    t0 = time.perf_counter()
    if stage == "stage1":
        train_stage1(p, work / "model", work / "manifest.jsonl", out, curve)
    else:
        train_stage2(p, work / "model", work / "scoring_train.jsonl", out, curve)
    rank = int(os.environ.get("RANK", "0"))
    rows = read_curve(curve) if rank == 0 else []
    fig = {"tag": tag, "stage": stage, "rank": rank, "world": int(os.environ.get("WORLD_SIZE", "1")),
           "images": sum(1 for _ in open(work / "scoring_train.jsonl")), "wall_s": round(time.perf_counter() - t0, 1),
           "peak_rss_mib": round(S.peak_rss_mib(), 1),
           "step_time_s": [r["step_time"] for r in rows if "step_time" in r]}
    (work / "figures").mkdir(parents=True, exist_ok=True)
    (work / "figures" / f"{tag}-{stage}-rank{rank}.json").write_text(json.dumps(fig, indent=1))
    print(f"[rehearsal] {json.dumps(fig)}", flush=True)


def pd_memory_one(work: Path, way: str, chunk: int, completion: int) -> dict:
    """One PD readout of `chunk` items with `completion`-token completions on a full-size photo."""
    import torch
    from PIL import Image

    from refine_iqa import prompts
    from refine_iqa.model.loading import load_model_and_processor
    from refine_iqa.rl.forcing import prompt_completion_inputs
    from refine_iqa.rl.pd import TeacherForcer

    torch.set_num_threads(1)
    model, processor = load_model_and_processor(work / "model", max_pixels=1920 * 1080)
    photo = Image.open(S.photos(ROOT / "work" / "rehearsal-photos", 1, PHOTO_W, PHOTO_H)[0])
    msgs = prompts.build_messages(prompts.score_prompt(think=True), 1)
    msgs[0]["content"][0]["image"] = photo
    think = "[think]" + " ".join(["sharp"] * 4000)
    ids = processor.tokenizer(think, add_special_tokens=False)["input_ids"][: completion - 12]
    text = processor.tokenizer.decode(ids) + "[/think][answer]Score: 3.7[/answer]"
    span = (len(text) - len("3.7[/answer]"), len(text) - len("[/answer]"))
    forcer = TeacherForcer(processor, chunk_size=chunk)
    items = [forcer.item(msgs, text, span)] * chunk
    with torch.no_grad():
        if way == "new":
            with PeakSampler() as m:
                z = forcer.digit_probs(model, items)[0]
        else:  # the code before issue #12: full-vocabulary logits of every completion position, fp32 log_softmax
            inputs, _ = prompt_completion_inputs(processor, [it.messages for it in items], [it.completion_ids for it in items])
            keep = len(items[0].completion_ids) + 1
            with PeakSampler() as m:
                logits = model(**inputs, logits_to_keep=keep).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                pos = items[0].digit_positions
                z = [float(logprobs[0, keep - 1 - (len(items[0].completion_ids) - p), t].exp())
                     for p, t in zip(pos, items[0].digit_token_ids)]
                del logits, logprobs
    return {"way": way, "chunk": chunk, "completion_tokens": len(items[0].completion_ids),
            "sequence_tokens": int(inputs["input_ids"].shape[1]) if way == "old" else None,
            "peak_above_start_mib": round(m.delta, 1), "z": z}


def pd_memory(work: Path, chunk: int, completion: int) -> None:
    figs = []
    for way in ("old", "new"):  # a fresh process each: the RSS high-water mark of one does not hide the other
        out = subprocess.run([sys.executable, __file__, "pd-one", "--work", str(work), "--way", way, "--chunk",
                              str(chunk), "--completion", str(completion)], capture_output=True, text=True, check=True)
        figs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    (work / "figures").mkdir(parents=True, exist_ok=True)
    (work / "figures" / "pd-memory.json").write_text(json.dumps(figs, indent=1))
    old, new = figs
    print(f"[rehearsal] PD readout, {chunk} items x {old['completion_tokens']} completion tokens, vocabulary 151936: "
          f"old {old['peak_above_start_mib']:.0f} MiB, new {new['peak_above_start_mib']:.0f} MiB above start "
          f"(ratio {old['peak_above_start_mib'] / max(new['peak_above_start_mib'], 1e-9):.1f}x); "
          f"z old {old['z']}, new {new['z']}", flush=True)


def report(work: Path) -> None:
    figs = [json.loads(p.read_text()) for p in sorted((work / "figures").glob("*-rank*.json"))]
    for f in figs:
        print(f"{f['tag']:>4} {f['stage']} rank {f['rank']}/{f['world']}: {f['images']} images, peak RSS "
              f"{f['peak_rss_mib']:.0f} MiB, steps {[round(x, 1) for x in f['step_time_s']]} s, wall {f['wall_s']} s")
    by = {(f["tag"], f["stage"], f["rank"]): f["peak_rss_mib"] for f in figs}
    for (tag, stage, rank), rss in sorted(by.items()):
        if tag == "4N" and ("N", stage, rank) in by:
            print(f"peak RSS {stage} rank {rank}: 4N / N = {rss / by[('N', stage, rank)]:.3f}")
    pd = work / "figures" / "pd-memory.json"
    if pd.exists():
        print("PD readout:", pd.read_text())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["prepare", "train", "pd-memory", "pd-one", "report"])
    ap.add_argument("--work", default=str(ROOT / "work" / "rehearsal"))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--stage", choices=["stage1", "stage2"], default="stage2")
    ap.add_argument("--tag", default="N")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--way", choices=["old", "new"], default="new")
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--completion", type=int, default=None, help="rollout length (default: the paper's, per stage)")
    a = ap.parse_args(argv)
    work = Path(a.work)
    if a.cmd == "prepare":
        prepare(work, a.images)
    elif a.cmd == "train":
        train(work, a.stage, a.tag, a.steps, a.completion)
    elif a.cmd == "pd-memory":
        pd_memory(work, a.chunk, a.completion or 512)
    elif a.cmd == "pd-one":
        print(json.dumps(pd_memory_one(work, a.way, a.chunk, a.completion or 512)))
    else:
        report(work)


if __name__ == "__main__":
    main()
