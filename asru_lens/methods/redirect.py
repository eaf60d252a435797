"""ASRU stage 1: activation redirection, distilled into one MLP's weights.

The probe finds a refusal direction ``v`` at ``resid_pre[layer]``. That point of
the residual stream is written last by decoder layer ``layer - 1``, whose
``mlp.down_proj`` is the only thing trained here (full weight, no LoRA). At the
last prompt token, against the frozen model:

    forget:  MSE(h, h_frozen + c * v)        push forget queries onto the refusal side
    retain:  alpha * MSE(h, h_frozen)        leave retain queries where they were

One forget step runs after every ``len(retain) // len(forget)`` retain steps, as
in the authors' code; AdamW with a linear schedule, ``epochs`` passes over the
retain set (the forget set cycles).

``h_frozen`` needs no second model: only ``down_proj`` changes, and a decoder
layer adds ``down_proj(a)`` to the residual stream, so
``h_frozen = h - a @ (W - W0).T`` exactly, with ``a`` the input of ``down_proj``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from asru_lens.core.training import check_positive, optimise, trainable
from asru_lens.interpret.steer import check_direction, check_layer


@dataclass
class RedirectConfig:
    """Defaults are the authors' (shared notes), except ``n_retain`` which sizes the retain data."""
    c: float = 3.0               # how far along v the forget activations are pushed
    alpha: float = 1.0           # weight of the retain loss
    lr: float = 1e-4
    epochs: int = 3
    batch_size: int = 2
    weight_decay: float = 0.0
    max_grad_norm: float | None = None   # the authors do not clip
    n_retain: int = 720                  # retain questions sampled for stage 1
    seed: int = 42

    def __post_init__(self):
        check_positive(self, ("epochs", "batch_size", "n_retain"), ("lr", "c"))


class _Stop(Exception):
    """Raised by the capture hook: nothing after the redirected layer is needed."""


def redirected_module(lens, layer: int) -> torch.nn.Linear:
    """``layers[layer - 1].mlp.down_proj``: the weight that writes ``resid_pre[layer]``."""
    check_layer(lens, layer)
    if layer < 1:
        raise ValueError(f"layer={layer}: resid_pre[0] is the embedding, which no MLP writes; redirect at a "
                         f"layer >= 1 (the probe's selected layer).")
    return lens.layers[layer - 1].mlp.down_proj


def last_token_state(lens, enc, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``resid_pre[layer]`` at the last prompt token, with gradient, and the ``down_proj`` input there.

    The forward pass stops right after decoder layer ``layer - 1``."""
    block, down = lens.layers[layer - 1], redirected_module(lens, layer)
    seen = {}
    h_down = down.register_forward_hook(lambda m, args, out: seen.__setitem__("a", args[0][:, -1]))

    def grab(module, args, out):
        seen["h"] = (out[0] if isinstance(out, tuple) else out)[:, -1]
        raise _Stop

    h_block = block.register_forward_hook(grab)
    try:
        lens.model(**enc)
    except _Stop:
        pass
    finally:
        h_down.remove()
        h_block.remove()
    return seen["h"], seen["a"]


def redirect(lens, direction: torch.Tensor, layer: int, forget: list, retain: list,
             cfg: RedirectConfig = RedirectConfig(), progress: bool = True) -> dict:
    """Train ``layers[layer-1].mlp.down_proj`` in place so that forget queries move by ``cfg.c * direction``
    at ``resid_pre[layer]`` and retain queries stay. ``forget``/``retain`` are lists of ``data.QA``.

    Returns the log: per step the loss, which set it was, and the final mean shift along the unit direction
    for forget and retain prompts (how far each set moved)."""
    if not forget or not retain:
        raise ValueError(f"redirect needs forget and retain prompts; got {len(forget)} forget and {len(retain)} "
                         f"retain.")
    v = check_direction(lens, direction).to(lens.device, torch.float32)
    down = redirected_module(lens, layer)
    w0 = down.weight.detach().clone()
    name = f"model.language_model.layers.{layer - 1}.mlp.down_proj.weight"

    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    batches = lambda items: [[items[j] for j in idx] for idx in np.array_split(  # noqa: E731
        rng.permutation(len(items)), math.ceil(len(items) / cfg.batch_size))]
    every = max(1, len(retain) // len(forget))
    plan = []                                   # ("retain" | "forget", batch)
    forget_queue: list = []
    for _ in range(cfg.epochs):
        for i, b in enumerate(batches(retain), 1):
            plan.append(("retain", b))
            if i % every == 0:
                forget_queue = forget_queue or batches(forget)
                plan.append(("forget", forget_queue.pop()))

    log = {"step": [], "set": [], "loss": []}
    last = {"forget": float("nan"), "retain": float("nan")}
    with trainable(lens, "names", names=[name]) as (_, params):
        opt = torch.optim.AdamW([down.weight], lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / len(plan)))
        bar = tqdm(plan, desc="stage 1: redirect", disable=not progress, leave=False)
        for step, (kind, batch) in enumerate(bar):
            enc = lens.encode([q.question for q in batch], [q.image for q in batch])
            h, a = last_token_state(lens, enc, layer)
            with torch.no_grad():
                h_frozen = h - a @ (down.weight - w0).T
            if kind == "forget":
                loss = F.mse_loss(h.float(), h_frozen.float() + cfg.c * v)
            else:
                loss = cfg.alpha * F.mse_loss(h.float(), h_frozen.float())
            optimise(opt, params, loss, cfg.max_grad_norm)
            sched.step()
            last[kind] = loss.item()
            log["step"].append(step)
            log["set"].append(kind)
            log["loss"].append(last[kind])
            bar.set_postfix(forget=f"{last['forget']:.4f}", retain=f"{last['retain']:.4f}")
    log["shift"] = {name: shift(lens, items, layer, v, w0) for name, items in (("forget", forget),
                                                                                ("retain", retain))}
    return log


@torch.no_grad()
def shift(lens, items: list, layer: int, direction: torch.Tensor, w0: torch.Tensor, batch_size: int = 32) -> float:
    """Mean movement of ``resid_pre[layer]`` (last prompt token) along the unit ``direction`` since the
    ``down_proj`` weight was ``w0``."""
    unit = direction / direction.norm()
    down, moved = redirected_module(lens, layer), []
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        h, a = last_token_state(lens, lens.encode([q.question for q in chunk], [q.image for q in chunk]), layer)
        moved.append(((a @ (down.weight - w0).T).float() @ unit).cpu())
    return float(torch.cat(moved).mean())
