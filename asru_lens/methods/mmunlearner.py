"""MMUnlearner (Huo et al., ACL Findings 2025; code: Z1zs/MMUnlearner), the paper's multimodal baseline.

1. **A saliency mask per parameter** from the diagonal Fisher: the squared mini-batch gradients of the answer NLL,
   averaged over one pass of each set. A weight is kept when ``F_forget / F_preserve >= 1`` (with 1e-15 on both
   sides, as the authors). The mask is computed twice, as in their ``MLLMU_gen_mask.py``:

   * the vision tower with its merger (``model.visual``), preserve set: the retain people's photo questions;
   * the language model (``model.language_model``), preserve set: the same plus text-only QA, the A-D text
     questions of the whole Full_Set answered with the correct option's text.

   Only the linear weights are masked (names with proj, fc, linear, mlp or qkv: norms and embeddings are left
   out, as the authors' filter does).
2. **Gradient ascent through the mask** on the forget set, clipped at 1.0 and masked after clipping, then **a
   retain step** (answer NLL on the retain questions, unmasked), both on the masked weights: one forget and
   one retain step per budget step, each its own optimiser step, as in ``MLLMU_manifold.py``.

The Fisher is taken once per model (the vanilla one) and shared across the learning-rate grid. Deviations: the
loss is the answer NLL (the organism was trained on its answers only; the authors use the whole chat sequence),
and the Fisher passes use at most ``fisher_samples`` questions per set.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from asru_lens.core import data
from asru_lens.core.data import QA
from asru_lens.core.training import answer_nll, draw, train, trainable
from asru_lens.methods import register
from asru_lens.methods.baselines import BaselineConfig, baseline_settings

TOWERS = {"vision": r"model\.visual\.", "language": r"model\.language_model\."}
MASKED = re.compile(r"(proj|fc|linear|mlp|qkv)")


@dataclass
class MMUnlearnerConfig(BaselineConfig):
    threshold: float = 1.0           # keep a weight when F_forget / F_preserve >= threshold
    fisher_batch: int = 4
    fisher_samples: int | None = 400  # questions per set in the Fisher passes (None: all)
    forget_alpha: float = 1.0
    weight_decay: float = 0.0        # the authors' AdamW: no decay

    def __post_init__(self):
        super().__post_init__()
        if not self.threshold > 0:
            raise ValueError(f"MMUnlearnerConfig.threshold={self.threshold!r} must be positive.")
        if self.trainable == "lora":
            # the mask is over the model's own weights; adapters would not see it (the authors' LLaVA path)
            self.trainable = "layers"


def maskable(name: str, tower: str) -> bool:
    return bool(re.match(TOWERS[tower], name)) and bool(MASKED.search(name)) and name.endswith("weight")


def fisher(lens, items: list[QA], names: list[str], batch: int = 4, progress: bool = False) -> dict:
    """Diagonal empirical Fisher of ``names``: squared mini-batch gradients of the answer NLL, averaged."""
    out = {}
    with trainable(lens, "names", names=names) as (model, params):
        batches = [items[i:i + batch] for i in range(0, len(items), batch)]
        for b in tqdm(batches, desc="Fisher", disable=not progress, leave=False):
            model.zero_grad(set_to_none=True)
            answer_nll(model, lens, b, [q.answer for q in b]).backward()
            for k, p in params.items():
                if p.grad is not None:
                    out[k] = out.get(k, 0) + p.grad.detach().float() ** 2 / len(batches)
        model.zero_grad(set_to_none=True)
    return out


def text_qa(rows: list[dict]) -> list[QA]:
    """The text-only A-D questions of ``rows`` as QA pairs answered with the correct option's text."""
    return [QA(q.question, q.options[q.answer], None, q.id, "text_qa") for q in data.classification_items(rows, "text")
            if q.answer in (q.options or {})]


def saliency_mask(lens, forget: list[QA], retain: list[QA], text: list[QA], cfg: MMUnlearnerConfig,
                  progress: bool = False) -> dict:
    """{parameter name: 0/1 tensor}: the vision tower's and the language model's masks, each from its own
    preserve set (the language model's includes the text-only QA)."""
    rng = np.random.default_rng(cfg.seed)

    def cap(items):
        n = cfg.fisher_samples
        return items if n is None or len(items) <= n else [items[i] for i in sorted(rng.choice(len(items), n, False))]
    forget, retain, text = cap(forget), cap(retain), cap(text)
    mask = {}
    for tower, preserve in (("vision", retain), ("language", retain + text)):
        names = [k for k, _ in lens.model.named_parameters() if maskable(k, tower)]
        if not names:
            continue
        f = fisher(lens, forget, names, cfg.fisher_batch, progress)
        p = fisher(lens, preserve, names, cfg.fisher_batch, progress)
        for k in names:
            if k in f and k in p:
                mask[k] = ((f[k] + 1e-15) / (p[k] + 1e-15) >= cfg.threshold).to(torch.uint8)
    return mask


@register("MMUnlearner", paper=True, baseline=True, config=MMUnlearnerConfig)
def mmunlearner(ctx) -> dict:
    """Gradient ascent through a Fisher saliency mask (vision and language towers apart), with a retain step."""
    cfg = baseline_settings(ctx, MMUnlearnerConfig)
    text = text_qa(ctx.world.split("Full_Set"))
    mask = ctx._once("mmunlearner_mask", lambda: saliency_mask(ctx.lens, ctx.forget, ctx.retain, text, cfg,
                                                               ctx.progress))
    rng = np.random.default_rng(cfg.seed)
    forget, retain = ctx.forget, ctx.retain
    log = {"kept": round(float(sum(m.sum() for m in mask.values()) / max(1, sum(m.numel() for m in mask.values()))),
                        4)}

    def loss(model, _):
        f, r = draw(forget, cfg.batch_size, rng), draw(retain, cfg.batch_size, rng)
        # two optimiser steps per budget step, as the authors take them: the ascent through the mask, then retain
        return [({"forget": -cfg.forget_alpha * answer_nll(model, ctx.lens, f, [q.answer for q in f])}, mask),
                lambda: {"retain": answer_nll(model, ctx.lens, r, [q.answer for q in r])}]

    return train(ctx.lens, loss, cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                 max_grad_norm=cfg.max_grad_norm, what="names", names=list(mask), desc="MMUnlearner",
                 progress=ctx.progress, log=log)
