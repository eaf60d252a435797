"""The standard unlearning baselines, on the same trainable parameters and forget-step budget as ASRU.

Each loss takes plain tensors: per-token log-probs ``lp`` of the answer tokens and their ``mask`` (B, T);
``seq_nll(lp, mask)`` is the per-sequence mean negative log-likelihood.

=====  ==========================================================================================
GA     gradient ascent: ``-NLL(forget)``
GD     gradient difference: ``-NLL(forget) + NLL(retain)``
KL     ``-NLL(forget) + KL(vanilla || model)`` on retain tokens
NPO    ``-(2/beta) * log sigmoid(-beta * (log p(forget) - log p_ref(forget)))`` (Zhang et al. 2024)
IDK    refusal fine-tuning: ``NLL("I don't know"-style answers | forget) + NLL(retain)`` (IdkPO-style)
=====  ==========================================================================================
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from asru_lens.adapters import add_lora, check_trainable, gradient_checkpointing, merge
from asru_lens.rl import answer_tokens, completion_logprobs  # the same prompt + answer pass as stage 2

METHODS = ("GA", "GD", "KL", "NPO", "IDK")
IDK_ANSWERS = ("I don't know.", "I'm not sure.", "I have no information about that.",
               "Sorry, I don't know this person.", "I'm unable to provide that information.")


@dataclass
class BaselineConfig:
    method: str = "GA"
    steps: int = 40            # forget steps: the same budget for every method
    batch_size: int = 4
    lr: float = 1e-4
    npo_beta: float = 0.1
    seed: int = 0
    trainable: str = "layers"          # the decoder layers in full (the organism); "lora" for a real model
    lora_r: int = 16
    gradient_checkpointing: bool = False


def baseline_config(lens, method: str, **kw) -> BaselineConfig:
    """A baseline's settings for ``lens``: a real model (no presets) trains LoRA adapters with gradient
    checkpointing; a model whose presets say "layers" (the organism) trains its decoder layers."""
    lora = lens.presets.get("trainable", "lora") == "lora"
    return BaselineConfig(method, **{"trainable": "lora" if lora else "layers", "gradient_checkpointing": lora, **kw})


# -- losses (plain tensors) -------------------------------------------------------------------------------------
def seq_nll(lp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(lp.dtype)
    return -(lp * mask).sum(1) / mask.sum(1).clamp(min=1)


def ga_loss(lp_f, m_f):
    return -seq_nll(lp_f, m_f).mean()


def gd_loss(lp_f, m_f, lp_r, m_r):
    return -seq_nll(lp_f, m_f).mean() + seq_nll(lp_r, m_r).mean()


def kl_loss(lp_f, m_f, logp_r, ref_logp_r, m_r):
    """``logp_r``/``ref_logp_r``: full (B, T, V) log-distributions on retain answer positions."""
    kl = (ref_logp_r.exp() * (ref_logp_r - logp_r)).sum(-1)
    m = m_r.to(kl.dtype)
    return -seq_nll(lp_f, m_f).mean() + (kl * m).sum() / m.sum().clamp(min=1)


def npo_loss(lp_f, m_f, ref_lp_f, beta: float = 0.1):
    m = m_f.to(lp_f.dtype)
    log_ratio = ((lp_f - ref_lp_f) * m).sum(1)
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def idk_loss(lp_idk, m_idk, lp_r, m_r):
    return seq_nll(lp_idk, m_idk).mean() + seq_nll(lp_r, m_r).mean()


# -- answer log-probs ---------------------------------------------------------------------------------------------
def answer_batch(lens, items, answers: list[str]):
    """(prompt batch, answer ids ending in EOS, mask) for teacher forcing."""
    enc = lens.encode([q.question for q in items], [q.image for q in items])
    return (enc, *answer_tokens(lens, answers, eos=True))


def _lp(model, batch):
    enc, ids, mask = batch
    logp = completion_logprobs(model, enc, ids)
    return torch.gather(logp, 2, ids.unsqueeze(-1)).squeeze(-1), mask, logp


# -- the loop -------------------------------------------------------------------------------------------------------
def unlearn_baseline(lens, forget: list, retain: list, cfg: BaselineConfig = BaselineConfig(),
                     progress: bool = True) -> dict:
    """Train ``lens.model``'s language-model decoder layers in place with ``cfg.method``; returns the loss log."""
    if cfg.method not in METHODS:
        raise ValueError(f"method {cfg.method!r} is not one of {', '.join(METHODS)}.")
    if not forget or not retain:
        raise ValueError(f"baselines need forget and retain questions; got {len(forget)} and {len(retain)}.")
    check_trainable(cfg.trainable)
    frozen = [p for p in lens.model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    if cfg.trainable == "lora":      # the reference is the same model with its adapters switched off: no copy
        model = add_lora(lens.model, cfg.lora_r, cfg.lora_r, 0.0)
        params = [p for p in model.parameters() if p.requires_grad]
        ref, ref_ctx = model, model.disable_adapter
    else:
        model = lens.model
        ref = copy.deepcopy(model).eval().requires_grad_(False) if cfg.method in ("KL", "NPO") else None
        ref_ctx = contextlib.nullcontext
        params = list(model.model.language_model.layers.parameters())
        for p in params:
            p.requires_grad_(True)
    if cfg.gradient_checkpointing:
        gradient_checkpointing(model)
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    log = []
    model.train()
    try:
        for _ in tqdm(range(cfg.steps), desc=f"baseline {cfg.method}", disable=not progress, leave=False):
            f = [forget[i] for i in rng.choice(len(forget), cfg.batch_size, replace=len(forget) < cfg.batch_size)]
            r = [retain[i] for i in rng.choice(len(retain), cfg.batch_size, replace=len(retain) < cfg.batch_size)]
            if cfg.method == "IDK":
                idk = [IDK_ANSWERS[i] for i in rng.integers(0, len(IDK_ANSWERS), len(f))]
                lp_i, m_i, _ = _lp(model, answer_batch(lens, f, idk))
                lp_r, m_r, _ = _lp(model, answer_batch(lens, r, [q.answer for q in r]))
                loss = idk_loss(lp_i, m_i, lp_r, m_r)
            else:
                fb = answer_batch(lens, f, [q.answer for q in f])
                lp_f, m_f, _ = _lp(model, fb)
                if cfg.method == "GA":
                    loss = ga_loss(lp_f, m_f)
                elif cfg.method == "NPO":
                    with torch.no_grad(), ref_ctx():
                        ref_lp, _, _ = _lp(ref, fb)
                    loss = npo_loss(lp_f, m_f, ref_lp, cfg.npo_beta)
                else:
                    rb = answer_batch(lens, r, [q.answer for q in r])
                    lp_r, m_r, logp_r = _lp(model, rb)
                    if cfg.method == "GD":
                        loss = gd_loss(lp_f, m_f, lp_r, m_r)
                    else:
                        with torch.no_grad(), ref_ctx():
                            _, _, ref_logp_r = _lp(ref, rb)
                        loss = kl_loss(lp_f, m_f, logp_r, ref_logp_r, m_r)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            log.append(round(loss.item(), 5))
    finally:
        if cfg.gradient_checkpointing:
            gradient_checkpointing(model, False)
        if cfg.trainable == "lora":
            merge(lens, model)
        lens.model.eval()
        for p in frozen:
            p.requires_grad_(True)
    return {"loss": log}
