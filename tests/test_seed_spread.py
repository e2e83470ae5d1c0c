"""Stage-2-main's measured training-seed spread (eval/seed_spread.py, benchmarks/stage2_seed_spread.py): its
arithmetic against hand-worked values, when a measurement applies (the lineage fingerprint), and how Table 5
uses it."""

import json
import math
from pathlib import Path

import pytest

from refine_iqa import steps
from refine_iqa.config import load_params
from refine_iqa.eval import seed_spread
from refine_iqa.report import _ablation_gap_section, gap_verdict

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_summary_of_main_srcc_over_seeds_hand_worked():
    # 0.70, 0.74, 0.78: mean 0.74, sample std sqrt((0.04^2 + 0 + 0.04^2) / 2) = 0.04; noise 2 sqrt(2) 0.04
    s = seed_spread.summarise({"0": 0.70, "1": 0.74, "2": 0.78, "3": math.nan})
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.74) and s["std"] == pytest.approx(0.04)
    assert (s["min"], s["max"]) == pytest.approx((0.70, 0.78))
    assert s["noise"] == pytest.approx(2 * math.sqrt(2) * 0.04)
    one = seed_spread.summarise({"0": 0.7})
    assert one["n"] == 1 and math.isnan(one["std"]) and math.isnan(one["noise"])
    assert seed_spread.summarise({})["n"] == 0


def test_fingerprint_follows_the_lineage_code_and_settings_only(monkeypatch):
    p = load_params(PARAMS)
    fp = seed_spread.lineage_fingerprint(p)
    assert fp == seed_spread.lineage_fingerprint(load_params(PARAMS))  # deterministic
    # a setting Stage-2-main is trained with
    assert seed_spread.lineage_fingerprint(
        load_params(PARAMS, overrides={"stage2": {"grpo": {"learning_rate": 0.002}}})) != fp
    assert seed_spread.lineage_fingerprint(load_params(PARAMS, overrides={"seed": 1})) != fp
    assert seed_spread.lineage_fingerprint(load_params(PARAMS, overrides={"warmstart": {"steps": 299}})) != fp
    # settings that do not touch main: the ablation list, tracking
    assert seed_spread.lineage_fingerprint(load_params(PARAMS, overrides={"ablations": {"variants": ["no_pd"]}})) == fp
    assert seed_spread.lineage_fingerprint(load_params(PARAMS, overrides={"tracking": {"enabled": False}})) == fp
    # an edit to the code of any lineage step (here: Stage-1's) changes it
    real = steps.code_version
    monkeypatch.setattr(steps, "code_version", lambda s: "edited" if s == "stage1" else real(s))
    assert seed_spread.lineage_fingerprint(p) != fp


def _measurement(path: Path, fingerprint: str, values: dict) -> Path:
    path.write_text(json.dumps({"fingerprint": fingerprint, "measured_at": "2026-12-07T19:00:00+00:00",
                                "machine": "test", "offsets": [int(k) for k in values],
                                "per_seed": {k: {"synthetic": {"srcc_prob_think": v}} for k, v in values.items()}}))
    return path


def test_a_measurement_applies_only_to_the_code_and_settings_it_was_made_with(tmp_path):
    p = load_params(PARAMS)
    assert seed_spread.measured_spread(p, tmp_path / "none.json")["status"] == "absent"
    f = _measurement(tmp_path / "m.json", seed_spread.lineage_fingerprint(p), {"0": 0.70, "1": 0.74, "2": 0.78})
    m = seed_spread.measured_spread(p, f)
    assert m["status"] == "applies" and m["summary"]["synthetic"]["std"] == pytest.approx(0.04)
    other = load_params(PARAMS, overrides={"seed": 3})
    assert seed_spread.measured_spread(other, f)["status"] == "stale"
    bad = tmp_path / "bad.json"
    bad.write_text('{"per_seed": {"0": {"synthetic": {}}}, "fingerprint": "x"}')
    with pytest.raises(ValueError, match="bad.json: not a seed-spread measurement.*stage2_seed_spread.py"):
        seed_spread.measured_spread(p, bad)
    bad.write_text("{ not json")
    with pytest.raises(ValueError, match="bad.json"):
        seed_spread.measured_spread(p, bad)


def test_verdict_with_a_measured_noise_band():
    # bootstrap spread excludes 0 (-0.09 .. -0.05); noise 0.11: the gap -0.07 is seed noise
    assert gap_verdict(-0.07, -0.09, -0.05, noise=0.11) == "no: within the measured seed noise"
    assert gap_verdict(-0.12, -0.15, -0.09, noise=0.11) == "yes, beyond both spreads"
    assert gap_verdict(-0.12, -0.20, 0.01, noise=0.11) == "no: within the test-sample spread"
    assert gap_verdict(0.02, -0.01, 0.05, noise=0.11) == "no: within both spreads"
    # no measurement (None or NaN: one seed measured): the one-spread verdict
    assert gap_verdict(-0.07, -0.09, -0.05, noise=None) == "yes, beyond the test-sample spread"
    assert gap_verdict(-0.07, -0.09, -0.05, noise=math.nan) == "yes, beyond the test-sample spread"


SPREAD = {"no_pd": {"synthetic": {"gap": -0.07, "p05": -0.09, "p95": -0.05, "n": 64}},
          "no_pm": {"synthetic": {"gap": -0.15, "p05": -0.2, "p95": -0.1, "n": 64}}}


def test_table5_applies_a_measurement_that_holds_and_names_a_stale_one():
    summary = {"synthetic": seed_spread.summarise({"0": 0.70, "1": 0.74, "2": 0.78})}
    text = "\n".join(_ablation_gap_section(SPREAD, {"status": "applies", "summary": summary,
                                                     "measured_at": "2026-12-07", "machine": "m"}))
    assert "measured seed noise" in text and "mean 0.740, std 0.040, 0.700 .. 0.780" in text
    assert "| no_pd | synthetic | -0.070 | -0.090 .. -0.050 | +-0.113 | no: within the measured seed noise |" in text
    assert "| no_pm | synthetic | -0.150 | -0.200 .. -0.100 | +-0.113 | yes, beyond both spreads |" in text
    stale = "\n".join(_ablation_gap_section(SPREAD, {"status": "stale", "summary": summary, "measured_at": "then"}))
    assert "NOT applied" in stale and "+-0.113" not in stale
    assert "| no_pd | synthetic | -0.070 | -0.090 .. -0.050 | yes, beyond the test-sample spread |" in stale
    absent = "\n".join(_ablation_gap_section(SPREAD, {"status": "absent"}))
    assert "benchmarks/stage2_seed_spread.py" in absent and "NOT applied" not in absent


def test_the_workflow_declares_the_measurement_as_an_input():
    """The metrics step reads it, so the Snakemake rule and dvc.yaml must list it (when committed) and the
    path is written once (seed_spread.MEASURED_REL)."""
    root = Path(__file__).resolve().parents[1]
    assert seed_spread.MEASURED == root / seed_spread.MEASURED_REL
    assert "seed_spread=measured_seed_spread" in (root / "rules" / "report.smk").read_text()
    import yaml
    deps = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["evaluate"]["deps"]
    assert (seed_spread.MEASURED_REL in deps) == seed_spread.MEASURED.is_file()
