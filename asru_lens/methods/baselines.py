"""The loop the paper's loss-based baselines share (GA, GD, KL, NPO, IDK, and MMUnlearner's masked ascent).

Each baseline is its own module (``ga``, ``gd``, ``kl``, ``npo``, ``idk``) with its loss on plain tensors and one
registration; this loop draws a forget and a retain batch per step, asks the method's ``step`` for the loss, and
leaves the step to the one loop (``core.training.train``): the same trainable parameters and forget-step budget for
every baseline.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from asru_lens.core.training import (answer_batch, answer_logprobs, check_positive, default_trainable, draw,
                                     frozen_copy, train)


@dataclass
class BaselineConfig:
    """The settings every loss-based baseline shares; checked when built."""
    steps: int = 40            # forget steps: the same budget for every method
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.01  # AdamW's (PyTorch's default, which the baselines have always trained with)
    seed: int = 0
    trainable: str = "layers"  # "layers" (the organism's preset) or "lora" (a real model)
    gradient_checkpointing: bool = False
    max_grad_norm: float | None = 1.0

    def __post_init__(self):
        check_positive(self, ("steps", "batch_size"), nonnegative=("weight_decay",))
        if self.trainable not in ("layers", "lora"):
            raise ValueError(f"{type(self).__name__}.trainable={self.trainable!r} must be 'layers' or 'lora'.")


def baseline_settings(ctx, cls=BaselineConfig):
    """A baseline's config in a run: the model's default trainable parameters (LoRA with gradient checkpointing
    on a real model), the run's forget-step budget, the run's seed."""
    lora = default_trainable(ctx.lens) == "lora"
    return ctx.settings(cls, {"trainable": "lora" if lora else "layers", "gradient_checkpointing": lora,
                              "seed": ctx.seed}, {"steps": ctx.budget.baseline_steps})


@dataclass
class Step:
    """What a baseline's loss sees at one step."""
    lens: object
    model: object               # the model to call (the peft model under LoRA)
    forget: list
    retain: list
    rng: np.random.Generator
    ref_model: object = None    # the frozen reference (for KL and NPO)
    ref_ctx: Callable = contextlib.nullcontext

    def logprobs(self, items, answers, reference: bool = False):
        """(per-token log-probs, mask, full log-distribution) of ``answers`` after ``items``' prompts."""
        batch = answer_batch(self.lens, items, answers)
        if not reference:
            return answer_logprobs(self.model, batch)
        with torch.no_grad(), self.ref_ctx():
            return answer_logprobs(self.ref_model, batch)


def forget_loop(lens, forget: list, retain: list, cfg: BaselineConfig, loss: Callable[[Step], torch.Tensor],
                reference: bool = False, mask: dict | None = None, progress: bool = True, desc: str = "baseline"
                ) -> dict:
    """Train ``lens.model`` in place for ``cfg.steps`` steps of ``loss(step)`` (``core.training.train``); returns
    the loss log. ``reference``: the loss needs the frozen starting model (with LoRA: the same model, adapters off).
    ``mask``: only these parameters train, their gradients masked (``trainable(..., "mask")``)."""
    if not forget or not retain:
        raise ValueError(f"{desc} needs forget and retain questions; got {len(forget)} and {len(retain)}.")
    what = "mask" if mask is not None else cfg.trainable
    ref = frozen_copy(lens) if reference and what != "lora" else None
    rng = np.random.default_rng(cfg.seed)

    def step(model, _):
        ref_model, ref_ctx = (model, model.disable_adapter) if what == "lora" else (ref, contextlib.nullcontext)
        f, r = draw(forget, cfg.batch_size, rng), draw(retain, cfg.batch_size, rng)
        return loss(Step(lens, model, f, r, rng, ref_model, ref_ctx))

    return train(lens, step, cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
                 what=what, mask=mask, checkpointing=cfg.gradient_checkpointing, desc=desc, progress=progress)
