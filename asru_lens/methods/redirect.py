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

Only ``down_proj`` changes, and a decoder layer adds ``down_proj(a)`` to the
residual stream, with ``a`` (the input of ``down_proj``) computed before it. So

    h(W) = h_frozen + a @ (W - W0).T      exactly, for every W,

and both losses depend on ``a @ (W - W0).T`` alone: stage 1 is a problem on one
cached vector per prompt. One forward pass up to the layer gives ``a``
(``redirect_inputs``); every step after that is a matrix product. Gradients,
optimiser and plan are those of the full forward pass; only the order of float
additions differs (measured on the organism: weights within 1e-6). The inputs
can be shared by runs that start from the same weights (``asru-lens run``'s
learning-rate grid computes them once).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from asru_lens.core.hooks import capture
from asru_lens.core.training import check_positive, train
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
    inference_batch_size: int = 16       # prompts per forward pass when the inputs are cached (no gradient)

    def __post_init__(self):
        check_positive(self, ("epochs", "batch_size", "n_retain", "inference_batch_size"), ("lr", "c"),
                       ("weight_decay",))


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
    redirected_module(lens, layer)                  # checks the layer
    seen = capture(lens.model, enc, [f"mlp_post.{layer - 1}", f"resid_post.{layer - 1}"])
    return seen[f"resid_post.{layer - 1}"][:, -1], seen[f"mlp_post.{layer - 1}"][:, -1]


@torch.no_grad()
def redirect_inputs(lens, items: list, layer: int, batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """``a`` for every prompt of ``items`` as the model is now: the input of the ``down_proj`` that writes
    ``resid_pre[layer]``, at the last prompt token. Row ``i`` is ``items[i]``."""
    acts = []
    for i in tqdm(range(0, len(items), batch_size), desc="stage 1: inputs", leave=False, disable=not progress):
        chunk = items[i:i + batch_size]
        _, a = last_token_state(lens, lens.encode([q.question for q in chunk], [q.image for q in chunk]), layer)
        acts.append(a)
    return torch.cat(acts)


def redirect(lens, direction: torch.Tensor, layer: int, forget: list, retain: list,
             cfg: RedirectConfig = RedirectConfig(), progress: bool = True, inputs: torch.Tensor | None = None) -> dict:
    """Train ``layers[layer-1].mlp.down_proj`` in place so that forget queries move by ``cfg.c * direction``
    at ``resid_pre[layer]`` and retain queries stay. ``forget``/``retain`` are lists of ``data.QA``.

    ``inputs``: ``redirect_inputs(lens, forget + retain, layer)`` computed before, at the weights the model holds
    now (else it is computed here).

    Returns the log: per step the loss, which set it was, and the final mean shift along the unit direction
    for forget and retain prompts (how far each set moved)."""
    if not forget or not retain:
        raise ValueError(f"redirect needs forget and retain prompts; got {len(forget)} forget and {len(retain)} "
                         f"retain.")
    v = check_direction(lens, direction).to(lens.device, torch.float32)
    down = redirected_module(lens, layer)
    w0 = down.weight.detach().clone()
    name = f"model.language_model.layers.{layer - 1}.mlp.down_proj.weight"
    a_all = inputs if inputs is not None else redirect_inputs(lens, forget + retain, layer, cfg.inference_batch_size,
                                                              progress)
    if len(a_all) != len(forget) + len(retain):
        raise ValueError(f"inputs hold {len(a_all)} prompts, but there are {len(forget)} forget and {len(retain)} "
                         f"retain ones; compute them with redirect_inputs(lens, forget + retain, layer).")
    rows = {"forget": range(len(forget)), "retain": range(len(forget), len(forget) + len(retain))}

    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    batches = lambda kind: [[rows[kind][j] for j in idx] for idx in np.array_split(  # noqa: E731
        rng.permutation(len(rows[kind])), math.ceil(len(rows[kind]) / cfg.batch_size))]
    every = max(1, len(retain) // len(forget))
    plan = []                                   # ("retain" | "forget", rows of the inputs)
    forget_queue: list = []
    for _ in range(cfg.epochs):
        for i, b in enumerate(batches("retain"), 1):
            plan.append(("retain", b))
            if i % every == 0:
                forget_queue = forget_queue or batches("forget")
                plan.append(("forget", forget_queue.pop()))

    log = {"set": [kind for kind, _ in plan]}

    def loss(_, step):
        kind, batch = plan[step]
        idx = torch.tensor(batch, device=a_all.device)
        moved = (a_all[idx] @ (down.weight - w0).T).float()      # h - h_frozen, with gradient
        target = cfg.c * v if kind == "forget" else torch.zeros_like(v)
        mse = F.mse_loss(moved, target.expand_as(moved))
        return {kind: mse if kind == "forget" else cfg.alpha * mse}

    train(lens, loss, len(plan), lr=cfg.lr, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
          what="names", names=[name], schedule=True, desc="stage 1: redirect", progress=progress, log=log)
    log["shift"] = {kind: moved_along(a_all[list(r)], down, w0, v) for kind, r in rows.items()}
    return log


@torch.no_grad()
def moved_along(a: torch.Tensor, down: torch.nn.Linear, w0: torch.Tensor, direction: torch.Tensor) -> float:
    """Mean movement along the unit ``direction`` of the prompts whose ``down_proj`` inputs are ``a``, since the
    weight was ``w0``: ``a @ (W - W0).T`` is exactly what the weight change added to the residual stream."""
    unit = (direction / direction.norm()).to(a.device, torch.float32)
    return float(((a @ (down.weight - w0).T).float() @ unit).mean())


@torch.no_grad()
def shift(lens, items: list, layer: int, direction: torch.Tensor, w0: torch.Tensor, batch_size: int = 32) -> float:
    """Mean movement of ``resid_pre[layer]`` (last prompt token) along the unit ``direction`` since the
    ``down_proj`` weight was ``w0``."""
    return moved_along(redirect_inputs(lens, items, layer, batch_size), redirected_module(lens, layer), w0, direction)
