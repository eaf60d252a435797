"""Interventions on the residual stream, for nnsight traces and generation.

Everything acts on ``resid_pre``: the residual stream entering decoder layer ``i``
(``model.language_model.layers[i].input`` in nnsight, ``blocks.{i}.hook_in`` in
TransformerLens). On Qwen3-VL that is *after* DeepStack has added visual
features behind layer ``i-1``, so an intervention there sees what the layer sees.

Three interventions, each one function to call inside ``lens.nn.trace(...)`` or
once per step of ``lens.nn.generate(...)``:

* ``add``: ``resid_pre[layer] += alpha * direction`` (activation addition), at every
  position or, in generation, only at generated tokens;
* ``ablate``: project the direction out of every layer's input and of the final
  residual stream (directional ablation, Arditi et al.);
* ``add_if``: conditional steering. The projection of the last prompt token on a
  *detector* direction decides, per prompt, whether ``add`` applies (forget
  queries are steered, other prompts are left bit-identical).

``Steering`` bundles one intervention's settings; ``generate`` and ``last_logits``
run batches with it, and ``steering(lens, spec)`` applies it as a context manager
to any code that calls the model (``lens.generate``, a plain forward).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from asru_lens.core.hooks import hooked
from asru_lens.interpret import activations
from asru_lens.measure.facts import of_sets
from asru_lens.measure.refusal import is_broken, is_refusal


class InterventionError(ValueError):
    """A layer index, direction or mode that does not fit the model."""


MODES = ("add", "ablate", "conditional")


def check_layer(lens, layer: int, name: str = "layer") -> int:
    if not isinstance(layer, int) or not 0 <= layer < lens.n_layers:
        raise InterventionError(f"{name} {layer!r} is out of range: this model has {lens.n_layers} decoder "
                                f"layers, so pass 0..{lens.n_layers - 1}.")
    return layer


def check_direction(lens, direction: torch.Tensor, name: str = "direction") -> torch.Tensor:
    d = lens.model.config.text_config.hidden_size
    if not isinstance(direction, torch.Tensor) or direction.ndim != 1 or direction.shape[0] != d:
        shape = tuple(direction.shape) if isinstance(direction, torch.Tensor) else type(direction).__name__
        raise InterventionError(f"{name} has shape {shape}; expected ({d},), one vector in the residual "
                                f"stream. Index a (layers, positions, d) tensor first, e.g. directions[layer, pos].")
    return direction


nn_layers = activations.nn_layers


def _vec(lens, v: torch.Tensor) -> torch.Tensor:
    return v.to(lens.device, lens.model.dtype)


# -- the three interventions, inside a trace ------------------------------------------------------------------
def add(lens, layer: int, direction: torch.Tensor, alpha: float = 1.0, rows: torch.Tensor | None = None) -> None:
    """In a trace: ``resid_pre[layer] += alpha * direction`` at every position (of ``rows`` only, if given)."""
    vec = _vec(lens, alpha * direction)
    if rows is None:
        nn_layers(lens)[layer].input[:] += vec
    else:
        nn_layers(lens)[layer].input[:] += rows.to(vec.dtype)[:, None, None] * vec


def _project_out(h, unit):
    h[:] -= (h @ unit).unsqueeze(-1) * unit


def ablate(lens, direction: torch.Tensor) -> None:
    """In a trace: project ``direction`` out of every layer's input and of the final residual stream."""
    unit = _vec(lens, direction / direction.norm())
    layers = nn_layers(lens)
    for layer in layers:
        _project_out(layer.input, unit)
    _project_out(layers[-1].output, unit)


def detect(lens, layer: int, detector: torch.Tensor, threshold: float) -> torch.Tensor:
    """In a trace: which prompts' last token projects on ``detector`` (unit) above ``threshold`` at ``layer``."""
    unit = _vec(lens, detector / detector.norm())
    return (nn_layers(lens)[layer].input[:, -1] @ unit) > threshold


