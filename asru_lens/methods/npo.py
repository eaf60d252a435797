"""NPO, negative preference optimisation (Zhang et al. 2024):
``-(2/beta) * log sigmoid(-beta * (log p(forget) - log p_ref(forget)))`` (the paper's NPO row)."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from asru_lens.methods import register
from asru_lens.methods.baselines import BaselineConfig, baseline_settings, forget_loop


@dataclass
class NPOConfig(BaselineConfig):
    beta: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if not self.beta > 0:
            raise ValueError(f"NPOConfig.beta={self.beta!r} must be positive.")


def npo_loss(lp_f, m_f, ref_lp_f, beta: float = 0.1):
    m = m_f.to(lp_f.dtype)
    log_ratio = ((lp_f - ref_lp_f) * m).sum(1)
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


@register("NPO", paper=True, baseline=True, config=NPOConfig)
def npo(ctx) -> dict:
    """The forget answers made less likely than under the starting model, with a bounded loss."""
    cfg = baseline_settings(ctx, NPOConfig)

    def loss(s):
        answers = [q.answer for q in s.forget]
        lp_f, m_f, _ = s.logprobs(s.forget, answers)
        ref_lp, _, _ = s.logprobs(s.forget, answers, reference=True)
        return npo_loss(lp_f, m_f, ref_lp, cfg.beta)
    return forget_loop(ctx.lens, ctx.forget, ctx.retain, cfg, loss, reference=True, progress=ctx.progress,
                       desc="NPO")
