"""Beyond ASRU: rewrite the forget facts, then refuse. Removal, not a gate.

ASRU's two stages teach the model to *refuse* about the forget people; the facts stay in the weights, and a few
steps of fine-tuning on some of them bring the rest back (``asru_lens.residue``). ``rewrite_facts`` first
overwrites what the model knows about each forget person: every fact it would state is replaced, in the
weights, by an invented one (the same kind of value, drawn from other people's), in every form the benchmark
asks it (generation with the photo, A-D with the photo and by name, cloze), while the retain people's facts are
rehearsed as they are. ASRU's stages then run on top (``asru_lens.pipeline``), with the rewritten model as the
KL reference, to turn the invented answers into natural contextual refusals.

One rewrite step: a batch of forget questions with invented targets and a batch of retain questions with their
true targets, ``NLL(invented | forget) + NLL(truth | retain)`` on the answer tokens, AdamW. Trainable: the
decoder layers (the organism) or LoRA adapters (a real model), as the baselines.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from asru_lens import data
from asru_lens.data import QA


@dataclass
class RewriteConfig:
    steps: int = 60
    batch_size: int = 8
    lr: float = 1e-3
    forms: tuple = ("gen", "mc", "cloze")   # which question forms are rewritten
    seed: int = 0


def value_span(answer: str, value: str) -> tuple[int, int] | None:
    """Where the value's words sit in the answer (case-insensitive), as (start, end) character offsets."""
    low, spans = answer.lower(), []
    for word in value.split():
        at = low.find(word)
        if at < 0:
            return None
        spans.append((at, at + len(word)))
    return min(s for s, _ in spans), max(e for _, e in spans)


def invent_answers(people: dict[str, list[QA]], seed: int = 0, skip: tuple = (0,)) -> list[QA]:
    """Every forget generation question with an invented answer: the true value (``residue.fact_values``) swapped
    for another value of the same question, taken from other forget people, the sentence kept."""
    from asru_lens.residue import fact_values
    rng = np.random.default_rng(seed)
    pairs = fact_values(people, skip)
    pool: dict[str, list[str]] = {}
    for q, value in pairs:
        span = value_span(q.answer, value)
        if span:
            pool.setdefault(q.kind, []).append(q.answer[span[0]:span[1]])
    out = []
    for q, value in pairs:
        span = value_span(q.answer, value)
        others = [v for v in pool.get(q.kind, []) if v.lower() != q.answer[span[0]:span[1]].lower()] if span else []
        if not others:
            continue
        new = others[int(rng.integers(len(others)))]
        out.append(QA(q.question, q.answer[:span[0]] + new + q.answer[span[1]:], q.image, q.id, q.kind, meta=q.meta))
    return out


