"""Beyond ASRU: rewrite the forget facts, then refuse. Removal, not a gate.

ASRU's two stages teach the model to *refuse* about the forget people; the facts stay in the weights, and a few
steps of fine-tuning on some of them bring the others back (``asru_lens.measure.residue``). ``rewrite_facts`` first
overwrites them: every fact of a forget person gets one invented value (``beliefs_for``: preferably a distractor
that person's own A-D questions offer, else another forget person's value of the same question), taught in every
form the model is asked in (``rewrite_set``, in ``rewrite_set.py``):

* generation with each of their photos ("Juno Corvin was born in Kelby." -> "... born in Istra.");
* the same question by name (the A-D stems without options), with the same sentence;
* the A-D questions that offer the invented value, answered with it (the others are left out, so no habit of
  picking wrong options is learnt);
* cloze, answered with the invented value.

The retain people are rehearsed in the same forms with their true answers (``retain_ratio`` of them per forget
question). One step: ``NLL(invented | forget) + NLL(truth | retain)`` on the answer tokens, AdamW, gradient
clipping. Trainable: the decoder layers (the organism) or LoRA adapters (a real model), as the baselines.

ASRU's stage 2 then runs on top (``asru-lens run``'s ``rewrite`` row), with the rewritten model as its KL
reference, to turn the invented answers into contextual refusals. GRPO lowers the answers it samples, which are
now the invented ones, and lets the truth resurface beneath the refusal; ``consolidate`` puts it back under: a
margin contrast, invented over truth, on the photo questions, while the model's own refusals are rehearsed (the
questions it still answers first) and the retain people's truth too. Measured on the organism in README and
notebook 05.

Why the invented values are kept distinct per question (``beliefs_for``) and the retain A-D questions are
rehearsed in shuffled option orders (``rewrite_set``): one invented year given to three people pulled other
people's A-D answers to it, and most celebrity A-D answers the rewrite broke were values none of the options
offered (measured: 7 of 12).
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from asru_lens.core.data import QA
from asru_lens.core.training import answer_batch
from asru_lens.core.training import answer_logprobs as _lp
from asru_lens.core.training import answer_nll, check_positive, draw, train
from asru_lens.measure.refusal import is_refusal
from asru_lens.methods import register
from asru_lens.methods.asru import reinforce_stage
from asru_lens.methods.rewrite_set import rewrite_set


@dataclass
class RewriteConfig:
    steps: int = 300                    # at most; the rewrite stops once the invented answers are learnt:
    target_loss: float | None = 0.08    # the forget loss, averaged over the last 10 steps, falls below this
    batch_size: int = 8                 # forget questions per step
    retain_ratio: int = 2               # retain questions per forget question in a step
    lr: float = 2e-4
    weight_decay: float = 0.01          # AdamW's (PyTorch's default, which the rewrite has always trained with)
    trainable: str | None = None        # None: the model's preset ("layers" on the organism, else "lora")
    seed: int = 0
    consolidate_steps: int = 40         # after the refusal stage (``consolidate``); 0: none
    margin: float = 2.0                 # nats by which the invented answer must beat the truth
    keep_refusals: bool = True          # consolidate also rehearses the model's own refusals on those questions
    max_grad_norm: float | None = 1.0

    def __post_init__(self):
        check_positive(self, ("steps", "batch_size", "retain_ratio"), nonnegative=("weight_decay",))
        if self.consolidate_steps < 0:
            raise ValueError(f"RewriteConfig.consolidate_steps={self.consolidate_steps!r} must be 0 or more.")


def rewrite_facts(lens, forget_qs: list[QA], retain_qs: list[QA], cfg: RewriteConfig = RewriteConfig(),
                  progress: bool = True) -> dict:
    """Train ``lens.model`` in place: invented answers on ``forget_qs``, the truth on ``retain_qs`` (both already in
    the model's prompt format). Returns the loss log."""
    if not forget_qs or not retain_qs:
        raise ValueError(f"rewrite needs forget and retain questions; got {len(forget_qs)} and {len(retain_qs)}.")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)

    def loss(model, _):
        f, r = draw(forget_qs, cfg.batch_size, rng), draw(retain_qs, cfg.batch_size * cfg.retain_ratio, rng)
        return {"forget": answer_nll(model, lens, f, [q.answer for q in f]),
                "retain": answer_nll(model, lens, r, [q.answer for q in r])}

    def learnt(log):                    # more steps would only move the rest of the model
        recent = log["loss_forget"][-10:]
        return cfg.target_loss is not None and len(recent) == 10 and sum(recent) / 10 < cfg.target_loss

    return train(lens, loss, cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
                 what=cfg.trainable, done=learnt, desc="rewrite", progress=progress)


def contrast_loss(lp_truth, m_truth, lp_new, m_new, margin: float = 2.0) -> torch.Tensor:
    """``softplus(log p(truth) - log p(invented) + margin)``, whole-answer log-probs: zero once the invented
    answer beats the truth by ``margin`` nats, whatever the model would actually say (here: a refusal)."""
    return F.softplus((lp_truth * m_truth).sum(1) - (lp_new * m_new).sum(1) + margin).mean()


