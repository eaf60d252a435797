"""ASRU (arXiv 2605.15687): stage 1 redirects the forget queries onto the refusal direction (``redirect``), stage 2
reinforces contextual refusals with GRPO and ASRU's reward (``rl``, ``reward``). Two registered methods:

* ``stage1``: stage 1 alone, from the vanilla weights (the paper's ablation row);
* ``asru``: stage 2 from stage 1's chosen weights (``after="stage1"``), KL to the vanilla model.

Settings: the authors' (``RedirectConfig``, ``GRPOConfig``), then the model's presets (``redirect``, ``grpo`` in
its ``asru_lens.json``), then the run's budget (stage 2's steps), then ``--set`` and the learning rate.
"""
from __future__ import annotations

import torch

from asru_lens.core.sets import _sample
from asru_lens.core.training import default_trainable
from asru_lens.methods import register
from asru_lens.methods.boundary import boundary_set
from asru_lens.methods.context import settings_from
from asru_lens.methods.redirect import RedirectConfig, redirect, redirect_inputs, redirected_module
from asru_lens.methods.rl import GRPOConfig, train_grpo
from asru_lens.methods.trl_export import train_trl


def stage1_settings(ctx) -> RedirectConfig:
    return ctx.settings(RedirectConfig, {"seed": 42 + ctx.seed}, method="stage1")


def stage2_base(lens, seed: int = 0) -> dict:
    """Stage 2's defaults for ``lens`` beyond the authors': what trains (LoRA with gradient checkpointing on a real
    model, the decoder layers on the organism) and the seed."""
    what = default_trainable(lens)
    return {"seed": 42 + seed, "trainable": what, "gradient_checkpointing": what == "lora"}


def stage2_settings(ctx) -> GRPOConfig:
    """Stage 2's settings as the ``asru`` method has them (also when another method, the rewrite, runs it)."""
    steps = getattr(ctx.budget, "grpo_steps", None)
    return ctx.settings(GRPOConfig, stage2_base(ctx.lens, ctx.seed), {"steps": steps} if steps else {},
                        method="asru")


def grpo_config(lens, seed: int = 0, **kw) -> GRPOConfig:
    """Stage 2's settings outside a run (scripts, benchmarks): the authors', the presets, then ``kw``."""
    return settings_from(GRPOConfig, lens.presets.get("grpo", {}), stage2_base(lens, seed), overrides=kw)


def redirect_stage(ctx, cfg: RedirectConfig | None = None) -> dict:
    """Stage 1 on the forget set and a sample of the retain set, at the probe's layer."""
    p = ctx.probe
    layer = p.selection.layer
    down = redirected_module(ctx.lens, layer)
    ctx.cache["stage1_patch"] = [(down, down.weight.detach().clone())]   # the weight before stage 1 (LoRA's KL)
    cfg = cfg or stage1_settings(ctx)
    retain = _sample(ctx.retain, cfg.n_retain, ctx.seed + 1)
    # every grid point starts from the same weights, so down_proj's inputs are computed once for the grid (keyed by
    # a fingerprint of the weights, should a plugin start stage 1 from others)
    with torch.no_grad():
        fingerprint = tuple(float(w.float().sum()) for w in ctx.lens.model.parameters())
    key = ("stage1_inputs", layer, cfg.n_retain, fingerprint)
    inputs = ctx._once(key, lambda: redirect_inputs(ctx.lens, ctx.forget + retain, layer, cfg.inference_batch_size,
                                                          ctx.progress))
    return redirect(ctx.lens, p.direction, layer, ctx.forget, retain, cfg, progress=ctx.progress, inputs=inputs)


def reinforce_stage(ctx, cfg: GRPOConfig | None = None, reference=None) -> dict:
    """Stage 2: GRPO on an N + N boundary set (the forget half's repeats are new views of the photos), KL to
    ``reference`` (default: the vanilla model; with LoRA and no copy of it, the model with its adapters off
    and stage 1's weight swapped back)."""
    cfg = cfg or stage2_settings(ctx)
    boundary = boundary_set(ctx.forget, ctx.boundary_retain, cfg.n_boundary, ctx.seed)
    if cfg.engine == "trl":          # TRL's GRPOTrainer on the same boundary set and reward (its own KL reference)
        return train_trl(ctx.lens, boundary, cfg, progress=ctx.progress)
    reference = reference if reference is not None else ctx.reference
    patch = ctx.cache.get("stage1_patch") if reference is None and cfg.trainable == "lora" else None
    return train_grpo(ctx.lens, boundary, cfg=cfg,
                      progress=ctx.progress, checkpoint_dir=ctx.checkpoint_dir, reference=reference,
                      reference_patch=patch)


@register("stage1", paper=True, config=RedirectConfig, presets="redirect")
def stage1(ctx) -> dict:
    """ASRU's stage 1: the forget queries redirected onto the refusal direction, one MLP's weights."""
    return redirect_stage(ctx)


@register("asru", paper=True, config=GRPOConfig, after="stage1", presets="grpo")
def asru(ctx) -> dict:
    """ASRU: stage 2's GRPO with ASRU's reward, from stage 1's weights."""
    return reinforce_stage(ctx)
