"""The workflow end to end on the smoke configuration, its dry-runs, and its one-line failures.

Every rule runs for real (tiny data, 2-3 optimizer steps). Checks the outputs, that a re-run does no work,
the MLflow parent/child runs with their curves, and that DVC's stages and Snakemake's rules agree.
"""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "2",
             "--rerun-triggers", "input", "params", "software-env", "code"]


def smk(workdir, *args, check=True, timeout=1200):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(SNAKEMAKE + ["--directory", str(workdir), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    smk(work, "--configfile", str(REPO / "configs/smoke.yaml"))
    return work


@pytest.mark.slow
def test_smoke_workflow_produces_everything(smoke_run):
    m = json.loads((smoke_run / "results/metrics.json").read_text())
    assert set(m["perception"]) == {"base", "stage1", "stage2-main"}
    assert set(m["scoring"]) == {"base", "stage1", "stage2-main", "stage2-no_pd"}
    # configs/smoke.yaml: 2 GRPO steps per stage (the trainer's closing summary row is not a step)
    assert m["curves"]["stage1"]["steps"] == m["curves"]["stage2-main"]["steps"] == 2
    assert set(m["perception"]["stage1"]["answers"]) == {"description", "grounding"}
    report = (smoke_run / "reports/report.md").read_text()
    for title in ("Table 1", "Table 2", "Stage-1 before / after", "Table 3", "Table 5", "Table 6", "Think length",
                  "Against the blind baselines", "Stage-1 skill kept after Stage-2"):
        assert title in report
    # the committed seed-noise measurement was made with the embedded settings, not the smoke ones: named, not used
    assert "so it is NOT applied" in report and "measured seed noise" not in report
    assert m["measured_seed_spread"]["status"] == "stale"
    # the seed-noise benchmark reads the evaluation's real result format
    sys.path.insert(0, str(REPO / "benchmarks"))
    from stage2_seed_spread import measures
    got = measures(json.loads((smoke_run / "results/scoring/stage2-main.json").read_text()))
    assert set(got["synthetic"]) == {"srcc_prob_think", "srcc_numeric_think", "hit_rate_think", "mae_think",
                                     "format_think"}
    for png in ("figures/training/stage2_answer_reward.png", "figures/data/family_counts.png"):
        assert (smoke_run / "reports" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for model in ("tiny-qwen2.5-vl", "base", "stage1", "stage2-main", "stage2-no_pd"):
        assert (smoke_run / "models" / model / "model.safetensors").exists()


@pytest.mark.slow
def test_smoke_workflow_writes_model_cards(smoke_run):
    """Every model folder has its training card; the report step wrote the evaluation cards beside the report."""
    from refine_iqa.model_card import read_card, split_card

    for name, stage in (("tiny-qwen2.5-vl", "build"), ("base", "warmstart"), ("stage1", "stage1"),
                        ("stage2-main", "stage2"), ("stage2-no_pd", "stage2")):
        meta, body = read_card(smoke_run / "models" / name)
        assert meta["refine_iqa"]["stage"] == stage and "pipeline demonstration" in body
    _, body = read_card(smoke_run / "models" / "stage2-no_pd")
    assert "variant: no_pd\n" in body and "training_seed: 0\n" in body  # seed offset 0: the global seed
    meta, _ = read_card(smoke_run / "models" / "stage1")
    assert meta["base_model"] == "models/base" and meta["refine_iqa"]["data"][0]["path"].endswith("manifest.jsonl")
    for name in ("base", "stage1", "stage2-main", "stage2-no_pd"):
        meta, body = split_card((smoke_run / "reports" / "model_cards" / f"{name}.md").read_text())
        assert meta["model-index"][0]["results"] and "SRCC (prob, no_think)" in body


@pytest.mark.slow
def test_rerun_does_no_work(smoke_run):
    out = smk(smoke_run, "--configfile", str(REPO / "configs/smoke.yaml"), "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.slow
def test_mlflow_has_one_parent_with_a_child_per_stage(smoke_run):
    db = sqlite3.connect(smoke_run / "mlflow.db")
    tags = db.execute("select run_uuid, key, value from tags").fetchall()
    parents = {r for r, k, v in tags if k == "refine_iqa.parent" and v == "true"}
    children = {r: v for r, k, v in tags if k == "mlflow.parentRunId"}
    assert len(parents) == 1 and set(children.values()) == parents
    stages = {v for r, k, v in tags if k == "refine_iqa.stage" and r in children}
    assert {"warmstart", "stage1", "stage2-main", "stage2-no_pd", "synthesize"} <= stages
    keys = {k for (k,) in db.execute("select distinct key from metrics")}
    for k in ("rewards/answer_reward/mean", "rewards/answer_reward/std", "rewards/pd_reward/mean", "reward_std",
              "completions/mean_length", "loss", "learning_rate", "think/mean_words", "pd/r_ref",
              "groups/frac_with_correct", "rewards/grounding_reward/mean"):
        assert k in keys, k


def test_embedded_and_paper_configurations_dry_run(tmp_path):
    out = smk(tmp_path, "-n")
    assert "stage2" in out.stdout and "report" in out.stdout
    out = smk(tmp_path, "-n", "--configfile", str(REPO / "configs/paper.yaml"))
    assert "stage1" in out.stdout and "build_model" not in out.stdout and "warm_start" not in out.stdout


def test_seed_replicates_join_the_dag(tmp_path):
    """ablations.seeds: [0, 1] adds a `_seed1` Stage-2 run of main and of each variant (seed offset passed by
    name), their evaluations, and feeds them to the metrics job (dry-run of the smoke configuration)."""
    seeds = tmp_path / "seeds.yaml"
    seeds.write_text("ablations:\n  seeds: [0, 1]\n")
    out = smk(tmp_path, "-n", "-p", "--configfile", str(REPO / "configs/smoke.yaml"), str(seeds)).stdout
    jobs = out.split("\nrule ")
    metrics = next(j for j in jobs if j.startswith("metrics:"))
    for run in ("main", "main_seed1", "no_pd", "no_pd_seed1"):  # configs/smoke.yaml: variants [no_pd]
        assert f"--variant {run} --out models/stage2-{run} " in out, run
        assert any(j.startswith("eval_scoring:") and f"results/scoring/stage2-{run}.json" in j for j in jobs), run
        assert f"results/scoring/stage2-{run}.json" in metrics and f"results/curves/stage2-{run}.jsonl" in metrics
    assert "seed2" not in out and "no_pm" not in out


def test_paper_configuration_without_the_model_fails_at_once(tmp_path):
    missing = tmp_path / "Qwen2.5-VL-7B-Instruct"
    out = smk(tmp_path, "--configfile", str(REPO / "configs/paper.yaml"), "--config", f"model={{'path': '{missing}'}}",
              check=False, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "model.path" in text and str(missing) in text and "not found" in text
    assert not (tmp_path / "work").exists() and not (tmp_path / "models").exists()


def test_malformed_settings_stop_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage2:\n  pm:\n    delat: 0.1\n")
    out = smk(tmp_path, "--configfile", str(bad), "-n", check=False, timeout=120)
    assert out.returncode != 0 and "stage2.pm" in out.stdout + out.stderr and "delat" in out.stdout + out.stderr


def test_dvc_stages_and_snakemake_rules_agree(tmp_path):
    """Every DVC stage's command names targets Snakemake can build, and its outs are files the rules produce."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert list(stages) == ["curate", "synthesize", "stage1", "stage2", "evaluate"]

    def sub(text):
        for key, value in params["paths"].items():
            text = text.replace("${paths.%s}" % key, value)
        return text

    out = smk(tmp_path, "-n", "--summary")
    produced = {line.split("\t")[0] for line in out.stdout.splitlines()[1:] if line.strip()}
    for name, stage in stages.items():
        targets = sub(stage["cmd"]).split("profiles/local", 1)[1].split()
        smk(tmp_path, "-n", *targets)  # buildable
        for o in stage.get("outs", []) + stage.get("metrics", []):
            path = sub(next(iter(o)) if isinstance(o, dict) else o)
            assert any(p == path or p.startswith(path + "/") for p in produced), f"{name}: {path} is produced by no rule"
