"""Load, merge, validate and check `params.yaml` before any job starts.

`params.yaml` is the one source of truth. `overlay:` names a YAML file deep-merged over it (the paper's
configuration is `configs/paper.yaml`). Validation uses the JSON schema in `schema/params.schema.yaml`,
which also fills every default, so downstream code can index settings without `.get` fallbacks.
Errors are single lines that name the file and the dotted setting, and say what to do.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A setting is malformed or points at something missing."""


def _schema() -> dict:
    text = resources.files("refine_iqa").joinpath("schema/params.schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: {where}invalid YAML ({problem}); fix the syntax there") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, got {type(data).__name__}")
    return data


def _fill_defaults(schema: dict, instance: Any, root: dict) -> Any:
    """Recursively insert schema defaults (JSON Schema validators do not do this themselves)."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        merged = {**root["$defs"][ref], **{k: v for k, v in schema.items() if k != "$ref"}}
        schema = merged
    if isinstance(instance, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key not in instance:
                if "default" in sub:
                    instance[key] = copy.deepcopy(sub["default"])
                elif "$ref" in sub and "default" in root["$defs"][sub["$ref"].split("/")[-1]]:
                    instance[key] = copy.deepcopy(root["$defs"][sub["$ref"].split("/")[-1]]["default"])
            if key in instance:
                instance[key] = _fill_defaults(sub, instance[key], root)
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        instance = [_fill_defaults(schema["items"], x, root) for x in instance]
    return instance


def validate(params: dict, source: str = "params.yaml") -> dict:
    """Fill defaults and validate; returns a new dict. Raises ConfigError naming the first bad setting."""
    import jsonschema

    schema = _schema()
    filled = _fill_defaults(schema, copy.deepcopy(params), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        msg = e.message
        if e.validator == "additionalProperties":
            msg += " (a typo? every allowed key is listed in src/refine_iqa/schema/params.schema.yaml)"
        elif e.validator == "contains" and "const" in e.validator_value:  # the default message names no value
            msg = f"{e.instance} must include {e.validator_value['const']!r} ({e.schema.get('description', '')})"
        raise ConfigError(f"{source}: {where}: {msg}")
    _check_semantics(filled, source)
    return filled


# GRPOConfig fields the project sets itself from other settings (what to set instead). The project's own keys
# of a `stage*.grpo` block are the schema's (`_schema_grpo_keys`).
_GRPO_MANAGED = {
    "output_dir": "the output folder follows the workflow's paths", "seed": "set the top-level seed",
    "data_seed": "set the top-level seed", "use_cpu": "set compute.device", "warmup_steps": "set warmup_epochs",
    "save_strategy": "set checkpoint_steps", "save_steps": "set checkpoint_steps",
    "save_total_limit": "set checkpoint_steps", "save_only_model": "set checkpoint_steps",
    "reward_weights": "set stage2.lambdas", "remove_unused_columns": "the reward functions need every column",
    "warmup_ratio": "the paper's warm-up is in epochs: set warmup_epochs (e.g. 0.03)",
}


def _schema_grpo_keys() -> set[str]:
    return set(_schema()["$defs"]["grpo"]["properties"])


def grpo_passthrough(settings: dict) -> dict:
    """The keys of a `stage*.grpo` block that are passed to GRPOConfig by name (not documented in the schema)."""
    known = _schema_grpo_keys()
    return {k: v for k, v in settings.items() if k not in known}


def check_grpo_settings(settings: dict, where: str) -> None:
    """Every key of a `stage*.grpo` block is a schema key or a field of the installed TRL's GRPOConfig;
    an unknown one is rejected with the closest name. TRL is imported only when such keys are present."""
    import difflib

    extra = grpo_passthrough(settings)
    if not extra:
        return
    import dataclasses

    from trl import GRPOConfig

    fields = {f.name for f in dataclasses.fields(GRPOConfig) if f.init}
    allowed = (fields - set(_GRPO_MANAGED)) | _schema_grpo_keys()
    for key in sorted(extra):
        if key in _GRPO_MANAGED:
            raise ConfigError(f"{where}.{key}: set by the project, not here ({_GRPO_MANAGED[key]})")
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}.{key}: not a setting of the schema nor a field of TRL's GRPOConfig; {hint}"
                              "see trl.GRPOConfig for the field names")


def _check_semantics(p: dict, source: str) -> None:
    for stage in ("stage1", "stage2"):
        g = p[stage]["grpo"]
        check_grpo_settings(g, f"{source}: {stage}.grpo")
        if g["per_device_train_batch_size"] % g["num_generations"]:
            raise ConfigError(
                f"{source}: {stage}.grpo.per_device_train_batch_size ({g['per_device_train_batch_size']}) must be a "
                f"multiple of {stage}.grpo.num_generations ({g['num_generations']})"
            )
    mix = p["stage1"]["task_mix"]
    if mix["description"] + mix["grounding"] <= 0:
        raise ConfigError(f"{source}: stage1.task_mix: at least one task needs a positive share")
    if p["data"]["perception"]["objects"]["min_objects"] > p["data"]["perception"]["objects"]["max_objects"]:
        raise ConfigError(f"{source}: data.perception.objects.min_objects exceeds max_objects")


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None) -> dict:
    """Read params.yaml, apply its overlay file, then `overrides`, validate, fill defaults.

    Precedence, lowest first: schema defaults < params.yaml < the overlay file < overrides (Snakemake's
    --configfile / --config). An `overlay` key in the overrides replaces the one in params.yaml. Site paths
    (model folder, dataset roots) live in params.yaml: the shipped overlays set none of them.
    """
    path = Path(path)
    raw = read_yaml(path)
    overrides = dict(overrides or {})
    if "overlay" in overrides:
        raw["overlay"] = overrides.pop("overlay")
    return resolve(raw, source=str(path), base_dir=path.parent, overrides=overrides)


def resolve(raw: dict, source: str = "params.yaml", base_dir: str | Path = ".", overrides: dict | None = None) -> dict:
    """Apply `overlay:` (relative to base_dir), then `overrides`, then validate."""
    overlay = raw.get("overlay")
    if overlay:
        opath = Path(overlay)
        if not opath.is_absolute():
            opath = Path(base_dir) / opath
        if not opath.exists():
            raise ConfigError(f"{source}: overlay: file {overlay!r} not found; set overlay to null or to an existing YAML file")
        over = read_yaml(opath)
        over.pop("overlay", None)
        raw = deep_merge(raw, over)
        source = f"{source} + {overlay}"
    if overrides:
        raw = deep_merge(raw, overrides)
    return validate(raw, source)


def required_paths(p: dict) -> list[tuple[str, str, str]]:
    """(setting, path, kind) the configured run reads and must find on disk before it starts."""
    need: list[tuple[str, str, str]] = []
    if p["model"]["source"] == "local":
        need.append(("model.path", p["model"]["path"], "model folder with config.json"))
    per = p["data"]["perception"]
    src = per["source"]
    if src == "folder":
        need.append(("data.perception.folder", per["folder"], "image folder"))
    elif src == "coco":
        need.append(("data.perception.coco.annotations", per["coco"]["annotations"], "COCO instances JSON"))
        need.append(("data.perception.coco.images", per["coco"]["images"], "COCO image folder"))
    elif src == "video":
        need.append(("data.perception.video.path", per["video"]["path"], "video file or folder"))
    if per["objects"]["backend"] == "vlm":
        need.append(("data.perception.objects.vlm", per["objects"]["vlm"], "local VLM folder"))
        need.append(("data.perception.objects.detector", per["objects"]["detector"], "local detector folder"))
    for q in per["curate"]["quality"]:
        if q.get("weights"):
            need.append((f"data.perception.curate.quality[{q['metric']}].weights", q["weights"], "metric weight file"))
    if per["review"]["mode"] == "manual":
        need.append(("data.perception.review.decisions", per["review"]["decisions"], "review decisions file"))
    sc = p["data"]["scoring"]
    if sc["source"] == "datasets":
        for name in sorted(set(sc["train_datasets"]) | set(sc["eval_datasets"])):
            need.append((f"data.scoring.roots.{name}", sc["roots"].get(name), f"{name} dataset folder"))
    return need


def check_paths(p: dict, source: str = "params.yaml") -> None:
    """Stop before any work if an input the configuration names is missing (one line, names the setting)."""
    for setting, path, kind in required_paths(p):
        if not path:
            raise ConfigError(f"{source}: {setting} is not set; set it to your {kind}")
        if not Path(path).exists():
            raise ConfigError(f"{source}: {setting}: {kind} '{path}' not found; set {setting} to an existing path")
        if setting == "model.path" and not (Path(path) / "config.json").exists():
            raise ConfigError(f"{source}: {setting}: '{path}' has no config.json; point it at a Hugging Face model folder")
