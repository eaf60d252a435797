"""oracle: the model trained without the forget set (exact unlearning), the row every method aims at.

It trains nothing here: its weights are loaded into the model (``ctx.oracle``, from ``--oracle DIR`` or the
oracle the model folder names, ``asru_lens.core.oracle``), so the same evaluation, attacks and privacy read
measure it as every other row. What it scores is what "never knew" looks like on this table: its relearning
curve is learning from scratch, its forget quality is 1 and its PrivLeak 0 by definition.
"""
from __future__ import annotations

from asru_lens.methods import register
from asru_lens.methods.context import restore
from asru_lens.methods.registry import MethodError


@register("oracle", tuned=False, colour="#000000")
def oracle(ctx) -> dict:
    """The model retrained without the forget set (--oracle DIR; the organism's ships with it)."""
    if ctx.oracle is None:
        raise MethodError("method 'oracle' needs the model trained without the forget set: pass --oracle DIR "
                          "(for a real model, `asru-lens finetune --split retain_90 --out DIR`), or use a model "
                          "whose asru_lens.json names one (the shipped organism's does).")
    restore(ctx.lens, ctx.oracle)
    return {}
