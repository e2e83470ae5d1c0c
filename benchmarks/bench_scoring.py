"""Scoring throughput: the project's batched `Scorer` against plain Hugging Face one-image-at-a-time scoring.

    .venv/bin/python benchmarks/bench_scoring.py [--model DIR] [--n 16] [--batch-size 8] [--device auto]
                                                 [--threads 1] [--repeats 2] [--profile] [--json OUT.json]

Same model object, same in-memory PIL images (file decoding is left out of both), at 448x448 and 1920x1080.
The baseline is what one writes from the transformers docs: per image, the processor, `model.generate` of the
no-think answer (24 new tokens, the budget Scorer gives it) with the step logits kept, and the probability-based
score (Eq. 8) read from the logits of the digits "0".."4" where the model wrote the score's integer digit; when
the model wrote no score there (the embedded model's random weights rarely do), one more forward pass with the
answer prefix ("[answer]Score: ") forced, which is what Scorer reads. Rows:
  baseline   plain HF, one image at a time, generate + digit read
  scorer     Scorer(mode="prob"), batched: no generation for no-think prob scoring, one forward per batch
  scorer_b1  the same, batch size 1 (separates batching from not generating)
  numeric    Scorer(mode="numeric"), batched: generates the answers too (batched generation + read)
Images/s (wall) and images per CPU second are medians over repeats after one warm-up pass. --profile splits Scorer's time into processor
(chat template, image resize/normalise, tokenise) and model (forward/generate) by wrapping both.
Without --model the embedded tiny model is built into a temporary folder (its processor caps images at
12544 pixels, so 1920x1080 costs mostly the resize); --hidden/--layers/--max-pixels build a larger
random-weight model instead, to see how the ratio moves when the model's compute grows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch


def make_images(n: int, w: int, h: int, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        out.append(Image.fromarray(small).resize((w, h), Image.BILINEAR))
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def plain_hf_score(model, processor, image, *, max_new_tokens: int = 24) -> float:
    """One image, written plainly with the transformers API (no project helpers besides the prompt text)."""
    from refine_iqa import prompts

    tok = processor.tokenizer
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompts.score_prompt(think=False)}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[image], return_tensors="pt").to(model.device)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, pad_token_id=tok.pad_token_id)
    digit_ids = [tok.convert_tokens_to_ids(d) for d in "01234"]
    new = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    logits = None
    for t, token in enumerate(new):  # the integer digit right after "Score:"
        if token in digit_ids and tok.decode(new[:t]).rstrip().endswith("Score:"):
            logits = out.logits[t][0, digit_ids]
            break
    if logits is None:  # no score written: force the answer prefix and read the next-token logits
        prefix = prompts.get_tag_style("paper").answer_open + "Score: "  # "[answer]Score: " in the paper's tags
        forced = processor(text=[text + prefix], images=[image], return_tensors="pt").to(model.device)
        logits = model(**forced).logits[0, -1, digit_ids]
    probs = torch.softmax(logits.float(), dim=-1)
    return float((probs * torch.arange(5, device=probs.device)).sum()) + 0.5


def timed(fn, device: str, repeats: int) -> tuple[float, float, object]:
    """Median wall seconds and median process CPU seconds over `repeats` runs after one warm-up run.
    On a shared CPU machine (one thread) CPU seconds are the steadier figure; on a GPU, wall seconds."""
    fn()  # warm-up (lazy initialisation, allocator, kernels)
    wall, cpu, result = [], [], None
    for _ in range(repeats):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        _sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), result


def profile_scorer(scorer, images) -> dict:
    """Seconds of one Scorer.score spent in: the processor call (chat template, image resize/normalise,
    tokenise), model forward passes (hooks), generate's own loop overhead (generate minus the forwards it ran),
    and the rest (decoding, parsing, Python). Wrappers and hooks only: no project code is edited."""
    spent = {"processor": 0.0, "forward": 0.0, "generate": 0.0}
    state = {"in_generate": False, "fwd_in_gen": 0.0, "t": 0.0}
    proc_cls, model = type(scorer.processor), scorer.model
    orig_proc, orig_gen = proc_cls.__call__, model.generate

    def proc(*a, **k):
        t0 = time.perf_counter()
        try:
            return orig_proc(*a, **k)
        finally:
            spent["processor"] += time.perf_counter() - t0

    def gen(*a, **k):
        t0 = time.perf_counter()
        state["in_generate"] = True
        try:
            return orig_gen(*a, **k)
        finally:
            state["in_generate"] = False
            spent["generate"] += time.perf_counter() - t0

    def pre(module, args):
        _sync(str(model.device))
        state["t"] = time.perf_counter()

    def post(module, args, out):
        _sync(str(model.device))
        dt = time.perf_counter() - state["t"]
        spent["forward"] += dt
        if state["in_generate"]:
            state["fwd_in_gen"] += dt

    handles = [model.register_forward_pre_hook(pre), model.register_forward_hook(post)]
    proc_cls.__call__, model.generate = proc, gen
    try:
        t0 = time.perf_counter()
        scorer.score(images)
        _sync(str(model.device))
        spent["total"] = time.perf_counter() - t0
    finally:
        proc_cls.__call__ = orig_proc
        del model.generate  # back to the class method
        for hd in handles:
            hd.remove()
    spent["generate_overhead"] = spent.pop("generate") - state["fwd_in_gen"]
    spent["other"] = spent["total"] - spent["processor"] - spent["forward"] - spent["generate_overhead"]
    return spent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="a Refine-IQA / Qwen2.5-VL folder (default: build the embedded tiny model)")
    ap.add_argument("--n", type=int, default=16, help="images per size")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="auto", help="auto (cuda when visible), cpu or cuda")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sizes", default="448x448,1920x1080")
    ap.add_argument("--hidden", type=int, default=64, help="built model only: hidden size (random weights)")
    ap.add_argument("--layers", type=int, default=2, help="built model only: decoder layers")
    ap.add_argument("--max-pixels", type=int, default=28 * 28 * 16, help="built model only: processor pixel cap")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)

    from refine_iqa.inference import Scorer

    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    tmp = None
    model_dir = args.model
    if model_dir is None:
        from refine_iqa.model.build_tiny import build_tiny_model

        tmp = tempfile.TemporaryDirectory()
        model_dir = build_tiny_model(f"{tmp.name}/tiny", seed=0, hidden_size=args.hidden, num_layers=args.layers,
                                     max_pixels=args.max_pixels)
    scorer = Scorer(model_dir, device=device, dtype=args.dtype, batch_size=args.batch_size)
    numeric = Scorer.__new__(Scorer)  # the same loaded model, numeric mode
    numeric.__dict__.update({**scorer.__dict__, "mode": "numeric"})
    scorer_b1 = Scorer.__new__(Scorer)
    scorer_b1.__dict__.update({**scorer.__dict__, "batch_size": 1})
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "-"
    n_params = sum(p.numel() for p in scorer.model.parameters())
    print(f"device {device} ({gpu}), dtype {args.dtype}, threads {args.threads}, {args.n} images per size, "
          f"batch {args.batch_size}, model {model_dir} ({n_params / 1e6:.2f}M parameters, "
          f"max_pixels {scorer.processor.image_processor.size.get('longest_edge')})")
    print(f"{'size':>10} {'row':>10} {'images/s':>9} {'vs base':>11} {'img/cpu-s':>10} {'vs base':>11}")
    report = {"parameters": n_params, "device": device, "gpu": gpu, "dtype": args.dtype, "threads": args.threads, "n": args.n,
              "batch_size": args.batch_size, "sizes": {}}
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        images = make_images(args.n, w, h)
        rows, cpu_rows = {}, {}
        runs = {
            "baseline": lambda: [plain_hf_score(scorer.model, scorer.processor, im) for im in images],
            "scorer": lambda: [r["score"] for r in scorer.score(images)],
            "scorer_b1": lambda: [r["score"] for r in scorer_b1.score(images)],
            "numeric": lambda: [r["score"] for r in numeric.score(images)],
        }
        results = {}
        for name, fn in runs.items():
            t, c, results[name] = timed(fn, device, args.repeats)
            rows[name], cpu_rows[name] = args.n / t, args.n / c
        # Where the baseline read the forced prefix (no score written) it computes Scorer's number.
        diff = max(abs(a - b) for a, b in zip(results["baseline"], results["scorer"]))
        for name in runs:
            print(f"{size:>10} {name:>10} {rows[name]:9.2f} {rows[name] / rows['baseline']:10.2f}x "
                  f"{cpu_rows[name]:10.2f} {cpu_rows[name] / cpu_rows['baseline']:10.2f}x")
        print(f"{size:>10} max |baseline score - Scorer score| = {diff:.2e}")
        report["sizes"][size] = {"images_per_s": rows, "images_per_cpu_s": cpu_rows, "max_abs_score_diff": diff}
        if args.profile:
            p = profile_scorer(scorer, images)
            p1 = profile_scorer(numeric, images)
            for label, q in (("scorer", p), ("numeric", p1)):
                print(f"{size:>10} profile {label}: total {q['total']:.3f}s = processor {q['processor']:.3f}s + "
                      f"forward {q['forward']:.3f}s + generate loop {q['generate_overhead']:.3f}s + "
                      f"other {q['other']:.3f}s")
            report["sizes"][size]["profile"] = {"scorer": p, "numeric": p1}
    if args.json:
        from refine_iqa.io_utils import atomic_write_json

        atomic_write_json(args.json, report)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