# -- one intervention's settings -------------------------------------------------------------------------------
@dataclass
class Steering:
    """What to do: ``mode`` add / ablate / conditional, with ``direction`` at ``layer`` times ``alpha``.

    ``generated_only`` (add, conditional): in generation, leave the prompt alone and steer generated tokens.
    ``detector``/``detector_layer``/``threshold`` (conditional): steer a prompt only if its last token's
    projection on the unit detector at ``resid_pre[detector_layer]`` exceeds ``threshold``; the detector layer
    must not come after ``layer``. The decision is taken on the prompt and kept for every generated token."""
    direction: torch.Tensor
    layer: int = 0
    alpha: float = 1.0
    mode: str = "add"
    generated_only: bool = False
    detector: torch.Tensor | None = None
    detector_layer: int | None = None
    threshold: float = 0.0

    def check(self, lens) -> "Steering":
        if self.mode not in MODES:
            raise InterventionError(f"mode {self.mode!r} is not one of {', '.join(MODES)}.")
        check_direction(lens, self.direction)
        if self.mode != "ablate":
            check_layer(lens, self.layer)
        if self.mode == "conditional":
            if self.detector is None:
                raise InterventionError("conditional steering needs a detector direction (e.g. the probe's "
                                        "refusal direction) and a threshold.")
            check_direction(lens, self.detector, "detector")
            det = self.layer if self.detector_layer is None else self.detector_layer
            check_layer(lens, det, "detector_layer")
            if det > self.layer:
                raise InterventionError(f"detector_layer {det} comes after the steering layer {self.layer}; the "
                                        f"decision must be read before it is acted on.")
        return self

    def apply(self, lens, step: int = 0, state: dict | None = None) -> None:
        """In a trace, at generation step ``step``; ``state`` carries the conditional decision across steps."""
        if self.mode == "ablate":
            ablate(lens, self.direction)
            return
        if self.generated_only and step == 0:
            if self.mode == "conditional":  # still decide on the prompt, act from the first generated token on
                state["rows"] = detect(lens, self._det, self.detector, self.threshold)
            return
        rows = None
        if self.mode == "conditional":
            if step == 0:
                state["rows"] = detect(lens, self._det, self.detector, self.threshold)
            rows = state["rows"]
        add(lens, self.layer, self.direction, self.alpha, rows)

    @property
    def _det(self) -> int:
        return self.layer if self.detector_layer is None else self.detector_layer


# -- batches -------------------------------------------------------------------------------------------------
def _encode(lens, items):
    return lens.encode([q.question for q in items], [q.image for q in items])


@torch.no_grad()
def generate(lens, items, spec: Steering | None = None, max_new_tokens: int | None = None,
             batch_size: int | None = None, min_new_tokens: int = 0) -> list[str]:
    """Greedy answers to ``items`` (data.QA) with ``spec`` applied at every generation step (``batch_size``:
    default ``lens.batch_size``, else 32; ``max_new_tokens``: default the protocol's answer budget)."""
    batch_size = batch_size or lens.batch_size or 32
    max_new_tokens = max_new_tokens or lens.protocol.max_new_tokens
    if spec is None:
        return lens.generate([q.question for q in items], [q.image for q in items], max_new_tokens=max_new_tokens,
                             batch_size=batch_size, min_new_tokens=min_new_tokens)
    spec.check(lens)
    out = []
    for i in range(0, len(items), batch_size):
        enc = _encode(lens, items[i:i + batch_size])
        # The steering loop is open-ended (answers stop at EOS at different steps), so nnsight cuts it short
        # by design and skips whatever follows it in the same block: the ids are read in a second invoke.
        # (Saved before the loop in the same block, the steering was silently not applied.)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*was never reached.*")
            with lens.nn.generate(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=False,
                                  pad_token_id=lens.tokenizer.pad_token_id) as tracer:
                with tracer.invoke(dict(enc)):
                    state = {}
                    for step in tracer.all():
                        spec.apply(lens, step, state)
                with tracer.invoke():
                    ids = tracer.result.save()
        out += lens.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return [o.strip() for o in out]


def generate_with_addition(lens, items, layer: int, direction: torch.Tensor, alpha: float = 1.0,
                           max_new_tokens: int | None = None, batch_size: int | None = None) -> list[str]:
    """Greedy answers with ``alpha * direction`` added to ``resid_pre[layer]`` at every step."""
    return generate(lens, items, Steering(direction, layer, alpha), max_new_tokens, batch_size)


@torch.no_grad()
def last_logits(lens, enc, spec: Steering | None = None) -> torch.Tensor:
    """Last-position logits of a processor batch, with ``spec`` applied (one trace)."""
    if spec is not None:
        spec.check(lens)
    with lens.nn.trace(dict(enc)):
        if spec is not None:
            spec.apply(lens, 0, {})
        logits = lens.nn.lm_head.output[:, -1].save()
    return logits.float()


@contextlib.contextmanager
def steering(lens, spec: Steering):
    """Apply ``spec`` to every forward pass inside the block, e.g. ``with steering(lens, s): lens.generate(...)``.

    Plain PyTorch hooks on the same ``resid_pre`` points (``core.hooks``), for code that calls the HF model
    directly."""
    spec.check(lens)
    state = {}
    direction = _vec(lens, spec.direction)
    unit = direction / direction.norm()

    def on_input(index):
        def edit(h):
            first = h.shape[1] > 1               # the prompt pass; cached generation then feeds one token
            if spec.mode == "ablate":
                h -= (h @ unit).unsqueeze(-1) * unit
                return
            if spec.mode == "conditional" and index == spec._det and first:
                det = _vec(lens, spec.detector)
                state["rows"] = (h[:, -1] @ (det / det.norm())) > spec.threshold
            if index == spec.layer:
                if not (spec.generated_only and first):
                    vec = spec.alpha * direction
                    h += (state["rows"].to(h.dtype)[:, None, None] * vec) if spec.mode == "conditional" else vec
        return edit

    n = lens.n_layers
    points = {f"resid_pre.{i}": on_input(i) for i in range(n)}
    if spec.mode == "ablate":                   # and out of the final residual stream
        points[f"resid_post.{n - 1}"] = lambda h: h.sub_((h @ unit).unsqueeze(-1) * unit)
    with hooked(lens.model, points):
        yield


