"""RMU, representation misdirection for unlearning (Li et al. 2024, the WMDP paper; code: centerforaisafety/wmdp).

At one decoder layer's output (``resid_pre[layer + 1]``), over the prompt and answer tokens:

* forget: ``MSE(h, c * u)``, the forget set's activations pushed toward a fixed random unit vector ``u``
  (uniform in [0, 1)^d, normalised, drawn once from the seed) scaled by ``c``;
* retain: ``alpha * MSE(h, h_frozen)``, the retain set's activations kept at the frozen starting model's.

Only the MLP ``down_proj`` weights of ``layer`` and the two layers below it train (the authors' layers 5, 6, 7
with layer 7 read on a 32-layer model; by name, since their positional ``param_ids=6`` is ``gate_proj`` on
Qwen3). No gradient clipping, as the authors. Defaults for a model of another size: ``layer`` is the probe's
selected layer (where the forget people are told apart), and ``c`` is ``c_scale`` times the forget set's mean
per-token activation norm there (the authors' c=6.5 was about 2.4 times Zephyr's norm at layer 7); padding
positions are left out of both means (as open-unlearning does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asru_lens.core.hooks import capture
from asru_lens.core.training import answer_batch, draw, frozen_copy, train, with_answers
from asru_lens.methods import register
from asru_lens.methods.baselines import BaselineConfig, baseline_settings


@dataclass
class RMUConfig(BaselineConfig):
    layer: int | None = None         # the layer whose output is steered (None: the probe's selected layer)
    c: float | None = None           # steering coefficient (None: c_scale x the forget activations' mean norm)
    c_scale: float = 3.0
    alpha: float = 100.0             # weight of the retain loss
    max_grad_norm: float | None = None
    weight_decay: float = 0.0        # the authors' AdamW: no decay
    trainable: str = "layers"        # always the named down_proj weights (kept for the shared settings)

    def __post_init__(self):
        super().__post_init__()
        self.trainable = "layers"
        if self.c is not None and not self.c > 0:
            raise ValueError(f"RMUConfig.c={self.c!r} must be positive (or None for c_scale x the activations' norm).")
        if not self.alpha >= 0:
            raise ValueError(f"RMUConfig.alpha={self.alpha!r} must be 0 or more.")


def layer_output(model, lens, items, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(``resid_post[layer]`` over prompt + answer tokens (B, T, d), their attention mask)."""
    enc, ids, _ = answer_batch(lens, items, [q.answer for q in items])
    inputs = with_answers(enc, ids)
    return capture(model, inputs, [f"resid_post.{layer}"])[f"resid_post.{layer}"], inputs["attention_mask"]


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real (unpadded) positions, averaged over the hidden dimension."""
    m = mask.to(a.dtype).unsqueeze(-1)
    return (((a - b) ** 2) * m).sum() / (m.sum() * a.shape[-1]).clamp(min=1)


def rmu_layer(ctx, cfg: RMUConfig) -> int:
    layer = cfg.layer if cfg.layer is not None else ctx.probe.selection.layer
    if not 0 <= layer < ctx.lens.n_layers:
        raise ValueError(f"RMUConfig.layer={layer} is out of range: this model has {ctx.lens.n_layers} layers.")
    return layer


@register("RMU", paper=False, config=RMUConfig)
def rmu(ctx) -> dict:
    """The forget set's activations at one layer pushed toward a random direction, the retain set's kept."""
    cfg = baseline_settings(ctx, RMUConfig)
    lens, layer = ctx.lens, rmu_layer(ctx, cfg)
    names = [f"model.language_model.layers.{i}.mlp.down_proj.weight" for i in range(max(0, layer - 2), layer + 1)]
    frozen = frozen_copy(lens)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    u = torch.rand(lens.model.config.text_config.hidden_size, generator=gen)
    u = (u / u.norm()).to(lens.device)
    forget, retain = ctx.forget, ctx.retain
    with torch.no_grad():
        probe_items = forget[:32]
        h, m = layer_output(lens.model, lens, probe_items, layer)
        norm = float((h.float().norm(dim=-1) * m).sum() / m.sum())
    c = cfg.c if cfg.c is not None else cfg.c_scale * norm
    control = (c * u).to(lens.model.dtype)
    log = {"layer": layer, "c": round(c, 4), "trained": names}

    def loss(model, _):
        f, r = draw(forget, cfg.batch_size, rng), draw(retain, cfg.batch_size, rng)
        h_f, m_f = layer_output(model, lens, f, layer)
        h_r, m_r = layer_output(model, lens, r, layer)
        with torch.no_grad():
            h_0, _ = layer_output(frozen, lens, r, layer)
        return {"forget": masked_mse(h_f.float(), control.float().expand_as(h_f), m_f),
                "retain": cfg.alpha * masked_mse(h_r.float(), h_0.float(), m_r)}

    train(lens, loss, cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
          what="names", names=names, desc="RMU", progress=ctx.progress, log=log)
    return log
