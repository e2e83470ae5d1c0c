"""Run one GRPO training (either stage) through TRL with the project's trainer subclass."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable

from refine_iqa.rl.trainer import MetricsSink, RefineGRPOTrainer

log = logging.getLogger(__name__)


def grpo_config(settings: dict, *, out_dir: str | Path, seed: int, device: str = "cpu"):
    """TRL GRPOConfig from a `stage*.grpo` settings block (token-level dapo loss, no KL by default)."""
    from trl import GRPOConfig

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
        save_strategy="no",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        log_completions=False,
        disable_tqdm=False,
    )


def run_grpo(model, processor, samples: list[dict], reward_funcs: list, settings: dict, *, seed: int,
             curve_path: str | Path, device: str = "cpu", reward_weights: list[float] | None = None,
             pm: dict | None = None, correct_from: tuple[str, str] | None = None, think_tags=None,
             on_log: Callable[[dict, int], None] | None = None, bind: list | None = None):
    """Train `model` in place on `samples`; returns the trainer (its state holds the log history)."""
    from datasets import Dataset

    dataset = Dataset.from_list(samples)
    with tempfile.TemporaryDirectory(prefix="grpo-") as tmp:
        args = grpo_config(settings, out_dir=tmp, seed=seed, device=device)
        if reward_weights is not None:
            args.reward_weights = list(reward_weights)
        trainer = RefineGRPOTrainer(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=dataset,
            processing_class=processor,
            callbacks=[MetricsSink(curve_path, on_log)],
            pm=pm,
            correct_from=correct_from,
            think_tags=think_tags,
        )
        for r in bind or []:
            r.bind(trainer)
        trainer.train()
    return trainer
