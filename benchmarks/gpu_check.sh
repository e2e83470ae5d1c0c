#!/usr/bin/env bash
# One-GPU check of the paper-scale paths (an H100/H200 with >= 80 GB; designed for < 8 minutes, see docs/gpu.md):
#   1. the embedded configuration, bf16 on cuda (two Stage-2 steps with PD + PM);
#   2. random-weight Qwen2.5-VL at the 3B dimensions, built on the GPU;
#   3. three Stage-2 steps (G = 8, 128-token rollouts) at 448x448 and at 1920x1080 under DeepSpeed ZeRO-3
#      (configs/accelerate/zero3_offload.yaml, one process), through the project's trainer (PD + PM) and through
#      plain TRL GRPOTrainer with the same settings;
#   4. a table of step time and peak GPU memory with refine / plain ratios.
# Usage: benchmarks/gpu_check.sh [WORK_DIR]     (PY=path/to/python to use another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${1:-$(mktemp -d -t gpu_check.XXXXXX)}
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$WORK"
echo "[gpu_check] work folder $WORK"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no GPU visible'; print('[gpu_check]', torch.cuda.get_device_name(0))"
"$PY" benchmarks/gpu_check.py embedded --out "$WORK/embedded.json"
"$PY" benchmarks/gpu_check.py build --arch 3b --device cuda --out "$WORK/qwen2.5-vl-3b-random"
for size in 448x448 1920x1080; do
  for trainer in refine plain; do
    "$PY" -m accelerate.commands.launch --config_file configs/accelerate/zero3_offload.yaml --num_processes 1 \
      benchmarks/gpu_check.py stage2 --model "$WORK/qwen2.5-vl-3b-random" --size "$size" --trainer "$trainer" \
      --out "$WORK/stage2-$trainer-$size.json"
  done
done
"$PY" benchmarks/gpu_check.py summary "$WORK"
