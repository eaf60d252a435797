"""Reading the residual stream: ``resid_pre``, the input of each decoder layer.

``resid_pre[i]`` is ``model.language_model.layers[i].input`` in nnsight and ``blocks.{i}.hook_in`` in
TransformerLens. Qwen3-VL's DeepStack adds visual features to the hidden states *between* the first decoder
layers, so a layer's output is not the next layer's input at image positions, and HF's
``output_hidden_states`` records the outputs before that addition. Layer inputs are what each layer reads.

The probe (directions), steering (the conditional detector) and the residue probes all read activations
through this module, which imports neither of them.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm


def nn_layers(lens):
    """The decoder layers as nnsight envoys."""
    return lens.nn.model.language_model.layers


class ProbeError(ValueError):
    """Prompts or settings the probe cannot use; the message says which and what to do."""


def _require(items: list, name: str) -> list:
    if not items:
        raise ProbeError(f"the {name} is empty: pass at least one prompt (a data.QA with a question and, "
                         f"for image prompts, an image).")
    return items


def batches(lens, items, batch_size: int | None = None, progress: bool = False, desc: str = ""):
    """Processor batches of ``items`` (data.QA), ``batch_size`` at a time (default ``lens.batch_size``, else 32)."""
    batch_size = batch_size or lens.batch_size or 32
    for i in tqdm(range(0, len(items), batch_size), desc=desc, disable=not progress, leave=False):
        chunk = items[i:i + batch_size]
        yield lens.encode([q.question for q in chunk], [q.image for q in chunk])


@torch.no_grad()
def resid_pre(lens, enc, positions: list[int]) -> torch.Tensor:
    """One trace: ``resid_pre`` of every layer at ``positions`` -> (batch, layers, positions, d) float32."""
    saved = []
    with lens.nn.trace(dict(enc)) as tracer:
        for layer in nn_layers(lens):
            saved.append(layer.input[:, positions].clone().save())  # clone: DeepStack edits it in place
        tracer.stop()  # nothing after the last layer's input is needed
    return torch.stack([s.float().cpu() for s in saved], dim=1)


def activations(lens, items, positions: list[int] | None = None, batch_size: int | None = None,
                progress: bool = False, desc: str = "activations") -> torch.Tensor:
    """``resid_pre`` at every layer and post-instruction position: (n, layers, positions, d), float32."""
    positions = positions or lens.post_instruction_positions()
    return torch.cat([resid_pre(lens, enc, positions) for enc in
                      batches(lens, _require(items, desc), batch_size, progress, desc)])


def mean_activations(lens, items, positions: list[int] | None = None, batch_size: int | None = None,
                     progress: bool = False, desc: str = "means") -> torch.Tensor:
    """Mean ``resid_pre`` (layers, positions, d), summed batch by batch in float64."""
    positions = positions or lens.post_instruction_positions()
    total, n = None, 0
    for enc in batches(lens, _require(items, desc), batch_size, progress, desc):
        acts = resid_pre(lens, enc, positions).double()
        total = acts.sum(0) if total is None else total + acts.sum(0)
        n += acts.shape[0]
    return total / n
