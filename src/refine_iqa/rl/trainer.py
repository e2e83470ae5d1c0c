"""GRPO trainer for both stages: TRL's GRPOTrainer plus the paper's modified advantage and extra logging.

TRL computes advantages inline in `_generate_and_score_completions` (no hook), so this subclass keeps the
gathered per-function rewards from `_calculate_rewards` and, when PM is on, recomputes the advantages with
Eq. 6 afterwards and writes this process's slice back. TRL's own `frac_reward_zero_std` then still describes
its default computation; the modified advantages are logged under `pm/*`.

`answer_kl=(coef, spans_of)` adds the answer-field KL (rl/answer_field.py): coef x the mean KL to the frozen
start model over the tokens of the answer field only, logged under `answer_kl/*`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from refine_iqa.rewards import completion_text
from refine_iqa.rl.advantages import modified_advantages, weighted_total
from refine_iqa.rl.answer_field import token_mask
from refine_iqa.rl.fastpath import PROMPT_LENGTH
from refine_iqa.rl.sampling import StratifiedRepeatSampler


class RefineGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, pm: dict | None = None, correct_from: tuple[str, str] | None = None,
                 think_tags=None, strata: list | None = None, answer_kl: tuple | None = None, **kwargs):
        self.strata = strata  # answer class per training prompt: balanced batches (rl/sampling.py); None = TRL's
        super().__init__(*args, **kwargs)
        self.pm = pm  # {"delta", "sigma_min", "eps"} or None for TRL's standard advantage
        self.correct_from = correct_from  # names of the answer and format reward functions
        self.think_tags = think_tags  # log think length when training in think mode
        self._last_rewards_per_func = None
        self.answer_kl = answer_kl if answer_kl and answer_kl[0] > 0 else None
        self._loss_logps = None  # per-token log-probs of the loss forward in progress (answer-field KL)
        if self.answer_kl is not None:
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                raise ValueError("answer_kl_coef is an embedded-scale lever (a frozen full copy of the start "
                                 "model); it is not supported under DeepSpeed or FSDP: set it to 0")
            self._answer_ref = copy.deepcopy(self.accelerator.unwrap_model(self.model)).eval().requires_grad_(False)
        if pm is not None and correct_from is None:
            raise ValueError("the modified advantage needs correct_from=(answer reward name, format reward name)")

    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)  # TRL's repeat structure, whatever its version derives
        return sampler if self.strata is None else StratifiedRepeatSampler.like(sampler, self.strata)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func  # gathered across processes
        if self.think_tags is not None:
            lengths = [_think_words(completion_text(c), self.think_tags) for c in completions]
            self._log_metric("think/mean_words", sum(lengths) / max(len(lengths), 1))
        return rewards_per_func

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        # Tell the shared-prompt forward (rl/fastpath.py) where the prompt block ends: TRL concatenates the
        # left-padded prompts and the completions, and scores the last `logits_to_keep` positions.
        token = PROMPT_LENGTH.set(input_ids.size(1) - logits_to_keep)
        try:
            out = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                             *args, **kwargs)
        finally:
            PROMPT_LENGTH.reset(token)
        self._loss_logps = out[0]
        return out

    def _compute_loss(self, model, inputs):
        if self.answer_kl is None:
            return super()._compute_loss(model, inputs)
        ref_logps = self._reference_logps(inputs)
        loss = super()._compute_loss(model, inputs)
        logps, self._loss_logps = self._loss_logps, None
        mask = inputs["answer_field_mask"].to(logps.dtype)
        diff = ref_logps - logps
        per_token_kl = torch.exp(diff) - diff - 1  # TRL's k3 estimator, on the answer-field tokens only
        kl = (per_token_kl * mask).sum() / mask.sum().clamp(min=1.0)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["answer_kl/mean"].append(self.accelerator.gather(kl.detach()).nanmean().item())
        self._metrics[mode]["answer_kl/tokens_per_completion"].append((mask.sum() / max(mask.size(0), 1)).item())
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        return loss + self.answer_kl[0] * kl / normalizer

    @torch.no_grad()
    def _reference_logps(self, inputs) -> torch.Tensor:
        """Per-token log-probabilities of the sampled completion under the frozen start model (same inputs as
        TRL's loss forward)."""
        completion_ids = inputs["completion_ids"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        extra = {k: inputs.get(k) for k in ("pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids",
                                            "token_type_ids")}
        logps, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(
            self, self._answer_ref, input_ids, attention_mask, completion_ids.size(1), **extra)
        return logps

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self.answer_kl is not None:
            output["answer_field_mask"] = token_mask(output["completion_ids"], output["completion_mask"],
                                                     self.processing_class.tokenizer, self.answer_kl[1])
        rpf = self._last_rewards_per_func
        if self.correct_from is None or rpf is None:
            return output
        mode = "train" if self.model.training else "eval"
        G = self.num_generations if mode == "train" else self.num_generations_eval
        names = list(self.reward_func_names)
        ans = rpf[:, names.index(self.correct_from[0])]
        fmt = rpf[:, names.index(self.correct_from[1])]
        correct = (ans == 1) & (fmt == 1)
        total = weighted_total(rpf, self.reward_weights)  # NaN where no reward function scored the rollout
        groups_correct = correct.view(-1, G).any(dim=1).float().mean().item()
        self._metrics[mode]["groups/frac_with_correct"].append(groups_correct)
        if self.pm is not None:
            adv = modified_advantages(total.view(-1, G), correct.view(-1, G), delta=self.pm["delta"],
                                      sigma_min=self.pm["sigma_min"], eps=self.pm["eps"]).view(-1)
            n_local = output["advantages"].shape[0]
            start = self.accelerator.process_index * n_local
            output["advantages"] = adv[start : start + n_local].to(output["advantages"].device)
            self._metrics[mode]["pm/advantage_mean"].append(adv.mean().item())
            self._metrics[mode]["pm/advantage_std"].append(adv.std().item() if adv.numel() > 1 else 0.0)
            self._metrics[mode]["pm/frac_positive"].append((adv > 0).float().mean().item())
        return output

    def save_final(self, out_dir: str | os.PathLike) -> Path:
        """Save the trained model and processor to `out_dir`. EVERY process must call this: under DeepSpeed
        ZeRO-3 the weights are gathered collectively; only the main process writes, into a sibling folder that
        is swapped in when complete (several processes writing one folder would corrupt it)."""
        out_dir = Path(out_dir)
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        acc = self.accelerator
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        self.save_model(str(tmp))  # Trainer.save_model: gathers (ZeRO-3), writes on process zero only
        if acc.is_main_process:
            (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle of TrainingArguments, not model data
            if out_dir.exists():
                shutil.rmtree(out_dir)
            tmp.rename(out_dir)
        acc.wait_for_everyone()
        return out_dir


def _think_words(text: str, tags) -> int:
    start = text.find(tags.think_open)
    end = text.find(tags.think_close, start + 1) if start >= 0 else -1
    if start < 0 or end < 0:
        return 0
    return len(text[start + len(tags.think_open) : end].split())


class MetricsSink(TrainerCallback):
    """Forwards every training log to a JSON Lines file (for the report's plots) and to a callback (MLflow)."""

    def __init__(self, jsonl_path: str | os.PathLike, on_log: Callable[[dict, int], None] | None = None):
        self.path = Path(jsonl_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self._sink = on_log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        rec = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self._sink is not None:
            self._sink(rec, state.global_step)


def read_curve(path: str | os.PathLike) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def set_seed_everywhere(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
