"""Training-seed replicates of the Stage-2 runs (ablations.seeds): the `<variant>_seed<k>` names, the list of
runs, the seed-spread arithmetic of Table 5 and its verdict, all against hand-worked values."""

import math
from pathlib import Path

import pytest

from refine_iqa.config import ConfigError, load_params
from refine_iqa.report import _ablation_gap_section, ablation_spread, gap_verdict, seed_spread
from refine_iqa.stages.stage2 import stage2_settings
from refine_iqa.variants import parse_stage2_name, stage2_runs

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_run_names_parse_to_variant_and_seed_offset():
    assert parse_stage2_name("main") == ("main", 0)
    assert parse_stage2_name("no_pd") == ("no_pd", 0)
    assert parse_stage2_name("main_seed1") == ("main", 1)
    assert parse_stage2_name("no_pd_no_pm_seed12") == ("no_pd_no_pm", 12)
    # offset 0 is the plain name: one name per run, so the alias is refused, naming the right one
    for bad in ("main_seed0", "no_pd_seed00"):
        with pytest.raises(ValueError, match="offset 0 is the variant's own name"):
            parse_stage2_name(bad)
    for bad, shown in (("main_seedx", "'x'"), ("main_seed", "''"), ("no_pd_seed01", "'01'"), ("main_seed1b", "'1b'")):
        with pytest.raises(ValueError, match=f"whole number from 1 up.*not {shown}"):
            parse_stage2_name(bad)
    for bad in ("nope", "nope_seed1", "main2"):
        with pytest.raises(ValueError, match="unknown Stage-2 variant"):
            parse_stage2_name(bad)


def test_the_schema_allows_exactly_the_declared_variants():
    """params.schema.yaml's enum of ablation variants is the variants table of refine_iqa.variants minus main."""
    import yaml

    from refine_iqa.variants import STAGE2_VARIANTS

    schema = yaml.safe_load((PARAMS.parent / "src/refine_iqa/schema/params.schema.yaml").read_text())
    enum = schema["properties"]["ablations"]["properties"]["variants"]["items"]["enum"]
    assert sorted(enum) == sorted(set(STAGE2_VARIANTS) - {"main"})


def test_replicate_settings_add_the_offset_to_the_global_seed():
    p = load_params(PARAMS, overrides={"seed": 7})
    assert stage2_settings(p, "main")["seed"] == 7  # offset 0: today's run
    assert stage2_settings(p, "no_pd_seed2") == {**stage2_settings(p, "no_pd"), "seed": 9}
    assert stage2_settings(p, "no_stage1_seed1")["init"] == "base"


def test_runs_are_declared_once_from_variants_and_seeds():
    p = load_params(PARAMS)
    assert stage2_runs(p) == ["main", "no_stage1", "no_pd", "no_pm", "no_pd_no_pm", "no_think"]  # seeds [0]
    p = load_params(PARAMS, overrides={"ablations": {"variants": ["no_pd"], "seeds": [0, 1, 2]}})
    assert stage2_runs(p) == ["main", "main_seed1", "main_seed2", "no_pd", "no_pd_seed1", "no_pd_seed2"]
    p = load_params(PARAMS, overrides={"ablations": {"enabled": False, "seeds": [0, 1]}})
    assert stage2_runs(p) == ["main"]  # seeds belong to the ablations
    with pytest.raises(ConfigError, match=r"ablations.seeds: \[1, 2\] must include 0"):
        load_params(PARAMS, overrides={"ablations": {"seeds": [1, 2]}})
    with pytest.raises(ConfigError, match="ablations.seeds"):
        load_params(PARAMS, overrides={"ablations": {"seeds": [0, 0]}})


