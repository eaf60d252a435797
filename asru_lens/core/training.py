"""The one training core: which parameters train, the answer log-probs every loss starts from, one optimiser step.

Every trained thing in asru_lens goes through here: the unlearning methods (``asru_lens.methods``), stage 2's GRPO,
the residue's relearning attack and the vanilla fine-tune.

``trainable(lens, what)`` is a context manager that makes the right parameters trainable and yields
``(model, {name: parameter})``:

===========  ====================================================================================================
``layers``   the language model's decoder layers in full (the 3.6M-parameter organism's preset)
``lora``     LoRA adapters on every linear layer of the language model (``LM_LINEAR``: ``q/k/v/o_proj`` and
             ``gate/up/down_proj``, never the vision tower or the merger), the authors' recipe; a real model's
             default. On exit they are merged back (``merge_and_unload``), so the model saves and loads as an
             ordinary Qwen3-VL
``names``    the parameters named in ``names`` (stage 1's one ``down_proj``, RMU's MLP weights)
``mask``     ``{name: 0/1 tensor}``: only those parameters, and their gradients multiplied by the mask
             (MMUnlearner's saliency mask)
===========  ====================================================================================================

On exit ``requires_grad`` and train/eval mode are restored as they were found, whatever happened inside.

``answer_logprobs`` teacher-forces answers after their prompts and returns per-token log-probs.

The loop is ``train``: a method supplies a *loss* (``loss(model, step) -> tensor | {name: tensor}``) and
``train`` does the rest: the trainable parameters, the optimiser (``optimizer``, the one place AdamW is built,
with the weight decay each config states), the step (``optimise``: backward, clipping, AdamW), the log and the
progress bar. ``draw`` samples a batch the way every loop does. Stage 2's GRPO and the data-parallel fine-tune
keep their own loops (rollouts; accumulation, resume and DDP) but build their optimiser and step here.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import re
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

LM_LINEAR = r".*language_model\.layers\.\d+\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj"
TRAINABLE = ("lora", "layers")
WHAT = TRAINABLE + ("names", "mask")


@dataclass(frozen=True)
class LoRA:
    """The adapters' one set of defaults: the authors' (r=16, alpha=16, dropout 0.05)."""
    r: int = 16
    alpha: int = 16
    dropout: float = 0.05


def check_positive(cfg, ints: tuple = (), floats: tuple = ("lr",), nonnegative: tuple = ()) -> None:
    """A config's whole-number settings ``ints`` >= 1, ``floats`` positive and finite and ``nonnegative`` >= 0
    (a weight decay), or one clear error naming the config and the setting (the configs call this when built)."""
    name = type(cfg).__name__
    for k in nonnegative:
        v = getattr(cfg, k)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"{name}.{k}={v!r} must be a finite number >= 0.")
    for k in ints:
        v = getattr(cfg, k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}.{k}={v!r} must be a whole number >= 1.")
    for k in floats:
        v = getattr(cfg, k)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{name}.{k}={v!r} must be a positive finite number.")


def re_lm_linear(name: str) -> bool:
    """Whether a parameter name belongs to one of the language model's linear layers (LoRA's targets)."""
    return bool(re.match(LM_LINEAR + r"\.(weight|bias)$", name))


def check_trainable(trainable: str) -> str:
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable={trainable!r} must be 'lora' (adapters on the language model's linear layers) "
                         f"or 'layers' (its decoder layers in full).")
    return trainable


def default_trainable(lens) -> str:
    """What a method trains on ``lens`` unless told: its presets' ``trainable`` ("layers" on the organism), else
    LoRA adapters (a real 2-8B model)."""
    return check_trainable(lens.presets.get("trainable", "lora"))


def add_lora(model, lora: LoRA = LoRA()):
    """The peft model with fresh adapters on every linear layer of the language model (only they train)."""
    from peft import LoraConfig, get_peft_model  # peft is needed for LoRA adapters only
    return get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                            target_modules=LM_LINEAR))


def merge(lens, policy) -> None:
    """Fold ``policy``'s adapters into the weights and put the plain model back in ``lens`` (same class)."""
    lens.model = policy.merge_and_unload()
    lens._nn = None            # the nnsight wrapper held the old module tree


def frozen_copy(lens):
    """A frozen copy of ``lens.model`` as it is now (a KL, perplexity or activation reference)."""
    return copy.deepcopy(lens.model).eval().requires_grad_(False)


def layer_params(model) -> dict:
    """The language model's decoder-layer parameters, by their names in ``model``."""
    return {f"model.language_model.layers.{k}": p for k, p in model.model.language_model.layers.named_parameters()}


def gradient_checkpointing(model, on: bool = True) -> None:
    """Recompute activations in the backward pass (memory for time); needed at 2-8B on one GPU."""
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    else:
        model.gradient_checkpointing_disable()


