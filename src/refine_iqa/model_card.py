"""Model cards (README.md, the Hugging Face layout) for every model the workflow writes.

Two cards per model, because a model folder is a tracked training output (Snakemake/DVC): nothing may
rewrite it after the training step, or its DVC hash would change.
- The TRAINING card, `<model folder>/README.md`, written by the step that saves the model: base model, data
  and their content hashes, the params that trained it, intended use, limits, how to load and score.
- The EVALUATION card, `reports/model_cards/<name>.md`, written by the report step: the training card plus the
  model's numbers from results/metrics.json. The training card links to it.

The card is deterministic (no timestamps), so a re-run with identical outputs keeps identical hashes.
"""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path

from refine_iqa.io_utils import atomic_write_text

CARD_NAME = "README.md"
# What each training step reads from params (besides seed and the prompt tags).
STAGE_PARAMS = {
    "build": ("model",),
    "warmstart": ("warmstart", "model"),
    "stage1": ("stage1", "model"),
    "stage2": ("stage2", "model"),
}
STAGE_TEXT = {
    "build": "the embedded base model: a tiny Qwen2.5-VL with RANDOMLY INITIALISED weights, built locally",
    "warmstart": "the format warm start (embedded configuration only): supervised training on RANDOM answers "
                 "so the tiny model writes the four output formats",
    "stage1": "Refine-IQA Stage 1: multi-task perception GRPO (distortion description and grounding, no-think)",
    "stage2": "Refine-IQA Stage 2: quality-scoring GRPO (which of the probability-difference reward and the "
              "modified advantage were on, and the mode, are under Training parameters: variant_settings)",
}
EMBEDDED_LIMITS = (
    "**This is a pipeline demonstration, not a quality model.** It is a tiny Qwen2.5-VL (its sizes are under Training parameters) whose "
    "weights started from RANDOM initialisation (no pretrained weights are used), trained for minutes on "
    "generated scenes and a SYNTHETIC scoring set (a MOS made from known distortions, not from people). Its scores say nothing "
    "about perceived image quality; use it to test that the workflow, loading and scoring code run."
)
PAPER_LIMITS = (
    "Trained and evaluated as described in the Refine-IQA paper, at the scale this run's params give. Scores are "
    "in [0, 5) on the scale of the training MOS (KonIQ-10k/SPAQ style, in-the-wild photos); expect weaker "
    "agreement on image types the training data lacked (AI-generated images, synthetic distortions, documents, "
    "medical images). Not a substitute for a subjective study."
)


