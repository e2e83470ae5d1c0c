"""One-GPU check of the paper-scale paths (driven by benchmarks/gpu_check.sh; see docs/gpu.md).

Subcommands:
  embedded  the embedded tiny model, bf16 on cuda: two Stage-2 steps (PD + PM) through the project's path
  build     random-weight Qwen2.5-VL at the 3B dimensions (or `narrow`), built ON the device, saved as a folder
  stage2    a few Stage-2 steps on a built model at one image size: `--trainer refine` (the project: PD + PM,
            args before load) or `--trainer plain` (TRL's GRPOTrainer, same settings); run it under
            `accelerate launch --config_file configs/accelerate/zero3_offload.yaml --num_processes 1` for ZeRO-3
  summary   prints step time and peak memory of every stage2 result in a folder, refine / plain ratios

CPU dry run of the same logic: `gpu_check.py build --arch narrow --device cpu --dtype float32 ...`, then
`stage2 --device cpu --dtype float32 --size 224x224 --steps 1`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale_model as S  # noqa: E402

ARCHS = {"3b": S.QWEN25_VL_3B, "narrow": S.NARROW}


def stage2_settings(steps: int, completion: int, bf16: bool) -> dict:
    """Paper Stage-2 settings (G = 8, one prompt of 8 rollouts per device step), `steps` optimizer steps."""
    return dict(learning_rate=1e-6, lr_scheduler_type="constant", warmup_epochs=0.0, weight_decay=0.0,
                num_train_epochs=1, max_steps=steps, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                num_generations=8, max_completion_length=completion, temperature=1.0, epsilon=0.2, beta=0.0,
                bf16=bf16, gradient_checkpointing=True, logging_steps=1)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--size {text!r}: use WIDTHxHEIGHT, e.g. 1920x1080") from None
    return w, h


def summary(folder: Path) -> str:
    rows = {}
    for p in sorted(folder.glob("stage2-*.json")):
        r = json.loads(p.read_text())
        rows[(r["size"], r["trainer"])] = r
    lines = ["| size | trainer | steps | median step s | peak GPU GiB | step ratio refine/plain | memory ratio |",
             "|---|---|---|---|---|---|---|"]
    for (size, trainer), r in sorted(rows.items()):
        plain = rows.get((size, "plain"))
        ratio_t = ratio_m = ""
        if trainer == "refine" and plain:
            ratio_t = f"{r['median_step_after_first_s'] / plain['median_step_after_first_s']:.2f}"
            if r.get("peak_gpu_gib") and plain.get("peak_gpu_gib"):
                ratio_m = f"{r['peak_gpu_gib'] / plain['peak_gpu_gib']:.2f}"
        lines.append(f"| {size} | {trainer} | {r['steps']} | {r['median_step_after_first_s']:.2f} | "
                     f"{r.get('peak_gpu_gib')} | {ratio_t} | {ratio_m} |")
    emb = folder / "embedded.json"
    if emb.exists():
        e = json.loads(emb.read_text())
        lines.append(f"\nembedded tiny model, bf16 on {e['device']}: {e['steps']} steps, median step "
                     f"{e['median_step_after_first_s']:.2f} s, peak GPU {e.get('peak_gpu_gib')} GiB")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embedded")
    e.add_argument("--out", required=True)
    e.add_argument("--device", default="cuda")
    b = sub.add_parser("build")
    b.add_argument("--arch", choices=sorted(ARCHS), default="3b")
    b.add_argument("--device", default="cuda")
    b.add_argument("--dtype", default="bfloat16")
    b.add_argument("--out", required=True)
    s = sub.add_parser("stage2")
    s.add_argument("--model", required=True)
    s.add_argument("--size", default="448x448")
    s.add_argument("--trainer", choices=["refine", "plain"], default="refine")
    s.add_argument("--device", default="cuda")
    s.add_argument("--dtype", default="bfloat16")
    s.add_argument("--steps", type=int, default=3)
    s.add_argument("--completion", type=int, default=128)
    s.add_argument("--photos", default=None, help="folder for the generated JPEGs (default: next to --out)")
    s.add_argument("--out", required=True)
    m = sub.add_parser("summary")
    m.add_argument("folder")
    a = ap.parse_args(argv)

    if a.cmd == "build":
        S.build_model(a.out, ARCHS[a.arch], device=a.device, dtype=a.dtype)
        print(f"[gpu_check] built {a.arch} ({S.count_parameters(ARCHS[a.arch]) / 1e9:.2f}B parameters) in {a.out}")
    elif a.cmd == "embedded":
        from refine_iqa.model.build_tiny import build_tiny_model

        out = Path(a.out)
        model_dir = build_tiny_model(out.parent / "embedded-tiny", seed=0)
        images = S.photos(out.parent / "photos", 2, 112, 112)
        settings = {**stage2_settings(3, 24, bf16=a.device != "cpu"), "per_device_train_batch_size": 8}
        res = S.run_stage2_steps(model_dir, images, settings, trainer="refine", device=a.device,
                                 dtype="bfloat16" if a.device != "cpu" else "float32", max_pixels=12544, out_json=out)
        print(f"[gpu_check] embedded: {json.dumps(res)}")
    elif a.cmd == "stage2":
        w, h = parse_size(a.size)
        out = Path(a.out)
        images = S.photos(Path(a.photos) if a.photos else out.parent / "photos", 2, w, h)
        res = S.run_stage2_steps(a.model, images, stage2_settings(a.steps, a.completion, bf16=a.dtype == "bfloat16"),
                                 trainer=a.trainer, device=a.device, dtype=a.dtype, max_pixels=1920 * 1080)
        res["size"] = a.size
        if res["rank"] == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=1))
        print(f"[gpu_check] stage2 {a.trainer} {a.size}: {json.dumps(res)}")
    else:
        print(summary(Path(a.folder)))


if __name__ == "__main__":
    main()