@contextlib.contextmanager
def trainable(lens, what: str | None = None, *, names=None, mask: dict | None = None, lora: LoRA = LoRA(),
              checkpointing: bool = False, merge_lora: bool = True, train_mode: bool = True):
    """Inside the block, only the chosen parameters of ``lens.model`` train; yields ``(model, {name: param})``.

    ``what``: "layers", "lora", "names" (with ``names``) or "mask" (with ``mask``); None: ``default_trainable``.
    ``model`` is ``lens.model`` or, for LoRA, the peft model around it (call that one). On exit: gradient
    checkpointing off, adapters merged into ``lens.model`` (unless ``merge_lora=False``), ``requires_grad`` and
    train/eval mode as they were."""
    what = what or default_trainable(lens)
    if what not in WHAT:
        raise ValueError(f"trainable {what!r} must be one of {', '.join(WHAT)}.")
    was_grad = {k: p.requires_grad for k, p in lens.model.named_parameters()}
    was_training = lens.model.training
    for p in lens.model.parameters():
        p.requires_grad_(False)
    hooks = []
    if what == "lora":
        model = add_lora(lens.model, lora)
        params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    else:
        model = lens.model
        if what == "layers":
            params = layer_params(model)
        else:
            chosen = set(mask if what == "mask" else names or ())
            params = {k: p for k, p in model.named_parameters() if k in chosen}
            missing = chosen - set(params)
            if missing or not params:
                raise ValueError(f"trainable={what!r}: no parameter named {sorted(missing)[:3] or '(none given)'} in "
                                 f"this model; pass names from model.named_parameters().")
        for p in params.values():
            p.requires_grad_(True)
        if what == "mask":        # only the salient entries move: their gradients are masked before every step
            for k, p in params.items():
                m = mask[k].to(p.device, p.dtype)
                hooks.append(p.register_hook(lambda g, m=m: g * m))
    if checkpointing:
        gradient_checkpointing(model)
    model.train(train_mode)
    try:
        yield model, params
    finally:
        for h in hooks:
            h.remove()
        if checkpointing:
            gradient_checkpointing(model, False)
        if what == "lora" and merge_lora:
            merge(lens, model)
        for k, p in lens.model.named_parameters():
            p.requires_grad_(was_grad.get(k, False))
        lens.model.train(was_training)


def optimise(opt, params, loss=None, max_grad_norm: float | None = 1.0, grad_mask: dict | None = None) -> None:
    """One optimiser step: ``loss.backward()`` from zeroed gradients (when ``loss`` is given; else the caller has
    accumulated them), clip to ``max_grad_norm`` (None: no clipping), multiply the gradients of the parameters in
    ``grad_mask`` ({name: 0/1 tensor}) by their mask after clipping (as MMUnlearner does), step."""
    if loss is not None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(list(params.values()) if isinstance(params, dict) else params, max_grad_norm)
    for name, m in (grad_mask or {}).items():
        p = params[name]
        if p.grad is not None:
            p.grad.mul_(m.to(p.grad.device, p.grad.dtype))
    opt.step()


def optimizer(params, lr: float, weight_decay: float, total_steps: int | None = None):
    """(AdamW over ``params`` at ``lr`` with ``weight_decay``, its schedule): with ``total_steps`` a linear decay to 0
    over them (stage 1, the fine-tune), else None. Every trained thing in asru_lens builds its optimiser here."""
    opt = torch.optim.AdamW(list(params.values()) if isinstance(params, dict) else list(params), lr=lr,
                            weight_decay=weight_decay)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total_steps))
             if total_steps else None)
    return opt, sched


def draw(items: list, n: int, rng) -> list:
    """``n`` items drawn at random (with replacement only when there are fewer than ``n``)."""
    return [items[i] for i in rng.choice(len(items), n, replace=len(items) < n)]