def file_digest(path) -> dict:
    """md5 (what DVC 3 records for a file output in dvc.lock), sha256 and size of a file."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest(), "bytes": Path(path).stat().st_size}


def split_card(text: str) -> tuple[dict, str]:
    """(front matter, body) of a card; ({}, text) when it has no YAML front matter."""
    import yaml

    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---\n", 4)
    if end < 0:
        return {}, text
    meta = yaml.safe_load(text[4:end]) or {}
    return (meta if isinstance(meta, dict) else {}), text[end + 5:]


def read_card(model_dir) -> tuple[dict, str] | None:
    path = Path(model_dir) / CARD_NAME
    return split_card(path.read_text(encoding="utf-8")) if path.is_file() else None


def _join(meta: dict, body: list[str]) -> str:
    import yaml

    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=100) + "---\n\n" + "\n".join(body) + "\n"


def _how_to_use(model_ref: str) -> list[str]:
    return [
        "## How to load and score", "",
        "```python",
        "from refine_iqa import Scorer                      # pip install -e <the Refine-IQA repository>",
        f'scorer = Scorer("{model_ref}")                    # think=True, mode="numeric" are options',
        'print(scorer.score(["photo.jpg"]))                 # [{"path": "photo.jpg", "score": 3.41}], score in [0, 5)',
        "```", "",
        "From pyiqa (see docs/pyiqa.md in the repository):", "",
        "```python",
        "import pyiqa, refine_iqa.pyiqa_metric              # the import registers the metric 'refine_iqa'",
        f'metric = pyiqa.create_metric("refine_iqa", pretrained_model_path="{model_ref}")',
        "scores = metric(images)                            # (N, 3, H, W) in [0, 1] or paths -> (N,) tensor",
        "```", "",
        "Plain transformers (a standard Qwen2.5-VL folder):", "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        f'model = AutoModelForImageTextToText.from_pretrained("{model_ref}")',
        f'processor = AutoProcessor.from_pretrained("{model_ref}")',
        "```", "",
        "Command line: `refine-iqa score photo.jpg --model " + model_ref + "`.", "",
    ]


def training_card(params: dict, model_dir, *, stage: str, name: str | None = None, base_model=None,
                  data: dict | None = None, extra: dict | None = None) -> str:
    """The text of the card the training step writes into `model_dir` (see the module docstring)."""
    if stage not in STAGE_PARAMS:
        raise ValueError(f"model card: unknown stage {stage!r}; use one of {sorted(STAGE_PARAMS)}")
    model_dir = Path(model_dir)
    name = name or model_dir.name
    embedded = params["model"]["source"] == "embedded"
    base_card = read_card(base_model) if base_model is not None and Path(base_model).is_dir() else None
    base_meta = base_card[0] if base_card else {}
    data_rows = []
    for key, path in (data or {}).items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"model card: training data file '{path}' ({key}) not found")
        data_rows.append({"name": key, "path": str(path), **file_digest(path)})
    used = {"seed": params["seed"], "prompts": params.get("prompts")}
    for key in STAGE_PARAMS[stage]:
        used[key] = copy.deepcopy(params.get(key))
    if extra:
        used.update(copy.deepcopy(extra))
    lineage = [str(base_model)] + list(base_meta.get("refine_iqa", {}).get("lineage", [])) if base_model else []
    meta: dict = {
        "license": base_meta.get("license", "apache-2.0"),
        "library_name": "transformers",
        "pipeline_tag": "image-text-to-text",
        "tags": ["refine-iqa", "image-quality-assessment", "qwen2.5-vl", "no-reference-iqa"]
                + (["grpo"] if stage in ("stage1", "stage2") else [])
                + (["pipeline-demonstration", "random-init"] if embedded else []),
    }
    if base_model is not None:
        meta["base_model"] = str(base_model)
        meta["base_model_relation"] = "finetune"
    meta["refine_iqa"] = {
        "name": name, "stage": stage, "configuration": "embedded" if embedded else "paper",
        "lineage": lineage, "data": data_rows, "score_range": [0.0, 5.0], "lower_better": False,
    }
    reports = Path(params.get("paths", {}).get("reports", "reports"))
    eval_card = reports / "model_cards" / f"{name}.md"
    body = [f"# Refine-IQA model `{name}`", "", f"This folder is {STAGE_TEXT[stage]}.", ""]
    body += ["## Limits", "", EMBEDDED_LIMITS if embedded else PAPER_LIMITS, ""]
    body += ["## Intended use", "",
             "No-reference image quality scoring: give an image, get a score in [0, 5) (higher is better; the "
             "probability-based score of the paper's Eq. 8, or the number the model writes), optionally with the "
             "model's written quality interpretation (think mode)."
             + (" For this embedded model: testing the Refine-IQA pipeline end to end." if embedded else ""), ""]
    body += ["## Base model", ""]
    if base_model is None:
        body += ["None: random initialisation (seed and sizes under Training parameters).", ""]
    else:
        body += [f"`{base_model}`" + (f" (lineage: {' <- '.join(f'`{x}`' for x in lineage[1:])})" if len(lineage) > 1 else ""), ""]
    body += ["## Training data and its version", ""]
    if data_rows:
        body += ["md5 is the content hash DVC 3 records for the file in `dvc.lock`; sha256 is given as well.", "",
                 "| data | path | md5 (DVC) | sha256 | bytes |", "|---|---|---|---|---|"]
        body += [f"| {r['name']} | `{r['path']}` | `{r['md5']}` | `{r['sha256'][:16]}...` | {r['bytes']} |" for r in data_rows]
        body.append("")
    else:
        body += ["None: this model was not trained on data.", ""]
    body += ["## Training parameters", "", "```yaml", _yaml(used).rstrip(), "```", ""]
    body += ["## Evaluation", "",
             f"Measured after training by the workflow's evaluation steps; the report step writes them into "
             f"`{eval_card.as_posix()}` (kept outside this folder so the folder stays exactly what training wrote).", ""]
    body += _how_to_use(model_dir.as_posix())
    return _join(meta, body)


def _yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=100)


def write_training_card(params: dict, model_dir, **kw) -> Path:
    """Write `<model_dir>/README.md` (atomically). Call it right after the model is saved."""
    path = Path(model_dir) / CARD_NAME
    atomic_write_text(path, training_card(params, model_dir, **kw))
    return path


# --- the evaluation card (report step) ---------------------------------------------------------------------

def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def model_results(metrics: dict, name: str) -> list[dict]:
    """One row per number results/metrics.json holds for model `name`: task, dataset, metric, value."""
    rows = []
    for ds, r in metrics.get("scoring", {}).get(name, {}).get("datasets", {}).items():
        for mode in ("no_think", "think"):
            for kind in ("prob", "numeric"):
                for metric in ("srcc", "plcc"):
                    v = _num(r.get(mode, {}).get(kind, {}).get(metric))
                    if v is not None:
                        rows.append({"task": "quality scoring", "dataset": ds, "metric": f"{metric.upper()} ({kind}, {mode})", "value": v})
    per = metrics.get("perception", {}).get(name)
    if per:
        for task, label in (("description", "description accuracy"), ("grounding", "grounding IoU")):
            v = _num(per.get(task, {}).get("all", {}).get("overall"))
            if v is not None:
                rows.append({"task": "distortion perception", "dataset": "Refine-Perception test", "metric": label, "value": v})
    q = metrics.get("qbench", {}).get(name)
    if q:
        for mode in ("no_think", "think"):
            v = _num(q.get(mode, {}).get("accuracy", {}).get("overall"))
            if v is not None:
                ds = "LLVisionQA " + q.get("split", "") + (" (synthetic)" if q.get("synthetic") else "")
                rows.append({"task": "Q-Bench", "dataset": ds.strip(), "metric": f"accuracy ({mode})", "value": v})
    return rows


def evaluation_card(metrics: dict, name: str, model_dir=None) -> str:
    """The training card of `model_dir` (when present) with the model's numbers from metrics.json added,
    as front matter `model-index` (the Hugging Face results format) and as a table."""
    card = read_card(model_dir) if model_dir is not None and Path(model_dir).is_dir() else None
    meta, body = (copy.deepcopy(card[0]), card[1]) if card else ({"library_name": "transformers"}, "")
    rows = model_results(metrics, name)
    meta["model-index"] = [{"name": name, "results": [
        {"task": {"type": "image-quality-assessment", "name": r["task"]}, "dataset": {"name": r["dataset"], "type": r["dataset"]},
         "metrics": [{"type": r["metric"], "value": r["value"]}]} for r in rows]}]
    synthetic = metrics.get("synthetic_scoring_data")
    head = [f"# Evaluation of Refine-IQA model `{name}`", "",
            f"Numbers from results/metrics.json ({metrics.get('configuration', '?')} configuration"
            + (", SYNTHETIC scoring data (MOS made from known distortions)" if synthetic else "") + ").", ""]
    if rows:
        head += ["| task | dataset | metric | value |", "|---|---|---|---|"]
        head += [f"| {r['task']} | {r['dataset']} | {r['metric']} | {r['value']:.4f} |" for r in rows]
    else:
        head.append("results/metrics.json holds no numbers for this model.")
    head.append("")
    if card:
        head += ["## The model's training card (`" + (Path(model_dir) / CARD_NAME).as_posix() + "`)", ""]
        body = body.replace("# Refine-IQA model", "### Refine-IQA model", 1).replace("\n## ", "\n### ")
    else:
        head += [f"No training card found in `{model_dir}`." if model_dir is not None else "No model folder given.", ""]
    return _join(meta, head + [body.strip()] if body else head)


def write_evaluation_cards(metrics: dict, model_dirs: dict, out_dir) -> list[Path]:
    """`out_dir/<name>.md` for each name -> model folder (the report step calls this)."""
    out = []
    for name, model_dir in model_dirs.items():
        path = Path(out_dir) / f"{name}.md"
        atomic_write_text(path, evaluation_card(metrics, name, model_dir))
        out.append(path)
    return out


def workflow_model_dirs(params: dict, names: list[str]) -> dict:
    """The folder the workflow evaluated under each report name ("base" is the warm-started or the given model)."""
    models = Path(params["paths"]["models"])
    if params["warmstart"]["enabled"]:
        base = models / "base"
    elif params["model"]["source"] == "embedded":
        base = models / "tiny-qwen2.5-vl"
    else:
        base = params["model"]["path"]
    return {n: (base if n == "base" else models / n) for n in names}
