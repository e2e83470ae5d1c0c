"""Run under `accelerate launch --num_processes 2` with DeepSpeed ZeRO-3 switched on through accelerate's
environment (ACCELERATE_USE_DEEPSPEED, ACCELERATE_DEEPSPEED_CONFIG_FILE, ACCELERATE_DEEPSPEED_ZERO3_INIT):
loads the model through the project's training path (`stages.common._load_for_training`) and records, per process,
what tests/test_loading.py checks:

  {"rank", "local_rank", "cuda_device" (what `compute.device: cuda` would mean here),
   "zero3_at_from_pretrained" (transformers' public hook, read inside from_pretrained),
   "params": [[name, local numel, full numel, partition numel]...]}

Usage: accelerate launch --config_file configs/accelerate/cpu.yaml --num_processes 2 tests/loading_worker.py \
    --params P.json --model DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import transformers
    from transformers.integrations import is_deepspeed_zero3_enabled

    from refine_iqa.stages.common import _load_for_training
    from refine_iqa.model.loading import local_device

    seen = []
    orig = transformers.AutoModelForImageTextToText.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        seen.append(is_deepspeed_zero3_enabled())
        return orig(cls, *args, **kwargs)

    transformers.AutoModelForImageTextToText.from_pretrained = classmethod(recording)
    params = json.loads(Path(a.params).read_text())
    args, model, _ = _load_for_training(params, a.model, "cpu", params["stage2"]["grpo"], None, seed=params["seed"])
    rows = [[n, p.numel(), int(getattr(p, "ds_numel", p.numel())), int(p.ds_tensor.numel()) if hasattr(p, "ds_tensor") else None]
            for n, p in model.named_parameters()]
    rec = {"rank": int(os.environ["RANK"]), "local_rank": int(os.environ["LOCAL_RANK"]),
           "cuda_device": local_device("cuda"), "zero3_at_from_pretrained": seen, "params": rows,
           "args_alive": args is not None}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rec['rank']}.json").write_text(json.dumps(rec))


if __name__ == "__main__":
    main()
