"""steer: add the probe's refusal direction at inference (activation addition), trained nothing.

Its strength comes from a sweep over ``budget.steer_alphas`` at the probe's layer: the gentlest push that still
refuses at least half the forget questions, the most retain answers kept. A saved steered model carries its
steering in ``asru_lens.json`` (``Lens.save``), and ``asru_lens.load`` puts it back on.
"""
from __future__ import annotations

from asru_lens.core.sets import eval_sets
from asru_lens.interpret import steer
from asru_lens.methods import register


def sweep(ctx) -> tuple[list[dict], dict]:
    """(every sweep point, the chosen one) on the forget/retain/celebrity sets, made once per context."""
    def make():
        p = ctx.probe
        sets = eval_sets(ctx.world, ctx.forget_split, 24, ctx.seed)
        directions = p.directions[:, p.selection.position]
        points = steer.sweep(ctx.lens, {k: v for k, v in sets.items() if k != "test"}, directions,
                             [p.selection.layer], list(ctx.budget.steer_alphas), progress=False, facts=ctx.facts)
        ok = [q for q in points if q["forget_refusal"] >= 0.5] or points
        return points, max(ok, key=lambda q: q["retain_utility"])
    return ctx._once("steer_sweep", make)


@register("steer", paper=True, tuned=False)
def steer_row(ctx) -> dict:
    """Activation addition along the refusal direction at the probe's layer (strength from the sweep)."""
    p = ctx.probe
    _, point = sweep(ctx)
    layer = p.selection.layer
    spec = steer.Steering(p.directions[layer, p.selection.position], layer, point["alpha"])
    return {"steering": spec, "point": {k: v for k, v in point.items() if k != "examples"}}
