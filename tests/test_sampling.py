"""Balanced (stratified) GRPO batches: rl/sampling.py and its wiring into the trainer."""

from collections import Counter

import pytest
import torch

from refine_iqa.rl.sampling import StratifiedRepeatSampler, stratified_order


def _windows(order, strata, size):
    return [Counter(strata[i] for i in order[k:k + size]) for k in range(0, len(order) - size + 1, size)]


def test_two_balanced_classes_alternate_exactly():
    strata = ["dark"] * 40 + ["bright"] * 40
    order = stratified_order(strata, torch.Generator().manual_seed(3))
    assert sorted(order) == list(range(80))  # a permutation: each prompt once per epoch
    # 80 items, 2 classes of 40: keys (j + u_c) / 40 interleave strictly, so every pair holds one of each.
    assert all(w == {"dark": 1, "bright": 1} for w in _windows(order, strata, 2))


def test_uneven_classes_keep_their_share_within_one_per_window():
    strata = ["a"] * 30 + ["b"] * 10 + ["c"] * 20  # shares 1/2, 1/6, 1/3
    for seed in range(20):
        order = stratified_order(strata, torch.Generator().manual_seed(seed))
        assert sorted(order) == list(range(60))
        for w in _windows(order, strata, 12):  # expected 6, 2, 4 per window of 12
            assert abs(w["a"] - 6) <= 1 and abs(w["b"] - 2) <= 1 and abs(w["c"] - 4) <= 1, (seed, w)


def test_plain_shuffling_is_not_balanced_so_the_check_above_can_fail():
    strata = ["a"] * 30 + ["b"] * 10 + ["c"] * 20
    worst = 0
    for seed in range(20):
        order = torch.randperm(60, generator=torch.Generator().manual_seed(seed)).tolist()
        worst = max(worst, max(abs(w["a"] - 6) for w in _windows(order, strata, 12)))
    assert worst >= 2


def test_same_seed_same_order_on_every_process_and_a_new_order_each_epoch():
    strata = [i % 3 for i in range(30)]
    a = StratifiedRepeatSampler(list(range(30)), strata, mini_repeat_count=2, batch_size=6, seed=7)
    b = StratifiedRepeatSampler(list(range(30)), strata, mini_repeat_count=2, batch_size=6, seed=7)
    epoch1, epoch2 = list(a), list(a)
    assert epoch1 == list(b)  # two processes, same seed: the same prompts in the same places
    assert epoch1 != epoch2  # the next epoch is reshuffled


def test_sampler_repeats_like_trls_repeat_sampler():
    """Each prompt G times in a row, each chunk of B prompts repeat_count times, incomplete chunk dropped."""
    strata = ["x", "y"] * 5  # 10 prompts, chunks of 4: the last 2 are dropped
    s = StratifiedRepeatSampler(list(range(10)), strata, mini_repeat_count=3, batch_size=4, repeat_count=2, seed=0)
    out = list(s)
    assert len(out) == len(s) == 2 * 4 * 3 * 2
    chunk = out[:12]
    assert chunk == out[12:24]  # repeat_count
    prompts = chunk[::3]
    assert all(chunk[3 * k:3 * k + 3] == [p] * 3 for k, p in enumerate(prompts))  # mini_repeat_count
    assert Counter(strata[p] for p in prompts) == {"x": 2, "y": 2}
    with pytest.raises(ValueError, match="3 strata for 10 prompts"):
        StratifiedRepeatSampler(list(range(10)), ["x"] * 3, mini_repeat_count=2)


def test_samples_carry_their_answer_class():
    from refine_iqa.rl.samples import stage2_sample

    assert stage2_sample({"image_path": "a.png", "mos_scaled": 3.99}, think=False)["stratum"] == "mos:3"
    assert stage2_sample({"image_path": "a.png", "mos_scaled": 0.0}, think=False)["stratum"] == "mos:0"


def test_balanced_batches_setting_reaches_the_trainer(tiny, brightness_records, tmp_path):
    """`balanced_batches: true` in a grpo block gives the trainer the samples' strata and the stratified
    sampler; every step's prompts then cover the score classes in proportion."""
    from trl.trainer.utils import RepeatSampler

    from refine_iqa.rewards import get_stage2_reward_funcs
    from refine_iqa.rl.grpo import run_grpo, _strata
    from refine_iqa.rl.samples import build_stage2

    model, processor = tiny
    samples = build_stage2(brightness_records[0], think=False)
    settings = dict(learning_rate=1e-3, lr_scheduler_type="constant", warmup_epochs=0.0, num_train_epochs=1,
                    max_steps=1, per_device_train_batch_size=8, num_generations=2, max_completion_length=4,
                    temperature=1.0, beta=0.0, logging_steps=1, balanced_batches=True)
    seen = {}
    run_grpo(model, processor, samples, get_stage2_reward_funcs("paper", mode="no_think"), settings, seed=0,
             curve_path=tmp_path / "c.jsonl", on_trainer=lambda t: seen.update(sampler=t._get_train_sampler()))
    sampler = seen["sampler"]
    assert isinstance(sampler, StratifiedRepeatSampler) and sampler.strata == _strata(samples)
    classes = Counter(sampler.strata)
    prompts = list(sampler)[::2]
    for k in range(0, len(prompts) - 4 + 1, 4):  # 4 prompts a step
        got = Counter(sampler.strata[p] for p in prompts[k:k + 4])
        # the bound of rl/sampling.py: |count - p*B| < 1 + K*p (K = 5 score classes here)
        assert all(abs(got[c] - 4 * n / len(samples)) < 1 + 5 * n / len(samples) for c, n in classes.items()), got
    plain = {}
    run_grpo(model, processor, samples, get_stage2_reward_funcs("paper", mode="no_think"),
             {**settings, "balanced_batches": False}, seed=0, curve_path=tmp_path / "d.jsonl",
             on_trainer=lambda t: plain.update(sampler=t._get_train_sampler()))
    assert type(plain["sampler"]) is RepeatSampler
    with pytest.raises(ValueError, match="sample 0 has none"):
        _strata([{"mos_scaled": 1.0}])
