"""KL: ``-NLL(forget) + KL(vanilla || model)`` on the retain answers' tokens (the paper's KL row)."""
from __future__ import annotations

from asru_lens.core.training import seq_nll
from asru_lens.methods import register
from asru_lens.methods.baselines import BaselineConfig, baseline_settings, forget_loop


def kl_loss(lp_f, m_f, logp_r, ref_logp_r, m_r):
    """``logp_r``/``ref_logp_r``: full (B, T, V) log-distributions on retain answer positions."""
    kl = (ref_logp_r.exp() * (ref_logp_r - logp_r)).sum(-1)
    m = m_r.to(kl.dtype)
    return -seq_nll(lp_f, m_f).mean() + (kl * m).sum() / m.sum().clamp(min=1)


@register("KL", paper=True, baseline=True, config=BaselineConfig)
def kl(ctx) -> dict:
    """Gradient ascent on the forget answers, the retain answers' distribution kept at the starting model's."""
    def loss(s):
        lp_f, m_f, _ = s.logprobs(s.forget, [q.answer for q in s.forget])
        answers = [q.answer for q in s.retain]
        _, m_r, logp_r = s.logprobs(s.retain, answers)
        _, _, ref_logp_r = s.logprobs(s.retain, answers, reference=True)
        return kl_loss(lp_f, m_f, logp_r, ref_logp_r, m_r)
    return forget_loop(ctx.lens, ctx.forget, ctx.retain, baseline_settings(ctx), loss, reference=True,
                       progress=ctx.progress, desc="KL")
