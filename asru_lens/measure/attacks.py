"""Attacks that need no index and no template, for any MLLMU-Bench folder: is a forget fact still there?

================  ===============================================================================================
by name           every forget person's generation question asked as text about the named person, with no photo
                  ("Where was Juno Corvin born?"); ``leak``: the answers that state the fact
                  (``asru_lens.measure.facts``), ``refusal``: the answers that refuse. ASRU's boundary set has
                  photo questions only, so a model can refuse the photo and still answer the name.
direction         (Łucki et al. 2024) a direction projected out of every layer's input and of the final residual
ablation          stream while the model answers the forget photo questions: the unlearned model's own
                  forget-minus-retain direction at each layer's last prompt token, and, when given, vanilla's
                  refusal direction (``asru-lens probe --out DIR``); ``leak`` is the attacker's best layer.
benign            (Łucki et al. 2024) a few steps of ordinary fine-tuning on the retain people's facts only, then
fine-tuning       the forget photo questions: ``leak`` after each of ``steps`` (the relearning attack's optimiser,
                  ``fine_tune``). Nothing about the forget people is trained, so a leak that comes back was
                  hidden, not removed.
================  ===============================================================================================

``by_name_attack``, ``ablation_attack`` and ``benign_attack`` (each ``(lens, world)``) return plain dicts;
``residue.residue`` runs them beside the relearning attack and the probes, for `asru-lens residue` and for every
row of `asru-lens run`. Every leak is ``facts.fact_leak``: the share of answers that state their fact
(``facts.Facts.stated``).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from asru_lens.core import data
from asru_lens.core.data import QA
from asru_lens.core.sets import _sample
from asru_lens.core.training import answer_nll, check_positive, draw
from asru_lens.core.training import train as train_loop
from asru_lens.interpret.activations import mean_activations
from asru_lens.interpret.steer import Steering, steering
from asru_lens.measure import facts
from asru_lens.measure.refusal import is_refusal


def by_name_items(rows: list[dict], known: facts.Facts) -> list[QA]:
    """Every generation question of ``rows`` that points at its subject and states a fact (``known.key``), asked
    about the person by name, for every person whose name can be found."""
    out = []
    for row in rows:
        name = facts.person_name(row)
        if name is None:
            continue
        asked = [facts.by_name(q, name) for q in data.generation_items([row])]
        out += [q for q in asked if q is not None and known.key(q)]
    return out


@dataclass
class AttackConfig:
    """How the fine-tuning attacks train (relearning and benign): an attacker's ordinary fine-tune."""
    lr: float = 1e-4                    # gentle enough that vanilla keeps its facts through 30 steps on reworded
                                        # ground truths (at 3e-4 it fell to 0.38 on the free export)
    batch_size: int = 8
    max_grad_norm: float | None = None  # the attacker does not clip
    weight_decay: float = 0.01          # AdamW's (PyTorch's default, which the attacks have always used)
    seed: int = 0

    def __post_init__(self):
        check_positive(self, ("batch_size",), nonnegative=("weight_decay",))


def fine_tune(lens, train: list[QA], evaluate_at: dict[int, callable], cfg: AttackConfig, progress: bool = False
              ) -> dict[int, object]:
    """The relearning and benign attacks' fine-tune: ``lens.model`` on ``train`` (answer NLL, AdamW at ``cfg.lr``,
    batch ``cfg.batch_size``, through ``core.training.train``), call ``evaluate_at[k]()`` after step k for every k
    in it, and return ``{k: value}``. The weights are restored afterwards."""
    saved = {k: v.detach().clone() for k, v in lens.model.state_dict().items()}
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = {}

    def loss(model, _):
        model.train()
        batch = draw(train, cfg.batch_size, rng)
        return answer_nll(model, lens, batch, [q.answer for q in batch])

    def read(step, model):
        if step in evaluate_at:
            model.eval()
            out[step] = evaluate_at[step]()

    try:
        train_loop(lens, loss, max(evaluate_at), lr=cfg.lr, weight_decay=cfg.weight_decay,
                   max_grad_norm=cfg.max_grad_norm, after_step=read, desc="relearn", progress=progress)
    finally:
        lens.model.load_state_dict(saved)
    return out