def train(lens, loss, steps: int, *, lr: float, weight_decay: float, max_grad_norm: float | None = 1.0,
          what: str | None = None, names=None, mask: dict | None = None, lora: LoRA = LoRA(),
          checkpointing: bool = False, schedule: bool = False, done=None, after_step=None,
          desc: str = "train", progress: bool = True, log: dict | None = None) -> dict:
    """The one training loop: ``steps`` optimiser steps on ``loss`` over the parameters ``trainable(lens, what,
    ...)`` chooses; ``lens.model`` is trained in place. Returns the log: ``{"loss_<name>": [...]}`` per named loss
    (``{"loss": [...]}`` for a plain tensor), added to ``log`` when given.

    ``loss(model, step)`` returns the loss of step ``step`` (0-based): a tensor, ``{name: tensor}`` (summed into
    one step), or a list of those, of ``(losses, grad_mask)`` pairs or of functions returning either, each its own
    optimiser step in order (MMUnlearner's forget step through its mask, then its retain step on the updated
    model). ``model`` is the one to call (the peft
    model under LoRA). ``schedule``: the learning rate decays linearly to 0. ``done(log)`` True ends the loop
    early; ``after_step(step, model)`` runs after each step (1-based; the relearning attack reads there)."""
    log = {} if log is None else log
    with trainable(lens, what, names=names, mask=mask, lora=lora, checkpointing=checkpointing) as (model, params):
        opt, sched = optimizer(params, lr, weight_decay, steps if schedule else None)
        bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
        for step in bar:
            out = loss(model, step)
            for update in (out if isinstance(out, list) else [out]):
                update = update() if callable(update) else update   # a later step's loss sees the earlier update
                losses, grad_mask = update if isinstance(update, tuple) else (update, None)
                losses = losses if isinstance(losses, dict) else {"": losses}
                optimise(opt, params, sum(losses.values()), max_grad_norm, grad_mask)
                for name, value in losses.items():
                    log.setdefault(f"loss_{name}" if name else "loss", []).append(round(value.item(), 5))
            if sched is not None:
                sched.step()
            bar.set_postfix({k[5:] or "loss": f"{v[-1]:.4f}" for k, v in log.items()
                             if k.startswith("loss") and isinstance(v, list) and v})
            if after_step is not None:
                after_step(step + 1, model)
            if done is not None and done(log):
                break
    return log


# -- answer log-probs -------------------------------------------------------------------------------------------
def answer_tokens(lens, texts: list[str], eos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and mask of ``texts`` (answers to teacher-force after a prompt), EOS appended when
    ``eos``; the tokenizer is left padding on the left, as prompts need."""
    end = lens.tokenizer.convert_ids_to_tokens(lens.model.generation_config.eos_token_id) if eos else ""
    lens.tokenizer.padding_side = "right"
    try:
        out = lens.tokenizer([(t or " ") + end for t in texts], add_special_tokens=False, return_tensors="pt",
                             padding=True)
    finally:
        lens.tokenizer.padding_side = "left"
    return out["input_ids"].to(lens.device), out["attention_mask"].to(lens.device)


def with_answers(enc, ids: torch.Tensor) -> dict:
    """The prompt batch ``enc`` with the completion ``ids`` appended (attention on, no image tokens)."""
    extra = {}
    for k, v in enc.items():
        if k == "input_ids":
            extra[k] = torch.cat([v, ids], 1)
        elif k == "attention_mask":
            extra[k] = torch.cat([v, torch.ones_like(ids)], 1)
        elif torch.is_tensor(v) and v.dim() == 2 and v.shape == enc["input_ids"].shape:  # e.g. mm_token_type_ids
            extra[k] = torch.cat([v, torch.zeros_like(ids)], 1)
        else:
            extra[k] = v
    return extra


def completion_logprobs(model, enc, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, T, V) log-softmax over the vocabulary at each completion position of ``ids`` after the prompt batch
    ``enc``, logits divided by ``temperature`` (as TRL and verl do)."""
    logits = model(**with_answers(enc, ids), logits_to_keep=ids.shape[1] + 1).logits[:, :-1].float() / temperature
    return logits.log_softmax(-1)


def token_logps(model, enc, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities of completion ``ids`` after the prompt batch ``enc``, shape ``ids.shape``."""
    return torch.gather(completion_logprobs(model, enc, ids, temperature), 2, ids.unsqueeze(-1)).squeeze(-1)


def answer_batch(lens, items, answers: list[str]):
    """(prompt batch, answer ids ending in EOS, mask) for teacher forcing ``answers`` after ``items``' prompts."""
    enc = lens.encode([q.question for q in items], [q.image for q in items])
    return (enc, *answer_tokens(lens, answers, eos=True))


def answer_logprobs(model, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-token log-probs of the answer (B, T), its mask, the full (B, T, V) log-distribution) for an
    ``answer_batch``."""
    enc, ids, mask = batch
    logp = completion_logprobs(model, enc, ids)
    return torch.gather(logp, 2, ids.unsqueeze(-1)).squeeze(-1), mask, logp


def seq_nll(lp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean negative log-likelihood of the answer tokens."""
    mask = mask.to(lp.dtype)
    return -(lp * mask).sum(1) / mask.sum(1).clamp(min=1)


def answer_nll(model, lens, items, answers: list[str]) -> torch.Tensor:
    """Mean answer NLL of ``answers`` after ``items``' prompts (the loss of every teaching step)."""
    lp, mask, _ = answer_logprobs(model, answer_batch(lens, items, answers))
    return seq_nll(lp, mask).mean()


# -- several processes (torchrun, accelerate launch) ------------------------------------------------------------
def launched() -> tuple[int, int]:
    """(rank, number of processes) as torchrun and accelerate launch set them (``RANK``, ``WORLD_SIZE``); (0, 1)
    for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def weights_digest(params: dict) -> str:
    """sha256 of the trainable tensors: equal digests across processes mean equal weights, bit for bit."""
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(params[name].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()
