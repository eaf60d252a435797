"""ASRU stage 2: a compact GRPO loop with ASRU's rule-based reward.

One step, top to bottom (TRL's GRPO, ``loss_type`` names as in TRL):

1. draw ``prompts_per_step`` questions from the boundary set, half forget, half retain;
2. sample ``group_size`` answers per question (temperature, top_p);
3. score them with ``reward.Reward`` and normalise within each group:
   ``A = (r - mean) / (std + 1e-4)`` (Bessel-corrected std);
4. per completion token, ``-min(ratio*A, clip(ratio, 1-eps, 1+eps_high)*A) + beta*KL`` with the
   low-variance ``KL = exp(ref - logp) - (ref - logp) - 1`` against the frozen starting model;
5. aggregate per ``loss_type``, AdamW step with gradient clipping.

Trainable parameters (``asru_lens.core.training.trainable``) are the language model's decoder layers (the
reference is a frozen copy) or LoRA adapters (the reference is the same model with the adapters switched off,
no copy).
Checkpoints (``checkpoint_dir``, every ``checkpoint_every`` steps) hold the trainable weights as
safetensors plus optimiser, RNG and log state, written atomically; ``resume=True`` continues exactly.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from asru_lens.core.checkpoint import latest as latest_checkpoint
from asru_lens.core.checkpoint import load as load_checkpoint
from asru_lens.core.checkpoint import save as save_checkpoint
from asru_lens.core.training import check_positive, frozen_copy, optimise, optimizer, token_logps, trainable
from asru_lens.measure.refusal import is_refusal
from asru_lens.methods.reward import Reward

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


@dataclass
class GRPOConfig:
    """Defaults follow ASRU's stage 2 (shared notes) except the sizes and ``lr``, scaled to the organism."""
    steps: int = 30
    prompts_per_step: int = 8          # half forget, half retain
    group_size: int = 8                # rollouts per prompt
    temperature: float = 1.5
    top_p: float = 0.95
    max_new_tokens: int = 24
    min_new_tokens: int = 0            # > 0 holds off EOS (benchmarks compare equal token budgets)
    beta: float = 0.1                  # weight of the KL to the reference model
    epsilon: float = 0.2
    epsilon_high: float | None = None  # None: same as epsilon
    loss_type: str = "grpo"
    num_iterations: int = 1            # updates per batch of rollouts (>1 makes the clip bite)
    lr: float = 1e-6
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    trainable: str = "layers"          # the decoder layers in full; or "lora" (asru_lens.core.training)
    gradient_checkpointing: bool = False   # recompute activations in backward (a real model on one GPU)
    checkpoint_every: int = 0          # 0: no checkpoints
    n_boundary: int = 200              # N forget + N retain questions in the boundary set (ASRU: about 200 each)
    seed: int = 42
    engine: str = "ours"               # "ours": train_grpo below; "trl": TRL's GRPOTrainer (trl_export.train_trl),
                                       # data-parallel under torchrun / accelerate launch

    def __post_init__(self):
        self.check()

    def check(self) -> "GRPOConfig":
        check_positive(self, ("steps", "max_new_tokens", "num_iterations", "n_boundary"), ("lr", "temperature"))
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type {self.loss_type!r} is not one of {', '.join(LOSS_TYPES)}.")
        if self.engine not in ("ours", "trl"):
            raise ValueError(f"engine {self.engine!r} must be 'ours' (this module's loop) or 'trl' (TRL's GRPOTrainer).")
        if self.trainable not in ("layers", "lora"):
            raise ValueError(f"trainable {self.trainable!r} must be 'layers' or 'lora'.")
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size}: GRPO compares answers within a group; use >= 2.")
        if self.prompts_per_step < 2 or self.prompts_per_step % 2:
            raise ValueError(f"prompts_per_step={self.prompts_per_step}: use an even number >= 2 "
                             f"(half forget, half retain).")
        return self


