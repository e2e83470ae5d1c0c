"""Time all 35 distortion types x 5 levels on one 1920x1080 natural image, on ONE core.

    .venv/bin/python benchmarks/bench_distortions.py [--image PATH] [--repeat N] [--json OUT.json]

Prints, per type, the time of all 5 levels and of level 3, then totals; both wall-clock time and process
CPU time (the machine is shared, so CPU time is the steadier figure). Each combination runs `--repeat`
times and the median is kept. Without --image, a 1920x1080 mosaic of four skimage photographs is used.
"""

from __future__ import annotations

import os

# One core: set before numpy / OpenCV / SciPy load their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import statistics
import sys
import time

import cv2
import numpy as np

cv2.setNumThreads(1)

from refine_iqa import distortions
from refine_iqa.io_utils import atomic_write_json, load_rgb

WIDTH, HEIGHT = 1920, 1080
# A published implementation of the same 35 types, one core, one 1920x1080 image (REFERENCE.md section 3).
REFERENCE_TOTAL_S = 26.0
TARGET_TOTAL_S = REFERENCE_TOTAL_S / 3


def mosaic() -> np.ndarray:
    """2 x 2 mosaic of skimage's colour photographs, each resized to 960 x 540 (no download needed)."""
    from skimage import data

    tiles = [cv2.resize(im, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_CUBIC)
             for im in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket())]
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])


def time_one(image: np.ndarray, name: str, level: int, repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for r in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        distortions.apply(image, name, level, seed=r)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", help="an image file; resized to 1920x1080 (default: skimage mosaic)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per combination, median kept (default 1)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    image = mosaic() if args.image is None else load_rgb(args.image)
    if image.shape[:2] != (HEIGHT, WIDTH):
        image = cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)

    # Warm-up, not timed: imports, codec start-up, cached tables, and the allocator's first page faults on
    # full-size buffers. The figures are the steady state of a process that distorts many images.
    for name in distortions.names():
        for level in distortions.LEVELS:
            distortions.apply(image[:64, :64], name, level, seed=0)
        distortions.apply(image, name, 1, seed=0)

    rows = []
    print(f"{'type':32s} {'5 levels wall':>13s} {'cpu':>7s} {'level 3 wall':>12s} {'cpu':>7s}")
    for name in distortions.names():
        per_level = [time_one(image, name, level, args.repeat) for level in distortions.LEVELS]
        wall5 = sum(w for w, _ in per_level)
        cpu5 = sum(c for _, c in per_level)
        rows.append({"name": name, "wall_all_levels_s": wall5, "cpu_all_levels_s": cpu5,
                     "wall_level3_s": per_level[2][0], "cpu_level3_s": per_level[2][1],
                     "wall_per_level_s": [w for w, _ in per_level], "cpu_per_level_s": [c for _, c in per_level]})
        print(f"{name:32s} {wall5:13.3f} {cpu5:7.3f} {per_level[2][0]:12.3f} {per_level[2][1]:7.3f}")

    totals = {key: sum(r[key] for r in rows) for key in
              ("wall_all_levels_s", "cpu_all_levels_s", "wall_level3_s", "cpu_level3_s")}
    print(f"{'TOTAL (175 / 35 at level 3)':32s} {totals['wall_all_levels_s']:13.3f} {totals['cpu_all_levels_s']:7.3f} "
          f"{totals['wall_level3_s']:12.3f} {totals['cpu_level3_s']:7.3f}")
    slowest = sorted(rows, key=lambda r: -r["cpu_all_levels_s"])[:5]
    print("slowest (cpu, 5 levels): " + ", ".join(f"{r['name']} {r['cpu_all_levels_s']:.3f}s" for r in slowest))
    ok = totals["cpu_all_levels_s"] <= TARGET_TOTAL_S
    print(f"target: 175 combinations <= {TARGET_TOTAL_S:.1f} s (one third of the reference's ~{REFERENCE_TOTAL_S:.0f} s): "
          f"{'met' if ok else 'NOT met'} (cpu {totals['cpu_all_levels_s']:.2f} s)")
    if args.json:
        atomic_write_json(args.json, {"image": args.image or "skimage mosaic", "size": [WIDTH, HEIGHT],
                                      "repeat": args.repeat, "rows": rows, "totals": totals,
                                      "target_total_s": TARGET_TOTAL_S, "target_met": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