def test_seed_spread_hand_worked():
    # gaps -0.10, -0.04, -0.07: mean -0.07, min -0.10, max -0.04. Main's SRCC 0.80, 0.84, 0.82: mean 0.82,
    # squared deviations 0.0004 + 0.0004 + 0 = 0.0008, / (3 - 1) = 0.0004, std 0.02.
    s = seed_spread([0, 1, 2], {0: -0.10, 1: -0.04, 2: -0.07}, {0: 0.80, 1: 0.84, 2: 0.82})
    assert s["mean"] == pytest.approx(-0.07) and s["min"] == pytest.approx(-0.10) and s["max"] == pytest.approx(-0.04)
    assert s["main_std"] == pytest.approx(0.02) and s["main_n"] == 3
    assert s["used"] == [0, 1, 2] and s["missing"] == [] and s["undefined"] == []


def test_seed_spread_edge_cases():
    # one seed: the mean is that gap, every spread undefined
    s = seed_spread([0], {0: 0.05}, {0: 0.8})
    assert s["mean"] == 0.05 and math.isnan(s["min"]) and math.isnan(s["max"]) and math.isnan(s["main_std"])
    # a variant without seed 2's replicate: skipped for that seed, stated; main's std still uses its 3 seeds
    s = seed_spread([0, 1, 2], {0: -0.2, 1: 0.1}, {0: 0.5, 1: 0.7, 2: 0.9})
    assert s["missing"] == [2] and s["used"] == [0, 1]
    assert s["mean"] == pytest.approx(-0.05) and (s["min"], s["max"]) == (-0.2, 0.1)
    assert s["main_std"] == pytest.approx(0.2)  # deviations -0.2, 0, 0.2: sqrt(0.08 / 2)
    # an undefined SRCC (NaN: constant labels or a non-finite score) on seed 1: left out of the mean and the range,
    # listed as undefined (constant PREDICTIONS score SRCC 0 in metrics.srcc: a run that ranks nothing, kept)
    s = seed_spread([0, 1, 2], {0: -0.3, 1: math.nan, 2: -0.1}, {0: 0.6, 1: math.nan, 2: 0.8})
    assert s["undefined"] == [1] and s["used"] == [0, 2]
    assert s["mean"] == pytest.approx(-0.2) and (s["min"], s["max"]) == (-0.3, -0.1)
    assert s["main_std"] == pytest.approx(math.sqrt(0.02)) and s["main_n"] == 2


def test_gap_verdict_needs_both_spreads():
    one = seed_spread([0], {0: -0.3}, {0: 0.8})
    assert gap_verdict(-0.3, -0.4, -0.2, one) == "yes, beyond the test-sample spread"
    assert gap_verdict(-0.3, -0.4, 0.1, one) == "no: within the test-sample spread"
    agree = seed_spread([0, 1, 2], {0: -0.10, 1: -0.04, 2: -0.07}, {0: 0.80, 1: 0.84, 2: 0.82})
    assert gap_verdict(-0.07, -0.09, -0.05, agree) == "yes, beyond both spreads"
    assert gap_verdict(-0.07, -0.09, 0.01, agree) == "no: within the test-sample spread"
    # the seeds disagree on the sign: inside the training-seed spread even with a tight bootstrap
    split = seed_spread([0, 1], {0: -0.2, 1: 0.1}, {0: 0.8, 1: 0.8})
    assert gap_verdict(-0.05, -0.06, -0.04, split) == "no: within the training-seed spread"
    assert gap_verdict(-0.05, -0.06, 0.04, split) == "no: within both spreads"
    # same sign on every seed, but smaller than main's own seed-to-seed std (0.1 * sqrt(2) = 0.141)
    noisy_main = seed_spread([0, 1], {0: -0.1, 1: -0.12}, {0: 0.7, 1: 0.9})
    assert gap_verdict(-0.11, -0.12, -0.10, noisy_main) == "no: within the training-seed spread"
    lone = seed_spread([0, 1], {0: -0.1}, {0: 0.7, 1: 0.9})  # seeds configured, one usable
    assert gap_verdict(-0.1, -0.2, -0.05, lone).startswith("no: training-seed spread not measured")
    assert gap_verdict(math.nan, math.nan, math.nan, one).startswith("undetermined")


