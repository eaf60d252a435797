"""IDK, refusal fine-tuning: ``NLL("I don't know"-style answers | forget) + NLL(retain)`` (IdkPO-style; the
paper's IDK row)."""
from __future__ import annotations

from asru_lens.core.training import seq_nll
from asru_lens.methods import register
from asru_lens.methods.baselines import BaselineConfig, baseline_settings, forget_loop

IDK_ANSWERS = ("I don't know.", "I'm not sure.", "I have no information about that.",
               "Sorry, I don't know this person.", "I'm unable to provide that information.")


def idk_loss(lp_idk, m_idk, lp_r, m_r):
    return seq_nll(lp_idk, m_idk).mean() + seq_nll(lp_r, m_r).mean()


@register("IDK", paper=True, baseline=True, config=BaselineConfig)
def idk(ctx) -> dict:
    """A canned refusal taught on the forget questions, the truth on the retain questions."""
    def loss(s):
        refusals = [IDK_ANSWERS[i] for i in s.rng.integers(0, len(IDK_ANSWERS), len(s.forget))]
        lp_i, m_i, _ = s.logprobs(s.forget, refusals)
        lp_r, m_r, _ = s.logprobs(s.retain, [q.answer for q in s.retain])
        return idk_loss(lp_i, m_i, lp_r, m_r)
    return forget_loop(ctx.lens, ctx.forget, ctx.retain, baseline_settings(ctx), loss, progress=ctx.progress,
                       desc="IDK")
