"""The step declaration (refine_iqa.steps): every rule is declared, the derived code and settings of a step are
what it really reads, and the committed dvc.yaml is the one generated from it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from refine_iqa import steps

REPO = Path(__file__).resolve().parents[1]
PKG = "src/refine_iqa/"


def _rules_with_work():
    """rule name -> script path (or None for shell rules), parsed from rules/*.smk."""
    out = {}
    for f in sorted((REPO / "rules").glob("*.smk")):
        for m in re.finditer(r"^\s*rule (\w+):\n(.*?)(?=^\s*rule |\Z)", f.read_text(), re.S | re.M):
            body = m.group(2)
            script = re.search(r'script:\s*\n\s*"\.\./([^"]+)"', body)
            if script or "shell:" in body:
                out[m.group(1)] = script.group(1) if script else None
    return out


def test_every_rule_that_does_work_is_declared_with_its_script():
    rules = _rules_with_work()
    assert set(rules) == set(steps.STEPS)
    for name, script in rules.items():
        assert steps.STEPS[name].script == script, name
        assert f'step_reads("{name}")' in "".join(f.read_text() for f in (REPO / "rules").glob("*.smk")), name


def test_code_of_each_step_follows_its_imports():
    def reading(path):
        return steps.steps_reading(path)

    # parsing.py: rewards (both trainings, the warm start) and every model evaluation, never the data engine
    assert {"stage1", "stage2", "warm_start", "eval_perception", "eval_scoring", "eval_qbench"} <= reading(PKG + "parsing.py")
    assert not {"curate_shard", "synthesize_shard", "scoring_set", "scenes"} & reading(PKG + "parsing.py")
    # PD and the warm start share rl/forcing.py (their teacher-forcing inputs); rl/pd.py is Stage-2's alone.
    assert reading(PKG + "rl/pd.py") == {"stage2"}
    assert reading(PKG + "rl/forcing.py") == {"stage2", "warm_start"}
    # a distortion family: reached through importlib.import_module("refine_iqa.distortions") by the synthesis
    assert {"synthesize_shard", "scoring_set"} <= reading(PKG + "distortions/blur.py")
    assert not {"stage1", "stage2", "eval_scoring"} & reading(PKG + "distortions/blur.py")
    # per-function modules: stages.stage2.train_stage2's PD import does not make Stage-1 read pd.py (checked
    # above); the CLI path of the shell rules is followed into stages.stage1.train_stage1
    assert PKG + "stages/stage1.py" in steps.step_modules("stage1") and PKG + "cli.py" in steps.step_modules("stage1")
    assert "workflow_scripts/curate_shard.py" in steps.step_modules("curate_shard")
    assert not any(f.startswith("docs/") for s in steps.STEPS for f in steps.step_modules(s))


def test_each_step_runs_the_stages_module_of_its_rules_file_and_no_other():
    """refine_iqa/stages/ mirrors rules/*.smk: a rule's step reads its own module (and the shared helpers)."""
    stage_modules = {p.stem for p in (REPO / PKG / "stages").glob("*.py")} - {"__init__", "common"}
    assert stage_modules <= {f.stem for f in (REPO / "rules").glob("*.smk")}
    for f in sorted((REPO / "rules").glob("*.smk")):
        for rule in re.findall(r"^\s*rule (\w+):", f.read_text(), re.M):
            if rule in steps.STEPS:
                used = {m for m in steps.step_modules(rule) if m.startswith(PKG + "stages/")}
                assert used <= {f"{PKG}stages/{f.stem}.py", PKG + "stages/common.py"}, (rule, used)
    for rule, module in [("scenes", "data"), ("build_model", "model"), ("warm_start", "model"), ("stage1", "stage1"),
                         ("stage2", "stage2"), ("eval_scoring", "evaluate"), ("qbench_set", "evaluate")]:
        assert f"{PKG}stages/{module}.py" in steps.step_modules(rule), rule
    # the report's blind baselines read the scoring evaluation sets: their loader and settings are its own
    assert PKG + "data/iqa_datasets.py" in steps.step_modules("metrics")
    assert "data.scoring.eval_datasets" in steps.step_config("metrics")


DATA_RULES = ("scenes", "curate_shard", "curate_merge", "synthesize_shard", "synthesize_merge", "scoring_set")


def test_a_model_or_training_helper_edit_does_not_reach_the_data_steps():
    """DVC and Snakemake hash whole files: had the data steps read their device helper from stages/common.py,
    an edit of the model loader or the training args there would re-run curation and synthesis (hours of COCO
    at the paper's scale; seen in session 10). The device helpers live in refine_iqa/compute.py instead."""
    for rule in DATA_RULES:
        modules = steps.step_modules(rule)
        assert PKG + "stages/common.py" not in modules, rule
        assert PKG + "rl/grpo.py" not in modules, rule
    assert PKG + "compute.py" in steps.step_modules("curate_shard")  # job_device: curation may run on a GPU
    for rule in ("warm_start", "stage1", "stage2", "eval_scoring"):
        assert PKG + "stages/common.py" in steps.step_modules(rule), rule


def test_a_step_function_imported_by_name_is_followed_and_the_lazy_package_refused(tmp_path, monkeypatch):
    by_module = tmp_path / "by_module.py"
    by_module.write_text("from refine_iqa.stages.stage2 import train_stage2\ntrain_stage2(snakemake.config)\n")
    lazy = tmp_path / "lazy.py"
    lazy.write_text("from refine_iqa import stages\nstages.train_stage2(snakemake.config)\n")
    monkeypatch.setitem(steps.STEPS, "probe_by_module", steps.Step(script=str(by_module)))
    monkeypatch.setitem(steps.STEPS, "probe_lazy", steps.Step(script=str(lazy)))
    files, keys = steps._analyse("probe_by_module")
    # through train_stage2 into rl/pd.py, and through common.setup_compute (imported by name) into compute.*
    assert REPO / PKG / "rl/pd.py" in files and "compute.threads" in keys and "stage2" in keys
    with pytest.raises(ValueError, match="refine_iqa.stages, whose names resolve lazily"):
        steps._analyse("probe_lazy")


def test_stages_package_resolves_names_lazily():
    """`refine_iqa.stages.<name>` works for outside callers and imports only the module that defines it."""
    code = """
import ast, importlib, sys
import refine_iqa.stages as s
assert not [m for m in sys.modules if m.startswith("refine_iqa.stages.")]
s.train_stage1
assert sorted(m for m in sys.modules if m.startswith("refine_iqa.stages.")) == [
    "refine_iqa.stages.common", "refine_iqa.stages.stage1"], sorted(sys.modules)
for module, names in s._WHERE.items():
    m = importlib.import_module("refine_iqa.stages." + module)
    tree = ast.parse(open(m.__file__).read())
    top = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    top |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets}
    assert set(names) == top, (module, set(names) ^ top)  # every name of the old stages.py is still reachable
    assert all(getattr(s, n) is getattr(m, n) for n in names)
try:
    s.no_such_step
except AttributeError:
    pass
else:
    raise AssertionError("no AttributeError")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_settings_of_each_step_are_the_keys_its_code_reads():
    s1 = steps.step_config("stage1")
    for key in ("seed", "stage1", "prompts.tags", "compute.device", "model.dtype"):
        assert any(key == k or key.startswith(k + ".") for k in s1), (key, s1)
    assert "stage2" not in s1 and not any(k.startswith(("paths", "tracking")) for k in s1)
    for ev in ("eval_perception", "eval_scoring", "eval_qbench"):
        assert "prompts.tags" in steps.step_config(ev)
    assert "data.perception.curate.dedup_max_distance" in steps.step_config("curate_shard")
    assert "data.perception.synthesize.sample_by" in steps.step_config("synthesize_shard")
    assert steps.config_values({"seed": 3, "stage1": {"a": 1}}, "stage1")["seed"] == 3


def test_code_version_is_a_digest_of_the_step_files(monkeypatch):
    v2, v1 = steps.code_version("stage2"), steps.code_version("stage1")
    assert v2 == steps.code_version("stage2") and len(v2) == 16 and v1 != v2
    pd = (REPO / PKG / "rl/pd.py").resolve()
    real = steps._file_digest
    monkeypatch.setattr(steps, "_file_digest", lambda p: "edited" if p == pd else real(p))
    assert steps.code_version("stage2") != v2 and steps.code_version("stage1") == v1


def test_a_tracked_setting_missing_from_params_yaml_is_named(tmp_path):
    """DVC stops `dvc repro` on a params key dvc.yaml tracks but params.yaml lacks (the schema's default does
    not count): gen_dvc.py (which `make run` calls first) names it instead. Seen: a new synthesis setting."""
    text = (REPO / "params.yaml").read_text()
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("families: null"))  # synthesize.families
    params = tmp_path / "params.yaml"
    params.write_text(text.replace(line + "\n", ""))
    proc = subprocess.run([sys.executable, str(REPO / "workflow_scripts/gen_dvc.py"), "--check", "--params",
                           str(params)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1
    assert "lacks data.perception.synthesize.families, which dvc.yaml tracks" in proc.stderr


def test_committed_dvc_yaml_is_the_generated_one():
    proc = subprocess.run([sys.executable, str(REPO / "workflow_scripts/gen_dvc.py"), "--check"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