LABELS = [0.1, 0.5, 0.9, 1.3, 2.0, 2.2, 3.1, 4.0]


def _preds(work, name, probs):
    from refine_iqa.io_utils import write_jsonl

    write_jsonl(work / "predictions" / f"scoring-stage2-{name}.jsonl",
                [{"dataset": "synthetic", "mode": mode, "item_id": f"i{k}", "prob": p, "label": y}
                 for mode in ("think", "no_think") for k, (p, y) in enumerate(zip(probs, LABELS))])


def test_ablation_spread_pairs_replicates_by_seed(tmp_path):
    """Hand-worked SRCCs on 8 images: the label order 1; one adjacent swap 1 - 6*2/(8*63) = 0.97619; reversed -1."""
    one_swap = LABELS[:3] + [LABELS[4], LABELS[3]] + LABELS[5:]
    _preds(tmp_path, "main", LABELS)
    _preds(tmp_path, "main_seed1", one_swap)
    _preds(tmp_path, "no_pd", LABELS[::-1])      # seed 0: -1 - 1 = -2
    _preds(tmp_path, "no_pd_seed1", LABELS)      # seed 1: 1 - 0.97619 = +0.02381 (against main_seed1, not main)
    _preds(tmp_path, "no_pm", LABELS)            # seed 0 only: its seed-1 replicate is missing
    _preds(tmp_path, "no_think", LABELS)
    _preds(tmp_path, "no_think_seed1", [2.5] * 8)
    _preds(tmp_path, "no_pd_no_pm", LABELS)
    _preds(tmp_path, "no_pd_no_pm_seed1", [math.nan] + LABELS[1:])
    out = ablation_spread({"paths": {"work": str(tmp_path)}}, ["main", "main_seed1", "no_pd", "no_pd_seed1", "no_pm",
                                                               "no_think", "no_think_seed1", "no_pd_no_pm",
                                                               "no_pd_no_pm_seed1"])
    rho = 1 - 12 / 504
    g = out["no_pd"]["synthetic"]
    assert g["per_seed"]["0"]["gap"] == pytest.approx(-2.0) and g["per_seed"]["1"]["gap"] == pytest.approx(1 - rho)
    s = g["seeds"]
    assert g["gap"] == pytest.approx((-2 + 1 - rho) / 2) and (s["min"], s["max"]) == pytest.approx((-2.0, 1 - rho))
    assert s["main_std"] == pytest.approx((1 - rho) / math.sqrt(2))
    assert gap_verdict(g["gap"], g["p05"], g["p95"], s) in ("no: within the training-seed spread", "no: within both spreads")
    pm = out["no_pm"]["synthetic"]
    assert pm["seeds"]["missing"] == [1] and pm["gap"] == 0.0 and math.isnan(pm["seeds"]["min"])
    # constant predictions rank nothing: SRCC 0 (metrics.srcc), kept: seed 1's gap is 0 - rho
    assert out["no_think"]["synthetic"]["per_seed"]["1"]["gap"] == pytest.approx(-rho)
    assert out["no_think"]["synthetic"]["seeds"]["used"] == [0, 1]
    # a non-finite score makes the SRCC undefined (NaN): that seed is left out and named
    nan = out["no_pd_no_pm"]["synthetic"]
    assert nan["seeds"]["undefined"] == [1] and nan["seeds"]["used"] == [0] and nan["gap"] == 0.0
    assert set(out) == {"no_pd", "no_pm", "no_think", "no_pd_no_pm"}