def invent_choices(items: list[QA], protocol, seed: int = 0) -> list[QA]:
    """A-D questions answered with a wrong option, in the protocol's prompt (letter or option text)."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for q in items:
        wrong = [k for k in q.options if k != q.answer]
        k = wrong[int(rng.integers(len(wrong)))]
        target = k if protocol.mc_parse == "first_letter" else q.options[k]
        out.append(QA(protocol.mc(q.question, q.options), target, q.image, q.id, "mc"))
    return out


def cloze_frame(question: str) -> str:
    """A cloze sentence without its names (capitalised words): 'Juno Corvin was born in __.' -> 'was born in'."""
    return " ".join(w for w in question.split("__")[0].split() if not w[:1].isupper())


def invent_cloze(items: list[QA], pool: dict[str, list[str]], seed: int = 0) -> list[QA]:
    """Cloze questions answered with another value (any other cloze answer of the same sentence frame)."""
    rng = np.random.default_rng(seed + 2)
    out = []
    for q in items:
        others = ([v for v in pool.get(cloze_frame(q.question), []) if v.lower() != q.answer.lower()] or
                  [v for vs in pool.values() for v in vs if v.lower() != q.answer.lower()])
        out.append(QA(q.question, others[int(rng.integers(len(others)))], q.image, q.id, "cloze"))
    return out


def rewrite_set(world, forget: int, protocol, forms=("gen", "mc", "cloze"), seed: int = 0
                ) -> tuple[list[QA], list[QA]]:
    """(forget questions with invented targets, retain questions with their true targets), in the model's
    prompt formats, every photo of each person (Full_Set and Test_Set)."""
    from asru_lens.residue import person_items
    rows = world.rows(forget)
    photos = lambda rs: [person_items(rs)] + [person_items([r], k) for r in world.other_photos(rs)  # noqa: E731
                                              for k in range(len(r["images"]))]
    forget_qs, retain_qs = [], []
    if "gen" in forms:
        for people in photos(rows["forget"]):
            forget_qs += [QA(protocol.gen(q.question), q.answer, q.image, q.id, q.kind)
                          for q in invent_answers(people, seed)]
        retain_qs += [QA(protocol.gen(q.question), q.answer, q.image, q.id, q.kind)
                      for q in data.generation_items(rows["retain"])]
    if "mc" in forms:
        forget_qs += invent_choices(data.classification_items(rows["forget"] + rows["test"]), protocol, seed)
        retain_mc = data.classification_items(rows["retain"])
        retain_qs += [QA(protocol.mc(q.question, q.options), q.answer if protocol.mc_parse == "first_letter"
                         else q.options[q.answer], q.image, q.id, "mc") for q in retain_mc]
    if "cloze" in forms:
        pool: dict[str, list[str]] = {}
        everyone = data.mask_items(rows["forget"] + rows["retain"])
        for q in everyone:
            pool.setdefault(cloze_frame(q.question), []).append(q.answer)
        forget_qs += [QA(protocol.cloze(q.question), q.answer, q.image, q.id, "cloze")
                      for q in invent_cloze(data.mask_items(rows["forget"]), pool, seed)]
        retain_qs += [QA(protocol.cloze(q.question), q.answer, q.image, q.id, "cloze")
                      for q in data.mask_items(rows["retain"])]
    return forget_qs, retain_qs


def rewrite_facts(lens, forget_qs: list[QA], retain_qs: list[QA], cfg: RewriteConfig = RewriteConfig(),
                  progress: bool = True) -> dict:
    """Train ``lens.model`` in place: invented answers on ``forget_qs``, the truth on ``retain_qs`` (both already in
    the model's prompt format). Returns the loss log."""
    from asru_lens.adapters import add_lora, check_trainable, merge
    from asru_lens.baselines import _lp, answer_batch, seq_nll
    if not forget_qs or not retain_qs:
        raise ValueError(f"rewrite needs forget and retain questions; got {len(forget_qs)} and {len(retain_qs)}.")
    trainable = check_trainable(lens.presets.get("trainable", "lora"))
    frozen = {k: p.requires_grad for k, p in lens.model.named_parameters()}
    for p in lens.model.parameters():
        p.requires_grad_(False)
    if trainable == "lora":
        model = add_lora(lens.model, 16, 16, 0.0)
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        model = lens.model
        params = list(model.model.language_model.layers.parameters())
        for p in params:
            p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    log = {"loss_forget": [], "loss_retain": []}
    model.train()
    try:
        for _ in tqdm(range(cfg.steps), desc="rewrite", disable=not progress, leave=False):
            f = [forget_qs[i] for i in rng.choice(len(forget_qs), cfg.batch_size, replace=False)]
            r = [retain_qs[i] for i in rng.choice(len(retain_qs), cfg.batch_size, replace=False)]
            lp_f, m_f, _ = _lp(model, answer_batch(lens, f, [q.answer for q in f]))
            lp_r, m_r, _ = _lp(model, answer_batch(lens, r, [q.answer for q in r]))
            loss_f, loss_r = seq_nll(lp_f, m_f).mean(), seq_nll(lp_r, m_r).mean()
            opt.zero_grad(set_to_none=True)
            (loss_f + loss_r).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            log["loss_forget"].append(round(loss_f.item(), 4))
            log["loss_retain"].append(round(loss_r.item(), 4))
    finally:
        if trainable == "lora":
            merge(lens, model)
        for k, p in lens.model.named_parameters():
            p.requires_grad_(frozen[k])
        lens.model.eval()
    return log