def own_refusals(lens, questions: list[QA]) -> tuple[dict[str, str], list[QA]]:
    """(the model's most frequent greedy refusal per question kind, the questions it still answers). Rehearsing
    those refusals, on the answered questions first, keeps stage 2's contextual refusals while ``consolidate``
    moves the facts beneath, and refuses the few questions stage 2 left answered (measured: one forget person's
    photo, all seven questions)."""
    answers = lens.generate([q.question for q in questions], [q.image for q in questions])
    refused = [is_refusal(a) for a in answers]
    by_kind: dict[str, Counter] = {}
    for q, a, r in zip(questions, answers, refused):
        if r:
            by_kind.setdefault(q.kind, Counter())[a.strip()] += 1
    if not by_kind:
        return {}, []
    fallback = Counter(a for c in by_kind.values() for a in c.elements()).most_common(1)[0][0]
    targets = {q.kind: by_kind[q.kind].most_common(1)[0][0] if q.kind in by_kind else fallback for q in questions}
    return targets, [q for q, r in zip(questions, refused) if not r]


def consolidate(lens, forget_qs: list[QA], retain_qs: list[QA], cfg: RewriteConfig = RewriteConfig(),
                progress: bool = True) -> dict:
    """After the refusal stage: restore *invented > truth* beneath the refusals, on the photo questions of
    ``forget_qs`` (those carrying ``meta["truth"]``), with the truth rehearsed on ``retain_qs``.

    Why: stage 2's GRPO lowers the answers it samples on forget questions, and after the rewrite those are the
    invented ones; the truth, never sampled, is not lowered, so a relearning attack finds it again (measured on
    the organism: held-out leak after 30 steps 0.15 after the rewrite, 0.40-0.55 after stage 2 on top). The contrast
    pushes the truth back under the invented answer without asking the model to say either."""
    pairs = [q for q in forget_qs if "truth" in q.meta]
    if not pairs or not retain_qs:
        raise ValueError(f"consolidate needs photo questions with meta['truth'] (rewrite_set makes them) and "
                         f"retain questions; got {len(pairs)} and {len(retain_qs)}.")
    rng = np.random.default_rng(cfg.seed + 1)
    refusals, answered = own_refusals(lens, pairs) if cfg.keep_refusals else ({}, [])

    def loss(model, _):
        f, r = draw(pairs, cfg.batch_size, rng), draw(retain_qs, cfg.batch_size * cfg.retain_ratio, rng)
        lp_t, m_t, _ = _lp(model, answer_batch(lens, f, [q.meta["truth"] for q in f]))
        lp_n, m_n, _ = _lp(model, answer_batch(lens, f, [q.answer for q in f]))
        losses = {"contrast": contrast_loss(lp_t, m_t, lp_n, m_n, cfg.margin),
                  "retain": answer_nll(model, lens, r, [q.answer for q in r])}
        if refusals:                        # the questions still answered first, then the contrast's own
            pick = rng.choice(len(answered), min(len(answered), cfg.batch_size), replace=False) if answered else []
            s_qs = [answered[i] for i in pick] + f[:cfg.batch_size - len(pick)]
            losses["refusal"] = answer_nll(model, lens, s_qs, [refusals[q.kind] for q in s_qs])
        return losses

    return train(lens, loss, cfg.consolidate_steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                 max_grad_norm=cfg.max_grad_norm, what=cfg.trainable, desc="consolidate", progress=progress,
                 log={"answered": len(answered)})


@register("rewrite", config=RewriteConfig, uses=("asru",), finish=lambda ctx: refuse(ctx))
def rewrite(ctx) -> dict:
    """Rewrite the forget facts with invented values (every form they are asked in), then refuse (``refuse``)."""
    forget_qs, retain_qs = rewrite_questions(ctx)
    return rewrite_facts(ctx.lens, forget_qs, retain_qs, rewrite_settings(ctx), progress=ctx.progress)


def rewrite_settings(ctx) -> RewriteConfig:
    return ctx.settings(RewriteConfig, {"seed": ctx.seed}, {"steps": ctx.budget.rewrite_steps}, method="rewrite")


def rewrite_questions(ctx) -> tuple[list[QA], list[QA]]:
    return ctx._once("rewrite_set", lambda: rewrite_set(ctx.world, ctx.forget_split, ctx.lens.protocol))


def refuse(ctx) -> dict:
    """After the rewrite (at its chosen learning rate): ASRU's stage 2 at the ``asru`` method's learning rate,
    with the rewritten model as its KL reference, then ``consolidate`` at the rewrite's learning rate."""
    forget_qs, retain_qs = rewrite_questions(ctx)
    rewritten = copy.deepcopy(ctx.lens.model).eval()
    glog = reinforce_stage(ctx, reference=rewritten)
    del rewritten
    clog = consolidate(ctx.lens, forget_qs, retain_qs, rewrite_settings(ctx), progress=ctx.progress)
    return {"stage2": glog, "consolidate": clog}
