"""GA, gradient ascent: ``-NLL(forget)``, the simplest unlearning baseline (the paper's GA row)."""
from __future__ import annotations

from asru_lens.core.training import seq_nll
from asru_lens.methods import register
from asru_lens.methods.baselines import BaselineConfig, baseline_settings, forget_loop


def ga_loss(lp_f, m_f):
    return -seq_nll(lp_f, m_f).mean()


@register("GA", paper=True, baseline=True, config=BaselineConfig)
def ga(ctx) -> dict:
    """Gradient ascent on the forget answers."""
    def loss(s):
        lp, m, _ = s.logprobs(s.forget, [q.answer for q in s.forget])
        return ga_loss(lp, m)
    return forget_loop(ctx.lens, ctx.forget, ctx.retain, baseline_settings(ctx), loss, progress=ctx.progress,
                       desc="GA")
