"""The learnability bars (tests/learnability.py BARS), on results measured and tabled in docs/learnability.md:
each bar passes the rows that passed and fails, alone, the rows that failed for that reason. Fast: no training."""

from __future__ import annotations

from learnability import BARS, bars_text, failed_bars


def _stage2(ratio_from, ratio_to, hit, mae, srcc, fmt=1.0, distinct=5, std=1.0):
    return {"reward_first20": ratio_from, "reward_last20": ratio_to,
            "before": {"hit_rate": hit[0], "mae": mae[0]},
            "after": {"hit_rate": hit[1], "mae": mae[1], "srcc": srcc, "format": fmt, "distinct_preds": distinct,
                      "pred_std": std}}


def test_stage2_bars_on_the_seeds_table():
    seed0 = _stage2(0.139, 0.505, (0.14, 0.62), (2.30, 0.73), 0.880, distinct=3)
    seed7 = _stage2(0.170, 0.375, (0.30, 0.48), (1.14, 0.60), 0.796)  # the one failing seed: SRCC only
    assert failed_bars("stage2", seed0) == []
    assert failed_bars("stage2", seed7) == ["SRCC >= 0.8"]
    constant = _stage2(0.139, 0.505, (0.14, 0.62), (2.30, 0.73), 0.880, distinct=1, std=0.0)
    assert failed_bars("stage2", constant) == [">= 2 distinct scores, std > 0.5"]
    flat = _stage2(0.2, 0.2, (0.2, 0.2), (1.0, 1.0), 0.0, fmt=0.0)
    assert len(failed_bars("stage2", flat)) == 5  # everything but the spread (std 1.0 given)


def test_think_bars_on_the_measured_failures():
    ok = {"reward_first20": 0.167, "reward_last20": 0.433, "pd_nonzero_frac": 0.80,
          "after": {"format": 1.0, "srcc": 0.832, "distinct_preds": 2, "pred_std": 0.5}}
    assert failed_bars("stage2_think", ok) == []
    short = {**ok, "reward_last20": 0.167 * 1.79}  # the one-word recipe at 250 steps, seed 1: 1.79x
    assert failed_bars("stage2_think", short) == ["answer reward last-20 >= 1.8x first-20"]
    no_pd = {**ok, "pd_nonzero_frac": 0.5}  # exactly half is not "most steps"
    assert failed_bars("stage2_think", no_pd) == ["PD reward non-zero in more than half the steps"]


def test_stage1_and_grounding_bars():
    seed3 = {"reward_first20": 0.259, "reward_last20": 0.593, "family_after": 0.500}  # the collapse: blind
    assert failed_bars("stage1", seed3) == ["held-out family accuracy >= 0.75 (blind 0.5)"]
    assert failed_bars("stage1", {**seed3, "family_after": 0.969}) == []
    halves = {"blind_iou": 0.500, "iou_after": 0.454}  # every design before session 12: the best constant box
    assert failed_bars("grounding", halves) == ["held-out IoU >= best constant box + 0.1"]
    assert failed_bars("grounding", {**halves, "iou_after": 0.599}) == ["held-out IoU >= best constant box + 0.1"]
    assert failed_bars("grounding", {**halves, "iou_after": 0.600}) == []
    assert failed_bars("grounding", {**halves, "iou_after": 0.9375}) == []  # 32 x 4, 500 steps, seed 0


def test_every_recipe_has_bars_and_a_printable_summary():
    from learnability import RECIPES

    assert set(BARS) == set(RECIPES)
    assert bars_text("stage2").count(";") == len(BARS["stage2"]) - 1


def test_onset_step_is_the_first_trailing_mean_at_the_level():
    from learnability import onset_step

    assert onset_step([0.5] * 30, 0.6) is None  # a plateau at the blind box never reaches the bar
    assert onset_step([1.0] * 25, 1.0) == 25  # the first full window
    assert onset_step([1.0] * 24, 0.5) is None  # no full window yet
    # 24 zeros then ones: the window ending at step 39 holds 10 zeros and 15 ones, mean exactly 0.6
    assert onset_step([0.0] * 24 + [1.0] * 25, 0.6) == 39
    assert onset_step([0.0, 1.0, 1.0], 0.5, n=2) == 2  # (0 + 1) / 2 reaches 0.5 at step 2


def test_stop_after_onset_ends_training_extra_steps_after_the_onset():
    from types import SimpleNamespace

    from learnability import StopAfterOnset

    stopper = StopAfterOnset("r", level=0.6, extra=3, n=2)
    control = SimpleNamespace(should_training_stop=False)
    for step, value in enumerate([0.5, 0.5, 0.5, 0.7, 0.9, 0.9, 0.9], start=1):
        stopper.log({"r": value, "loss": 1.0}, control)
        if step < 7:
            # the onset: (0.5 + 0.7) / 2 = 0.6 at step 4; three more steps end the training at step 7
            assert not control.should_training_stop, step
    assert stopper.onset == 4 and control.should_training_stop
    quiet = SimpleNamespace(should_training_stop=False)
    plateau = StopAfterOnset("r", level=0.6, extra=0, n=2)
    for _ in range(50):
        plateau.log({"r": 0.5}, quiet)
        plateau.log({"loss": 1.0}, quiet)  # a log without the reward changes nothing
    assert plateau.onset is None and not quiet.should_training_stop


def test_stop_after_onset_scales_the_learning_rate_once_at_the_onset():
    from types import SimpleNamespace

    from learnability import StopAfterOnset

    stopper = StopAfterOnset("r", level=0.6, extra=2, n=1, lr_factor=0.1)
    scheduler, optimizer = SimpleNamespace(base_lrs=[1e-3]), SimpleNamespace(param_groups=[{"lr": 1e-3}])
    control = SimpleNamespace(should_training_stop=False)
    for value in [0.5, 0.7, 0.9, 0.9]:  # onset at step 2; the rate is cut there and not again
        stopper.callback.on_log(None, None, control, logs={"r": value}, lr_scheduler=scheduler, optimizer=optimizer)
    assert stopper.onset == 2 and control.should_training_stop
    assert scheduler.base_lrs == [1e-3 * 0.1] and optimizer.param_groups[0]["lr"] == 1e-3 * 0.1