# -- the loss (plain tensors: (B, T) log-probs and mask, (B,) advantages) ------------------------------------------
def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(r - group mean) / (group std + 1e-4)``; rewards are ordered group by group."""
    g = rewards.view(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).view(-1)


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, beta: float = 0.1, epsilon: float = 0.2,
              epsilon_high: float | None = None, loss_type: str = "grpo",
              max_completion_length: int | None = None) -> tuple[torch.Tensor, dict]:
    """The clipped surrogate plus ``beta`` times the low-variance KL, aggregated like TRL's ``loss_type``."""
    mask = mask.to(logps.dtype)
    ratio = torch.exp(logps - old_logps)
    adv = advantages.unsqueeze(1)
    hi = epsilon if epsilon_high is None else epsilon_high
    per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - epsilon, 1 + hi) * adv)
    kl = torch.zeros_like(logps)
    if beta != 0.0:
        kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type in ("bnpo", "dapo"):     # one process, no accumulation: both are a mean over active tokens
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    elif loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / (per_token.size(0) * (max_completion_length or mask.size(1)))
    else:
        raise ValueError(f"loss_type {loss_type!r} is not one of {', '.join(LOSS_TYPES)}.")
    n = mask.sum().clamp(min=1.0)
    clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + hi) & (adv > 0))
    return loss, {"kl": float((kl.detach() * mask).sum() / n), "clip_ratio": float((clipped * mask).sum() / n)}


# -- rollouts and log-probs ---------------------------------------------------------------------------------------
def _repeat(items: list, k: int) -> list:
    return [q for q in items for _ in range(k)]


def completion_mask(ids: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """1 up to and including the first EOS of each row, 0 after it."""
    eos = torch.isin(ids, torch.tensor(eos_ids, device=ids.device))
    after = (eos.cumsum(1) - eos.long()) > 0
    return (~after).long()


VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


def vision_token_ids(lens) -> list[int]:
    """Placeholder tokens a sampled answer must never contain: an ``<|image_pad|>`` in a completion makes the
    next forward pass expect one more image feature than there is."""
    ids = lens.tokenizer.convert_tokens_to_ids(list(VISION_TOKENS))
    return [i for i in ids if i is not None and i != lens.tokenizer.unk_token_id]


@torch.no_grad()
def rollouts(model, lens, items: list, cfg: GRPOConfig) -> dict:
    """``group_size`` sampled answers per item; groups are consecutive rows."""
    enc = lens.encode([q.question for q in _repeat(items, cfg.group_size)],
                      [q.image for q in _repeat(items, cfg.group_size)])
    was_training = model.training
    model.eval()          # sampling keeps its KV cache (which gradient checkpointing would switch off in train mode)
    try:
        out = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
                             max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens,
                             pad_token_id=lens.tokenizer.pad_token_id, suppress_tokens=vision_token_ids(lens))
    finally:
        model.train(was_training)
    ids = out[:, enc["input_ids"].shape[1]:]
    eos = lens.model.generation_config.eos_token_id
    mask = completion_mask(ids, eos if isinstance(eos, list) else [eos])
    texts = [t.strip() for t in lens.tokenizer.batch_decode(ids * mask + (1 - mask) * lens.tokenizer.pad_token_id,
                                                             skip_special_tokens=True)]
    return {"enc": enc, "ids": ids, "mask": mask, "texts": texts}


# -- the loop -------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def swapped(patch: list):
    """Inside the block, each (module, weight) of ``patch`` has that weight (then its own again)."""
    own = [m.weight.data for m, _ in patch]
    try:
        for m, w in patch:
            m.weight.data = w
        yield
    finally:
        for (m, _), w in zip(patch, own):
            m.weight.data = w


def _reference(lens, policy, cfg: GRPOConfig, reference=None, reference_patch=None):
    """(reference context, reference model): ``reference`` when given, else a frozen copy of the starting model
    (taken before training starts), or for LoRA the same model with its adapters disabled (and
    ``reference_patch``'s weights swapped in: e.g. stage 1's down_proj as it was before stage 1, so the KL is to
    the vanilla model without a second copy of it)."""
    if reference is not None:
        return contextlib.nullcontext, reference.eval().requires_grad_(False)
    if cfg.trainable == "lora":
        @contextlib.contextmanager
        def ref_ctx():
            with policy.disable_adapter(), swapped(reference_patch or []):
                yield
        return ref_ctx, policy
    return contextlib.nullcontext, frozen_copy(lens)