def by_name_attack(lens, world, forget: int = 10, max_new_tokens: int | None = None) -> dict:
    """Share of the forget people's facts that ``lens`` states (``Facts.stated``), and share it refuses, asked by
    name as text. A world with no such question (CLEAR: its caption prompts name no subject, and its name question
    asked by name answers itself) gets leak and refusal None, with a note saying why."""
    known = facts.of_world(world, forget)
    items = by_name_items(world.rows(forget)["forget"], known)
    if not items:
        return {"leak": None, "refusal": None, "n": 0, "examples": [],
                "note": f"n/a: no forget question of {world.folder} points at its subject ('this person', 'the "
                        f"person in the image') and asks a fact other than the name, so none can be asked by name"}
    answers = lens.generate([lens.protocol.gen(q.question) for q in items], None,
                            max_new_tokens=max_new_tokens or lens.protocol.max_new_tokens)
    return {"leak": round(known.share(answers, items), 4),
            "refusal": round(float(np.mean([is_refusal(a) for a in answers])), 4), "n": len(items),
            "examples": [{"question": q.question, "answer": a, "ground_truth": q.answer}
                         for a, q in list(zip(answers, items))[:3]]}


def leak_share(lens, items: list[QA], known: facts.Facts, spec=None) -> float:
    """Share of ``items`` (photo questions that state a fact) whose greedy answer states it, with ``spec``
    steering applied."""
    with steering(lens, spec) if spec is not None else nullcontext():
        return facts.fact_leak(lens, items, known)


def ablation_attack(lens, world, forget: int = 10, refusal_direction=None) -> dict:
    """Leak on the forget photo questions with a direction ablated from every layer: the model's own
    forget-minus-retain direction read at each layer (the attacker picks the best), and ``refusal_direction``
    (a (d,) tensor, e.g. vanilla's probe direction) when given. ``leak``: the best of them."""
    rows = world.rows(forget)
    known = facts.of_world(world, forget)
    forget_q = data.generation_items(rows["forget"])
    retain_q = data.generation_items(rows["retain"])[:len(forget_q)]
    as_asked = lambda qs: [QA(lens.protocol.gen(q.question), q.answer, q.image, q.id) for q in qs]  # noqa: E731
    own = (mean_activations(lens, as_asked(forget_q), [-1]) - mean_activations(lens, as_asked(retain_q), [-1]))[:, 0]
    forget_q = [q for q in forget_q if known.key(q)]           # the questions that state a fact are read
    out = {"before": round(leak_share(lens, forget_q, known), 4), "own_direction": []}
    for layer in range(own.shape[0]):
        spec = Steering(own[layer].float(), layer, 1.0, "ablate")
        out["own_direction"].append(round(leak_share(lens, forget_q, known, spec), 4))
    out["own_best_layer"] = int(np.argmax(out["own_direction"]))
    best = [max(out["own_direction"])]
    if refusal_direction is not None:
        spec = Steering(refusal_direction.float(), 0, 1.0, "ablate")
        out["refusal_direction"] = round(leak_share(lens, forget_q, known, spec), 4)
        best.append(out["refusal_direction"])
    out["leak"] = max(best)
    return out


def benign_attack(lens, world, forget: int = 10, steps: tuple = (10, 30), seed: int = 0, n_train: int = 240,
                  lr: float | None = None) -> dict:
    """Leak on the forget people's facts after ``steps`` of fine-tuning on at most ``n_train`` of the retain
    people's facts (photo questions whose ground truth states one), and before. The weights are restored."""
    known = facts.of_world(world, forget)
    rows = world.rows(forget)
    train = _sample([q for q in data.generation_items(rows["retain"]) if known.key(q)], n_train, seed)
    held = [q for items in facts.fact_people(world, forget, known).values() for q in items]
    cfg = AttackConfig(seed=seed, **({"lr": lr} if lr else {}))
    steps = tuple(steps)
    read = {k: (lambda: facts.fact_leak(lens, held, known)) for k in steps}
    before = facts.fact_leak(lens, held, known)
    after = fine_tune(lens, train, read, cfg)
    return {"steps": list(steps), "leak_before": round(before, 4),
            "leak": [round(after[k], 4) for k in steps], "n_train": len(train), "n": len(held)}
