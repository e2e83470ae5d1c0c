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


def grpo_config(settings: dict, *, out_dir: str | Path, seed: int, device: str = "cpu", checkpoint_steps: int = 0):
    """TRL GRPOConfig from a `stage*.grpo` settings block (token-level dapo loss, no KL by default).
    checkpoint_steps > 0 saves a full checkpoint (optimizer included) into out_dir every that many steps."""
    from trl import GRPOConfig

    saving = dict(save_strategy="steps", save_steps=checkpoint_steps, save_total_limit=1, save_only_model=False) \
        if checkpoint_steps > 0 else dict(save_strategy="no")

    return GRPOConfig(
        output_dir=str(out_dir),
        learning_rate=settings["learning_rate"],
        lr_scheduler_type=settings["lr_scheduler_type"],
        warmup_steps=settings["warmup_ratio"],  # transformers 5: a value below 1 is a fraction of training
        weight_decay=settings["weight_decay"],
        num_train_epochs=settings["num_train_epochs"],
        max_steps=settings["max_steps"],
        per_device_train_batch_size=settings["per_device_train_batch_size"],
        gradient_accumulation_steps=settings["gradient_accumulation_steps"],
        num_generations=settings["num_generations"],
        max_completion_length=settings["max_completion_length"],
        temperature=settings["temperature"],
        epsilon=settings["epsilon"],
        beta=settings["beta"],
        bf16=settings["bf16"],
        gradient_checkpointing=settings["gradient_checkpointing"],
        logging_steps=settings["logging_steps"],
        loss_type="dapo",
        scale_rewards="group",
        use_cpu=(device == "cpu"),
        seed=seed,
        data_seed=seed,
        report_to="none",
        **saving,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        log_completions=False,
        disable_tqdm=False,
    )


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
             checkpoint_dir: str | Path | None = None, resume_key_extra: dict | None = None, fast: bool = True,
             on_trainer: Callable | None = None):
    """Train `model` in place on `samples`; returns the trainer (its state holds the log history).

    With `checkpoint_dir`, checkpoints every `settings["checkpoint_steps"]` steps (default 50; 0 turns them
    off) and resumes from the latest complete one written by the same run (`resume_key_extra` adds what the
    caller knows decides the run, e.g. the start model's folder signature). `fast` turns on the exact
    once-per-image preprocessing and vision tower (rl/fastpath.py); `on_trainer(trainer)` is called before
    training starts (benchmarks attach their timers there)."""
    from datasets import Dataset

    every = int(settings.get("checkpoint_steps", DEFAULT_CHECKPOINT_STEPS)) if checkpoint_dir is not None else 0
    dataset = Dataset.from_list(samples)
    with _output_dir(Path(checkpoint_dir) if every > 0 else None) as out:
        args = grpo_config(settings, out_dir=out, seed=seed, device=device, checkpoint_steps=every)
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
        )
        for r in bind or []:
            r.bind(trainer)
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
        with fast_vlm(model, processor) if fast else nullcontext():
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    return trainer