def train_grpo(lens, boundary: list, reward: Reward | None = None, cfg: GRPOConfig = GRPOConfig(),
               progress: bool = True, checkpoint_dir=None, resume: bool = False, stop_after: int | None = None,
               reference=None, reference_patch: list | None = None) -> dict:
    """Run ``cfg.steps`` GRPO steps on ``boundary`` (see ``methods.boundary.boundary_set``); the model in ``lens`` is updated
    in place (LoRA adapters are merged back at the end). Returns the per-step log.

    ``resume=True`` continues from the latest checkpoint in ``checkpoint_dir``; ``lens`` must hold the same
    starting model as the first run (it is also the KL reference). ``stop_after`` ends the run early after
    that many steps (as an interruption would). ``reference``: the frozen model of the KL term (e.g. the
    vanilla model before stage 1); default: a copy of the starting model, or with LoRA the model with its
    adapters off and ``reference_patch`` ((module, weight) pairs) swapped in."""
    cfg.check()
    reward = reward or Reward()
    forget = [q for q in boundary if q.meta.get("forget")]
    retain = [q for q in boundary if not q.meta.get("forget")]
    if not forget or not retain:
        raise ValueError(f"the boundary set needs forget and retain questions (meta['forget'] True/False); got "
                         f"{len(forget)} forget and {len(retain)} retain. Build it with boundary.boundary_set.")
    torch.manual_seed(cfg.seed)
    sampler = np.random.default_rng(cfg.seed)
    with trainable(lens, cfg.trainable, checkpointing=cfg.gradient_checkpointing) as (policy, params):
        ref_ctx, ref = _reference(lens, policy, cfg, reference, reference_patch)
        opt, _ = optimizer(params, cfg.lr, cfg.weight_decay)
        log, start = {k: [] for k in ("reward", "reward_forget", "reward_retain", "kl", "refusal_forget",
                                      "refusal_retain", "loss", "clip_ratio")}, 0
        if resume:
            path = latest_checkpoint(checkpoint_dir)
            if path is None:
                raise FileNotFoundError(f"resume=True but {checkpoint_dir!r} holds no step-* checkpoint; run "
                                        f"without resume first (with checkpoint_every > 0).")
            start, log = load_checkpoint(path, params, opt, sampler)
        log["examples"] = log.get("examples", [])
        if cfg.trainable == "lora":
            log["trained"] = sorted(params)                 # adapter tensors only: the base weights never move
        half = cfg.prompts_per_step // 2
        end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
        bar = tqdm(range(start, end), desc="stage 2: GRPO", disable=not progress, leave=False)
        for step in bar:
            items = ([forget[i] for i in sampler.choice(len(forget), half, replace=len(forget) < half)] +
                     [retain[i] for i in sampler.choice(len(retain), half, replace=len(retain) < half)])
            batch = rollouts(policy, lens, items, cfg)
            samples = _repeat(items, cfg.group_size)
            r = torch.tensor([reward(t, q) for t, q in zip(batch["texts"], samples)])
            adv = group_advantages(r, cfg.group_size).to(lens.device)   # rewards are scored on the CPU
            with torch.no_grad():
                old = token_logps(policy, batch["enc"], batch["ids"], cfg.temperature) \
                    if cfg.num_iterations > 1 else None
                ref_lp = None
                if cfg.beta != 0.0:
                    with ref_ctx():
                        ref_lp = token_logps(ref, batch["enc"], batch["ids"], cfg.temperature)
            for _ in range(cfg.num_iterations):
                lp = token_logps(policy, batch["enc"], batch["ids"], cfg.temperature)
                loss, stats = grpo_loss(lp, lp.detach() if old is None else old, ref_lp, adv, batch["mask"],
                                        cfg.beta, cfg.epsilon, cfg.epsilon_high, cfg.loss_type, cfg.max_new_tokens)
                optimise(opt, params, loss, cfg.max_grad_norm)
            is_f = torch.tensor([q.meta["forget"] for q in samples])
            refused = torch.tensor([is_refusal(t) for t in batch["texts"]], dtype=torch.float)
            for k, v in (("reward", r.mean()), ("reward_forget", r[is_f].mean()), ("reward_retain", r[~is_f].mean()),
                         ("kl", stats["kl"]), ("refusal_forget", refused[is_f].mean()),
                         ("refusal_retain", refused[~is_f].mean()), ("loss", loss),
                         ("clip_ratio", stats["clip_ratio"])):
                log[k].append(round(float(torch.as_tensor(v).detach()), 5))
            log["examples"] = [(q.question, t) for q, t in zip(samples[::cfg.group_size],
                                                               batch["texts"][::cfg.group_size])][:4]
            bar.set_postfix(reward=f"{log['reward'][-1]:.2f}", forget=f"{log['reward_forget'][-1]:.2f}",
                            retain=f"{log['reward_retain'][-1]:.2f}", kl=f"{log['kl'][-1]:.3f}",
                            refusal=f"{log['refusal_forget'][-1]:.2f}")
            if checkpoint_dir and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                save_checkpoint(checkpoint_dir, step + 1, params, opt, sampler, log, cfg)
    return log