def test_table5_states_how_to_measure_the_seed_spread(tmp_path):
    _preds(tmp_path, "main", LABELS)
    _preds(tmp_path, "no_pd", LABELS[::-1])
    text = "\n".join(_ablation_gap_section(ablation_spread({"paths": {"work": str(tmp_path)}}, ["main", "no_pd"])))
    assert "`ablations.seeds: [0, 1, 2]`" in text and "| no_pd | synthetic | -2.000 |" in text
    assert "seeds used" not in text  # one seed: today's table
    _preds(tmp_path, "main_seed1", LABELS)
    _preds(tmp_path, "no_pm", LABELS)
    text = "\n".join(_ablation_gap_section(ablation_spread({"paths": {"work": str(tmp_path)}},
                                                           ["main", "main_seed1", "no_pd", "no_pm"])))
    assert "seeds used" in text and "BOTH" in text
    # no_pd has no seed-1 replicate: one seed used, spreads shown as "-", the skip stated under the table
    assert "| no_pd | synthetic | 1 of 2 | -2.000 |" in text and "| - | 0.000 | no: training-seed spread not measured" in text
    assert "no_pd / synthetic: seed offset 1 has no replicate pair" in text


def test_train_step_passes_the_replicate_seed_to_grpo_and_the_card(tmp_path, monkeypatch):
    """train_stage2 for `no_pd_seed2` trains GRPO with seed + 2 (in the training args the trainer seeds from, and
    in run_grpo's seed) and records it in the model card (the model, data and GRPO run are stubbed: only the
    wiring is under test)."""
    from types import SimpleNamespace

    import refine_iqa.rewards
    import refine_iqa.rl.grpo
    import refine_iqa.rl.samples
    from refine_iqa.io_utils import write_jsonl
    from refine_iqa.model_card import read_card
    from refine_iqa.stages import stage2

    seen = {}

    def fake_run_grpo(*args, **kw):
        seen.update(kw)
        return SimpleNamespace(save_final=lambda out: Path(out).mkdir(parents=True, exist_ok=True),
                               accelerator=SimpleNamespace(is_main_process=True))

    def fake_load(params, init_dir, device, grpo_settings, checkpoints, *, seed):
        seen["args_seed"] = seed  # the GRPOConfig's seed: the one the trainer seeds sampling from
        return None, None, None

    monkeypatch.setattr(stage2, "_load_for_training", fake_load)
    monkeypatch.setattr(refine_iqa.rl.samples, "build_stage2", lambda recs, **k: [])
    monkeypatch.setattr(refine_iqa.rewards, "get_stage2_reward_funcs", lambda *a, **k: [])
    monkeypatch.setattr(refine_iqa.rl.grpo, "run_grpo", fake_run_grpo)
    p = load_params(PARAMS, overrides={"seed": 5, "tracking": {"enabled": False}})
    train = tmp_path / "scoring_train.jsonl"
    write_jsonl(train, [])
    init = tmp_path / "init"
    init.mkdir()
    out = tmp_path / "stage2-no_pd_seed2"
    stage2.train_stage2(p, init, train, out, tmp_path / "curve.jsonl", variant="no_pd_seed2")
    assert seen["seed"] == 7 and seen["resume_key_extra"]["variant"] == "no_pd_seed2"
    # Until 2026-12-07 the training args carried the global seed 5: every replicate trained as seed 0 did, and
    # Table 5 printed a seed spread of exactly 0.
    assert seen["args_seed"] == 7
    _, body = read_card(out)
    assert "training_seed: 7\n" in body and "variant: no_pd_seed2\n" in body


def test_run_grpo_refuses_args_built_with_another_seed(tmp_path):
    """The trainer seeds from args.seed and the resume key from `seed`: a mismatch is a wiring error, stopped
    before any training (it is how every ablation replicate once trained as seed 0)."""
    from refine_iqa.rl.grpo import run_grpo, training_args

    settings = load_params(PARAMS)["stage2"]["grpo"]
    args = training_args(settings, seed=0, checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"^run_grpo: seed=2 but the training args carry seed 0"):
        run_grpo(None, None, [], [], settings, seed=2, curve_path=tmp_path / "curve.jsonl", args=args)
