"""Run one GRPO training (either stage) through TRL with the project's trainer subclass.

Checkpoints: with `checkpoint_dir` given, TRL/transformers' own checkpoints (weights, optimizer, scheduler, RNG
state, trainer state) are written there every `checkpoint_steps` steps. A re-run of a killed job finds the
latest complete one and resumes from it (same global step, same data order); the caller removes the folder
once the final model is saved (`discard_checkpoints`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback

from refine_iqa.io_utils import atomic_write_json, write_jsonl
from refine_iqa.rl.fastpath import fast_vlm
from refine_iqa.rl.trainer import MetricsSink, RefineGRPOTrainer

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_STEPS = 50
CHECKPOINT_SUFFIX = ".checkpoints"
RUN_KEY_FILE = "run_key.json"  # what the checkpoints were trained from; another run never resumes them
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


# The project's own keys of a `stage*.grpo` block; every other key there is a TRL GRPOConfig field.
_FROM_SCHEMA = ("learning_rate", "lr_scheduler_type", "weight_decay", "num_train_epochs", "max_steps",
                "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
                "max_completion_length", "temperature", "epsilon", "beta", "bf16", "gradient_checkpointing",
                "logging_steps")
# Project choices a `stage*.grpo` block may override by naming the GRPOConfig field.
_DEFAULTS = dict(loss_type="dapo", scale_rewards="group", report_to="none", dataloader_num_workers=0,
                 log_completions=False, disable_tqdm=False)


# --- the training dataset: paths in Arrow, pixels decoded per batch ----------------------------------------

class LazyImages:
    """`datasets` transform that adds the decoded, processor-sized `images` of each row from its
    `image_paths`. TRL reads the whole generation batch through one `__getitems__` call, so this runs once per
    batch (the G repeats of a prompt decode their file once, through the cache). A file that cannot be decoded
    is reported once and its row replaced by the next readable row (same prompt/answer columns, so rewards and
    PD groups stay consistent); training never stops on one corrupt file."""

    def __init__(self, raw, processor, cache=None, report: Callable[[str], None] | None = None):
        from refine_iqa.images import ImageCache

        self.raw = raw  # the untransformed Dataset (rows as the trainer would see them, minus images)
        self.processor = processor
        self.cache = cache if cache is not None else ImageCache(capacity=16)
        self.report = report or (lambda msg: print(msg, flush=True))
        self.bad: dict[int, str] = {}  # row index -> reason (reported once)

    def _images(self, index: int):
        from refine_iqa.images import sample_images
        from refine_iqa.io_utils import ImageReadError

        try:
            return sample_images({"image_paths": self.raw[index]["image_paths"]}, self.processor, self.cache)
        except ImageReadError as e:
            if index not in self.bad:
                self.bad[index] = f"{e.path}: {e.reason}" + (f" ({e.detail})" if e.detail else "")
                self.report(f"[grpo] skipped unreadable training image {self.bad[index]}")
            return None

    def __call__(self, batch: dict) -> dict:
        n = len(self.raw)
        rows = [{k: batch[k][j] for k in batch} for j in range(len(batch["sample_index"]))]
        out = []
        for row in rows:
            index = int(row["sample_index"])
            for step in range(n):
                k = (index + step) % n
                if k in self.bad:
                    continue
                images = self._images(k)
                if images is not None:
                    break
            else:
                raise RuntimeError("no training image can be read: every file of the dataset failed to decode")
            out.append({**(row if k == index else self.raw[k]), "images": images})
        return {key: [r[key] for r in out] for key in out[0]} if out else {**batch, "images": []}


def lazy_dataset(samples: list[dict], processor, *, cache=None, report=None):
    """A `datasets.Dataset` of `samples` (paths, no pixels) whose rows get their `images` when read."""
    from datasets import Dataset

    rows = []
    for i, s in enumerate(samples):
        if s.get("images"):
            raise ValueError("training samples must hold image_paths, not decoded images (rl/samples.py builds them)")
        rows.append({**{k: v for k, v in s.items() if k != "images"}, "sample_index": i})
    raw = Dataset.from_list(rows)
    return raw.with_transform(LazyImages(raw, processor, cache=cache, report=report))


def _strata(samples: list[dict]) -> list:
    missing = [i for i, s in enumerate(samples) if "stratum" not in s]
    if missing:
        raise ValueError(f"balanced_batches needs a 'stratum' in every training sample (rl/samples.py sets it); "
                         f"sample {missing[0]} has none")
    return [s["stratum"] for s in samples]


def _answer_kl(settings: dict, fields: tuple[str, ...], tags):
    coef = float(settings.get("answer_kl_coef", 0.0))
    if coef == 0:
        return None
    if not fields:
        raise ValueError("answer_kl_coef is set but the caller named no answer field for it to act on")
    from refine_iqa.rl.answer_field import answer_field_spans

    return coef, answer_field_spans(tuple(fields), tags)


def grpo_config(settings: dict, *, out_dir: str | Path, seed: int, device: str = "cpu", checkpoint_steps: int = 0):
    """TRL GRPOConfig from a `stage*.grpo` settings block (token-level dapo loss, no KL by default).
    checkpoint_steps > 0 saves a full checkpoint (optimizer included) into out_dir every that many steps.
    Any other GRPOConfig field named in the block is passed through as given (config.check_grpo_settings)."""
    from trl import GRPOConfig

    from refine_iqa.config import check_grpo_settings, grpo_passthrough

    check_grpo_settings(settings, "grpo")
    saving = dict(save_strategy="steps", save_steps=checkpoint_steps, save_total_limit=1, save_only_model=False) \
        if checkpoint_steps > 0 else dict(save_strategy="no")
    return GRPOConfig(
        output_dir=str(out_dir),
        **{k: settings[k] for k in _FROM_SCHEMA if k in settings},
        warmup_steps=0,  # warmup_epochs is turned into a step count once the dataset is known (run_grpo)
        use_cpu=(device == "cpu"),
        seed=seed,
        data_seed=seed,
        **saving,
        remove_unused_columns=False,
        **{**_DEFAULTS, **grpo_passthrough(settings)},
    )


def warmup_steps_from_epochs(trainer, warmup_epochs: float) -> int:
    """The paper's warm-up is given in EPOCHS (0.03): steps = ceil(warmup_epochs x optimizer steps per epoch),
    with the steps per epoch as transformers itself counts them for this dataset, batch and process count."""
    if warmup_epochs <= 0:
        return 0
    per_epoch = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())[1]
    return max(1, math.ceil(warmup_epochs * per_epoch - 1e-9))


def checkpoint_every(settings: dict, checkpoint_dir) -> int:
    return int(settings.get("checkpoint_steps", DEFAULT_CHECKPOINT_STEPS)) if checkpoint_dir is not None else 0


def training_args(settings: dict, *, seed: int, device: str = "cpu", checkpoint_dir: str | Path | None = None):
    """The GRPOConfig `run_grpo` will use, made BEFORE the model is loaded: under `accelerate launch` with
    DeepSpeed ZeRO-3 (or a `deepspeed` field) creating it sets up transformers' DeepSpeed config, and only then
    does `from_pretrained` partition the weights at load. Keep the returned object alive until training."""
    return grpo_config(settings, out_dir=checkpoint_dir or "grpo-output", seed=seed, device=device,
                       checkpoint_steps=checkpoint_every(settings, checkpoint_dir))


# --- checkpoints --------------------------------------------------------------------------------------

def checkpoint_dir_for(out_dir: str | Path) -> Path:
    """`<out_dir>.checkpoints`: next to the output, not inside it (Snakemake deletes a failed job's outputs)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + CHECKPOINT_SUFFIX)


def checkpoint_step(path: str | Path) -> int | None:
    m = _CHECKPOINT_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def is_complete_checkpoint(path: str | Path) -> bool:
    """transformers writes trainer_state.json last (after weights, optimizer, scheduler and RNG state): a
    checkpoint with a readable trainer_state.json at its own step is whole; a job killed while saving leaves none."""
    path = Path(path)
    step = checkpoint_step(path)
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return step is not None and state.get("global_step") == step


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in `checkpoint_dir`, or None."""
    d = Path(checkpoint_dir)
    if not d.is_dir():
        return None
    found = [p for p in d.iterdir() if p.is_dir() and checkpoint_step(p) is not None and is_complete_checkpoint(p)]
    return max(found, key=checkpoint_step) if found else None


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def discard_checkpoints(checkpoint_dir: str | Path) -> None:
    """Remove the checkpoint folder (after the final model is saved); only the main process deletes."""
    if _is_main_process():
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


def folder_signature(path: str | Path) -> list:
    """Names, sizes and modification times of a model folder's files: changes when the folder is rewritten
    (a re-trained Stage-1), without reading gigabytes of weights."""
    path = Path(path)
    if not path.is_dir():
        return [str(path)]
    return sorted([str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns]
                  for p in path.rglob("*") if p.is_file())


def run_key(settings: dict, samples: list[dict], *, seed: int, extra: dict | None = None) -> str:
    """A digest of everything that decides the training: settings, seed, the samples' prompts and answers
    (images by size: hashing pixels of a large dataset costs too much) and whatever the caller adds."""
    h = hashlib.sha256()
    h.update(json.dumps({"settings": settings, "seed": seed, "extra": extra or {}}, sort_keys=True, default=str).encode())
    for s in samples:
        row = {k: v for k, v in s.items() if k not in ("images", "image")}
        imgs = s.get("images") or ([s["image"]] if s.get("image") is not None else [])
        row["image_sizes"] = [list(getattr(im, "size", ())) for im in imgs]
        h.update(json.dumps(row, sort_keys=True, default=str).encode())
    return h.hexdigest()


def prepare_checkpoints(checkpoint_dir: str | Path, key: str) -> Path | None:
    """Make `checkpoint_dir` ready for this run; returns the checkpoint to resume from (or None). Checkpoints
    of another run (different settings, data or start model) and incomplete ones are removed first."""
    d = Path(checkpoint_dir)
    key_file = d / RUN_KEY_FILE
    if d.exists():
        try:
            old = json.loads(key_file.read_text()).get("key")
        except (OSError, ValueError):
            old = None
        if old != key:
            print(f"[grpo] {d}: checkpoints of a different run (settings, data or start model changed); "
                  "starting over", flush=True)
            if _is_main_process():
                shutil.rmtree(d, ignore_errors=True)
    if _is_main_process():
        d.mkdir(parents=True, exist_ok=True)
        if not key_file.exists():
            atomic_write_json(key_file, {"key": key})
        for p in d.iterdir():
            if p.is_dir() and checkpoint_step(p) is not None and not is_complete_checkpoint(p):
                print(f"[grpo] removing incomplete checkpoint {p} (the job was killed while saving it)", flush=True)
                shutil.rmtree(p, ignore_errors=True)
    return latest_checkpoint(d)


class _NoFinalSave(TrainerCallback):
    """transformers also saves at the last step; the caller saves the final model right after, so a full
    checkpoint there (optimizer state of a 7B model) would only cost time and disk. A job killed between the
    last step and the final save resumes from the previous checkpoint."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False
        return control


def _restore_curve(curve_path: str | Path, checkpoint: Path) -> None:
    """The curve file restarts with each run: put back the steps logged before the checkpoint."""
    history = json.loads((checkpoint / "trainer_state.json").read_text()).get("log_history", [])
    rows = [{"step": e["step"], **{k: v for k, v in e.items() if k != "step" and isinstance(v, (int, float))}}
            for e in history if "step" in e]
    write_jsonl(curve_path, rows)


class _ResumableTrainer(RefineGRPOTrainer):
    """transformers 5 saves checkpoint weights under the model's ORIGINAL key names (save_pretrained's reverse
    key mapping: `visual.*`, `model.layers.*` for Qwen2.5-VL) but Trainer._load_from_checkpoint loads them
    raw with strict=False: no key matches, nothing is loaded and training silently resumes from the START
    weights. Load them through from_pretrained (which maps the names) and fail loudly if anything is missing.
    DeepSpeed and FSDP resume from their own state files (internal names) and keep transformers' path."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = self.model if model is None else model
        loaded = type(model).from_pretrained(str(resume_from_checkpoint), dtype=model.dtype)
        model.load_state_dict(loaded.state_dict(), strict=True)
        del loaded


@contextmanager
def _output_dir(checkpoint_dir: Path | None):
    if checkpoint_dir is not None:
        yield checkpoint_dir
    else:
        with tempfile.TemporaryDirectory(prefix="grpo-") as tmp:
            yield Path(tmp)


def run_grpo(model, processor, samples: list[dict], reward_funcs: list, settings: dict, *, seed: int,
             curve_path: str | Path, device: str = "cpu", reward_weights: list[float] | None = None,
             pm: dict | None = None, correct_from: tuple[str, str] | None = None, think_tags=None,
             on_log: Callable[[dict, int], None] | None = None, bind: list | None = None,
             checkpoint_dir: str | Path | None = None, resume_key_extra: dict | None = None, args=None,
             on_checkpoints: Callable[[Path, bool, int | None], None] | None = None, fast: bool | dict = True,
             on_trainer: Callable | None = None, answer_fields: tuple[str, ...] = (), tags="paper"):
    """Train `model` in place on `samples`; returns the trainer (its state holds the log history).

    With `checkpoint_dir`, checkpoints every `settings["checkpoint_steps"]` steps (default 50; 0 turns them
    off) and resumes from the latest complete one written by the same run (`resume_key_extra` adds what the
    caller knows decides the run, e.g. the start model's folder signature). `args`: the config from
    `training_args` when the caller made it before loading the model (ZeRO-3); built here otherwise.
    `on_checkpoints(folder, resumed, from_step)` is called once that is decided (the MLflow run follows the
    checkpoints: tracking.StageRun.attach_checkpoints). `fast` turns on the exact once-per-image preprocessing and vision
    tower, the shared-prompt prefill and loss forward and the compact LM head (rl/fastpath.py; a dict switches
    single levers: `fast_vlm`'s keywords); `on_trainer(trainer)` is called
    before training starts (benchmarks attach their timers there). `answer_fields` names the answer fields
    ('family', 'score', 'box'; parsed with `tags`) the `answer_kl_coef` setting acts on (rl/answer_field.py)."""
    every = checkpoint_every(settings, checkpoint_dir)
    dataset = lazy_dataset(samples, processor)  # paths; each batch decoded and shrunk when the trainer reads it
    with _output_dir(Path(checkpoint_dir) if every > 0 else None) as out:
        if args is None:
            args = grpo_config(settings, out_dir=out, seed=seed, device=device, checkpoint_steps=every)
        elif args.seed != seed:
            # The trainer seeds from args.seed, and the resume key from `seed`: two different seeds would train
            # one run while naming another (an ablation replicate trained as seed 0 did this).
            raise ValueError(f"run_grpo: seed={seed} but the training args carry seed {args.seed}; build them "
                             f"with training_args(..., seed={seed})")
        args.output_dir = str(out)
        if reward_weights is not None:
            args.reward_weights = list(reward_weights)
        resume_from = None
        if every > 0:
            key = run_key({**settings, "reward_weights": reward_weights, "pm": pm, "correct_from": correct_from,
                           "rewards": [getattr(f, "__name__", type(f).__name__) for f in reward_funcs]},
                          samples, seed=seed, extra=resume_key_extra)
            # The main process cleans up and decides first; the others then see the same folder (same decision).
            with args.main_process_first(local=False, desc="checkpoints"):
                resume_from = prepare_checkpoints(out, key)
            # issue 15: a resumed training continues its own MLflow run (main process only)
            if on_checkpoints is not None and _is_main_process():
                on_checkpoints(out, resume_from is not None,
                               checkpoint_step(resume_from) if resume_from is not None else None)
        callbacks = [MetricsSink(curve_path, on_log)] + ([_NoFinalSave()] if every > 0 else [])
        trainer = _ResumableTrainer(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=dataset,
            processing_class=processor,
            callbacks=callbacks,
            pm=pm,
            correct_from=correct_from,
            think_tags=think_tags,
            strata=_strata(samples) if settings.get("balanced_batches") else None,
            answer_kl=_answer_kl(settings, answer_fields, tags),
        )
        for r in bind or []:
            r.bind(trainer)
        warmup = warmup_steps_from_epochs(trainer, float(settings.get("warmup_epochs", 0.0)))
        trainer.args.warmup_steps = warmup
        if warmup:
            print(f"[grpo] warm-up {settings['warmup_epochs']} epochs = {warmup} optimizer steps", flush=True)
        if resume_from is not None:
            step = checkpoint_step(resume_from)
            print(f"[grpo] resuming from checkpoint {resume_from} (global step {step})", flush=True)
            log.info("resuming from checkpoint %s (global step %s)", resume_from, step)
            if trainer.is_world_process_zero():
                _restore_curve(curve_path, resume_from)
        elif every > 0:
            print(f"[grpo] no checkpoint to resume; checkpoints every {every} steps in {out}", flush=True)
        if on_trainer is not None:
            on_trainer(trainer)
        with fast_vlm(model, processor, **(fast if isinstance(fast, dict) else {})) if fast else nullcontext():
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    return trainer
