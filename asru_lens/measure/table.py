"""One row of ``asru-lens run``'s table: a method's evaluation and, with the residue on, what the attacks and the
probes still find, on the weights the method left. The run and its Ray workers (``asru_lens.parallel``) both
measure through here."""
from __future__ import annotations

from asru_lens.measure import evaluate
from asru_lens.measure import residue as residue_mod
from asru_lens.methods.context import inference


def residue_inputs(ctx) -> tuple:
    """What every row's residue reads: (its config, the vanilla model's held-out leak, vanilla's refusal
    direction for the ablation attack), measured once on the vanilla model."""
    cfg = ctx.budget
    rcfg = residue_mod.ResidueConfig(forget=cfg.forget, steps=cfg.residue_steps, seed=cfg.seed, **residue_mod.RUN)
    return rcfg, residue_mod.vanilla_leak(ctx.lens, ctx.world, rcfg), ctx.probe.direction.float().cpu()


def measure(ctx, name: str, log: dict, judge, residue_in: tuple | None) -> dict:
    """One row of the table, on the weights the method left (with its steering on, for ``steer``): the
    evaluation (``evaluate.evaluate``) and, with ``residue_in``, what the relearning attack and the probes still
    find. {"metrics", "answers", "residue"}."""
    cfg = ctx.budget
    with inference(ctx.lens, log):
        r = evaluate.evaluate(ctx.lens, ctx.world, cfg.forget, judge=judge, reference=ctx.reference,
                              progress=False, items=ctx.eval_items)
        residue = None
        if residue_in is not None:
            rcfg, vanilla_leak, refusal = residue_in
            residue = residue_mod.residue(ctx.lens, ctx.world, rcfg, None if name == "vanilla" else vanilla_leak,
                                          progress=False, cls=False, refusal_direction=refusal)
            r["metrics"].update(residue_mod.columns(residue, 30 if 30 in cfg.residue_steps else cfg.residue_steps[-1]))
    return {"metrics": r["metrics"], "answers": r["answers"], "residue": residue}
