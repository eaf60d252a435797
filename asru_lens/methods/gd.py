"""GD, gradient difference: ``-NLL(forget) + NLL(retain)`` (the paper's GD row)."""
from __future__ import annotations

from asru_lens.core.training import seq_nll
from asru_lens.methods import register
from asru_lens.methods.baselines import BaselineConfig, baseline_settings, forget_loop


def gd_loss(lp_f, m_f, lp_r, m_r):
    return -seq_nll(lp_f, m_f).mean() + seq_nll(lp_r, m_r).mean()


@register("GD", paper=True, baseline=True, config=BaselineConfig)
def gd(ctx) -> dict:
    """Gradient ascent on the forget answers, descent on the retain answers."""
    def loss(s):
        lp_f, m_f, _ = s.logprobs(s.forget, [q.answer for q in s.forget])
        lp_r, m_r, _ = s.logprobs(s.retain, [q.answer for q in s.retain])
        return gd_loss(lp_f, m_f, lp_r, m_r)
    return forget_loop(ctx.lens, ctx.forget, ctx.retain, baseline_settings(ctx), loss, progress=ctx.progress,
                       desc="GD")
