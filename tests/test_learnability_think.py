"""The main Stage-2 path learns: think mode with the PD reward and the modified advantage (PM), as
refine_iqa.stages.stage2.train_stage2 wires it, after a format-only warm start (one random think word and a random score).

Recipe (tests/learnability.py: run_stage2_think_recipe), seeds 0-7 and measured numbers: docs/learnability.md;
`benchmarks/learnability_seeds.py stage2_think --seeds 0-7` runs it on other seeds. Bars from issue 14 (answer
reward last 20 steps >= 1.8x the first 20, the PD reward non-zero in most steps, think format >= 0.95), plus the
held-out ranking the main job's report asks of Stage-2-main (SRCC >= 0.6) and an answer that is not constant.
"""

from __future__ import annotations

import pytest

from learnability import failed_bars

pytestmark = pytest.mark.slow


def test_stage2_think_with_pd_learns_the_brightness_score(learnability_run):
    r = learnability_run("stage2_think")  # seed 0, trained in the background from the session's start
    before, after, first, last = r["before"], r["after"], r["reward_first20"], r["reward_last20"]
    print(f"\nanswer reward first/last 20 steps {first:.3f} -> {last:.3f} ({last / first:.2f}x); PD non-zero in "
          f"{r['pd_nonzero_frac']:.0%} of steps\nheld-out before {before}\nafter {after}\n"
          f"GRPO {r['grpo_wall_s']:.0f} s wall, {r['grpo_cpu_s']:.0f} s CPU")
    failed = failed_bars("stage2_think", r)  # the bars: tests/learnability.py BARS["stage2_think"]
    assert not failed, f"missed: {failed}\n{r}"
