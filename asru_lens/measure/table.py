"""One row of ``asru-lens run``'s table: a method's evaluation, its privacy read against the oracle and, with the
residue on, what the attacks and the probes still find, on the weights the method left. The run and its Ray
workers (``asru_lens.parallel``) both measure through here."""
from __future__ import annotations

import contextlib

from asru_lens.measure import evaluate, privacy
from asru_lens.measure import residue as residue_mod
from asru_lens.methods.context import inference, restore


@contextlib.contextmanager
def at_oracle(ctx):
    """Inside the block the model holds the oracle's weights (``ctx.oracle``); the vanilla ones after it."""
    restore(ctx.lens, ctx.oracle)
    try:
        yield
    finally:
        restore(ctx.lens, ctx.vanilla_weights)


def residue_inputs(ctx) -> tuple:
    """What every row's residue reads: (its config, the vanilla model's held-out leak, vanilla's refusal
    direction for the ablation attack, the oracle's relearning curve or None), measured once."""
    cfg = ctx.budget
    rcfg = residue_mod.ResidueConfig(forget=cfg.forget, steps=cfg.residue_steps, seed=cfg.seed, **residue_mod.RUN)
    curve = None
    if ctx.oracle is not None:
        with at_oracle(ctx):
            curve = residue_mod.oracle_curve(ctx.lens, ctx.world, rcfg)
    return rcfg, residue_mod.vanilla_leak(ctx.lens, ctx.world, rcfg), ctx.probe.direction.float().cpu(), curve


def privacy_inputs(ctx) -> dict | None:
    """The oracle's privacy read (``privacy.read`` on its weights, ``ctx.oracle``), which every row's forget
    quality and PrivLeak compare with; None without an oracle. Leaves the model at the vanilla weights."""
    if ctx.oracle is None:
        return None
    with at_oracle(ctx):
        return privacy.read(ctx.lens, ctx.world, ctx.budget.forget)


def measure(ctx, name: str, log: dict, judge, residue_in: tuple | None, privacy_in: dict | None = None) -> dict:
    """One row of the table, on the weights the method left (with its steering on, for ``steer``): the
    evaluation (``evaluate.evaluate``), the privacy read (``privacy.read``; its columns against ``privacy_in``,
    the oracle's) and, with ``residue_in``, what the relearning attack and the probes still find.
    {"metrics", "answers", "privacy", "residue"}."""
    cfg = ctx.budget
    with inference(ctx.lens, log):
        r = evaluate.evaluate(ctx.lens, ctx.world, cfg.forget, judge=judge, reference=ctx.reference,
                              progress=False, items=ctx.eval_items)
        read = privacy.read(ctx.lens, ctx.world, cfg.forget)
        r["metrics"].update(privacy.columns(read, privacy_in))
        residue = None
        if residue_in is not None:
            rcfg, vanilla_leak, refusal, curve = residue_in
            residue = residue_mod.residue(ctx.lens, ctx.world, rcfg, None if name == "vanilla" else vanilla_leak,
                                          progress=False, cls=False, refusal_direction=refusal,
                                          oracle=None if name == "vanilla" else curve)
            r["metrics"].update(residue_mod.columns(residue, 30 if 30 in cfg.residue_steps else cfg.residue_steps[-1]))
    return {"metrics": r["metrics"], "answers": r["answers"], "privacy": read, "residue": residue}