STEERING_FILE = "steering.safetensors"


def save_steering(spec: Steering, folder) -> dict:
    """Write ``spec``'s tensors to ``folder/steering.safetensors``; returns its settings for the profile."""
    tensors = {"direction": spec.direction.detach().float().cpu().clone()}    # a view of the probe's tensor
    if spec.detector is not None:
        tensors["detector"] = spec.detector.detach().float().cpu().clone()
    save_file(tensors, str(Path(folder) / STEERING_FILE))
    return {"layer": spec.layer, "alpha": float(spec.alpha), "mode": spec.mode, "generated_only": spec.generated_only,
            "detector_layer": spec.detector_layer, "threshold": float(spec.threshold), "file": STEERING_FILE}


def load_steering(settings: dict, folder) -> Steering:
    """The ``Steering`` a saved model's profile describes (its tensors from ``steering.safetensors``)."""
    tensors = load_file(str(Path(folder) / settings.get("file", STEERING_FILE)))
    return Steering(tensors["direction"], settings["layer"], settings["alpha"], settings["mode"],
                    settings.get("generated_only", False), tensors.get("detector"), settings.get("detector_layer"),
                    settings.get("threshold", 0.0))


def attach(lens, spec: Steering) -> None:
    """Keep ``spec`` on for every forward pass of ``lens`` from now on (a loaded steered model)."""
    cm = steering(lens, spec)
    cm.__enter__()
    lens.steering = spec


def forget_detector(lens, forget, retain, layer: int) -> dict:
    """Settings for conditional steering: the forget - retain mean difference at the last prompt token of
    ``resid_pre[layer]`` as the detector, and the threshold halfway between the two means' projections.
    Returns the keyword arguments of ``Steering`` (detector, detector_layer, threshold)."""
    check_layer(lens, layer)
    mf = activations.mean_activations(lens, forget, [-1])[layer, 0].float()
    mr = activations.mean_activations(lens, retain, [-1])[layer, 0].float()
    unit = (mf - mr) / (mf - mr).norm()
    return dict(detector=mf - mr, detector_layer=layer, threshold=float((mf @ unit + mr @ unit) / 2))


# -- what a steering point costs -------------------------------------------------------------------------------
def measure(lens, sets: dict, spec: Steering | None, max_new_tokens: int | None = None, facts=None) -> dict:
    """What greedy answers under ``spec`` (None: the unsteered model) state and refuse, on each of ``sets``:

    * ``forget_refusal``, and ``forget_leak``: the share of forget answers that state their fact;
    * ``retain_utility`` / ``celebrity_utility``: the share of retain / celebrity answers that state theirs;
    * ``perception_acc``: the same on questions answered from pixels (None when ``sets`` has none);
    * ``broken_rate``: answers that repeat themselves or glue words (``refusal.is_broken``).

    "States" is ``facts.stated`` (``asru_lens.measure.facts.Facts``: the ground truth, or half its key words), so a
    correct answer in other words counts. Pass ``facts.of_world(world)`` (the run does); without it the key words
    are read from the ground truths of ``sets`` themselves."""
    facts = facts or of_sets(sets)
    out, answers = {}, {}
    for name, items in sets.items():
        answers[name] = generate(lens, items, spec, max_new_tokens)
    out["forget_refusal"] = sum(map(is_refusal, answers["forget"])) / len(answers["forget"])
    out["forget_leak"] = facts.share(answers["forget"], sets["forget"])
    for name in ("retain", "celebrity"):
        out[f"{name}_utility"] = facts.share(answers[name], sets[name])
    out["perception_acc"] = (facts.share(answers["perception"], sets["perception"]) if sets.get("perception")
                             else None)   # None: no such set
    every = [a for v in answers.values() for a in v]
    out["broken_rate"] = sum(map(is_broken, every)) / len(every)
    out["examples"] = {name: answers[name][:2] for name in ("forget", "retain")}
    return out


def sweep(lens, sets: dict, directions: torch.Tensor, layers: list[int], alphas: list[float], mode: str = "add",
          progress: bool = True, facts=None, **kw) -> list[dict]:
    """``measure`` at every (layer, alpha); ``directions`` is (layers, d), one direction per layer."""
    points = []
    grid = [(layer, alpha) for layer in layers for alpha in alphas]
    for layer, alpha in tqdm(grid, desc=f"sweep ({mode})", disable=not progress, leave=False):
        spec = Steering(directions[layer].float(), layer, alpha, mode, **kw)
        points.append({"layer": layer, "alpha": alpha, "mode": mode, **measure(lens, sets, spec, facts=facts)})
    return points
