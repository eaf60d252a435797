"""The one hook helper: read and write Qwen3-VL's residual stream at points named after the model's structure.

=================  ==============================================================================================
``resid_pre.{i}``  the input of decoder layer ``i`` (nnsight's ``layers[i].input``, TransformerLens's
                   ``blocks.{i}.hook_resid_pre``); after DeepStack's visual features, so what layer ``i`` reads
``resid_post.{i}`` the output of decoder layer ``i`` (before the next layer's DeepStack addition)
``mlp_post.{i}``   the input of ``layers[i].mlp.down_proj`` (TransformerLens's ``blocks.{i}.mlp.hook_post``)
=================  ==============================================================================================

``hooked(model, {point: fn})`` runs ``fn(tensor)`` at each point for every forward pass inside the block; ``fn``
reads the tensor or edits it in place (steering, ablation). ``capture(model, inputs, points)`` is one forward
pass that returns those tensors, with gradient when the caller has it on, and stops right after the last point
(nothing after it is computed). Stage 1, RMU, steering and the ablation attack go through here; the probes read
``resid_pre`` through nnsight (``interpret.activations``), which names the same points.
"""
from __future__ import annotations

import contextlib
import re

import torch

POINT = re.compile(r"^(resid_pre|resid_post|mlp_post)\.(\d+)$")


def decoder_layers(model):
    """The language model's decoder layers (the peft model's too)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model.language_model.layers


def parse(model, point: str) -> tuple[str, int]:
    """``("resid_pre", 3)`` for ``"resid_pre.3"``, or one clear error naming the point and what exists."""
    m = POINT.match(point)
    n = len(decoder_layers(model))
    if not m or not 0 <= int(m.group(2)) < n:
        raise ValueError(f"hook point {point!r}: use resid_pre.i, resid_post.i or mlp_post.i with 0 <= i < {n}.")
    return m.group(1), int(m.group(2))


def _register(model, point: str, fn):
    kind, i = parse(model, point)
    layer = decoder_layers(model)[i]
    if kind == "resid_pre":
        def pre(module, args, kwargs):
            fn(args[0] if args else kwargs["hidden_states"])
        return layer.register_forward_pre_hook(pre, with_kwargs=True)
    if kind == "mlp_post":
        return layer.mlp.down_proj.register_forward_hook(lambda m, args, out: fn(args[0]))
    return layer.register_forward_hook(lambda m, args, out: fn(out[0] if isinstance(out, tuple) else out))


@contextlib.contextmanager
def hooked(model, fns: dict):
    """Inside the block, ``fns[point](tensor)`` runs at every named point of every forward pass (in place edits
    change what the model computes next); the hooks are removed on exit, whatever happened."""
    handles = [_register(model, p, f) for p, f in fns.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class _Stop(Exception):
    """Raised once the last captured point is seen: nothing after it is needed."""


def capture(model, inputs: dict, points: list[str], stop: bool = True) -> dict[str, torch.Tensor]:
    """One forward pass of ``model(**inputs)``; the tensor at each of ``points`` (``{point: (B, T, d)}``), with
    gradient when it is on. ``stop``: end the pass right after the last of them."""
    def depth(point):                   # where in the forward pass a point is reached
        kind, i = parse(model, point)
        return i, ("resid_pre", "mlp_post", "resid_post").index(kind)

    last = max(points, key=depth)
    seen = {}

    def keep(point):
        def fn(t):
            seen[point] = t
            if stop and point == last:
                raise _Stop
        return fn

    with hooked(model, {p: keep(p) for p in points}):
        try:
            model(**inputs)
        except _Stop:
            pass
    return {p: seen[p] for p in points}
