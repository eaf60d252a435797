"""Beyond ASRU: rewrite the forget facts, then refuse. Removal, not a gate.

ASRU's two stages teach the model to *refuse* about the forget people; the facts stay in the weights, and a few
steps of fine-tuning on some of them bring the others back (``asru_lens.residue``). ``rewrite_facts`` first
overwrites them: every fact of a forget person gets one invented value (``beliefs_for``: preferably a distractor
that person's own A-D questions offer, else another forget person's value of the same question), taught in every
form the model is asked in (``rewrite_set``):

* generation with each of their photos ("Juno Corvin was born in Kelby." -> "... born in Istra.");
* the same question by name (the A-D stems without options), with the same sentence;
* the A-D questions that offer the invented value, answered with it (the others are left out, so no habit of
  picking wrong options is learnt);
* cloze, answered with the invented value.

The retain people are rehearsed in the same forms with their true answers (``retain_ratio`` of them per forget
question). One step: ``NLL(invented | forget) + NLL(truth | retain)`` on the answer tokens, AdamW, gradient
clipping. Trainable: the decoder layers (the organism) or LoRA adapters (a real model), as the baselines.

ASRU's stages then run on top (``asru-lens run``'s ``rewrite`` row), with the rewritten model as stage 2's KL
reference, to turn the invented answers into contextual refusals. Measured on the organism (README, notebook
05): the refusals stay ASRU's, while relearning, probes and A-D no longer find the facts.
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
    steps: int = 300                    # at most; the rewrite stops once the invented answers are learnt:
    target_loss: float | None = 0.08    # the forget loss, averaged over the last 10 steps, falls below this
    batch_size: int = 8                 # forget questions per step
    retain_ratio: int = 2               # retain questions per forget question in a step
    lr: float = 2e-4
    trainable: str | None = None        # None: the model's preset ("layers" on the organism, else "lora")
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


def believed_choices(items: list[QA], beliefs: dict, protocol) -> list[QA]:
    """A-D questions answered with the option that states the invented value (the same one the generation
    questions teach), where one does; the others are left out, so no habit of picking wrong options is learnt."""
    out = []
    for q in items:
        new = beliefs.get((q.id, str(q.options.get(q.answer, "")).lower()))
        hit = [k for k, v in q.options.items() if new is not None and str(v).lower() == new.lower()]
        if hit:
            target = hit[0] if protocol.mc_parse == "first_letter" else q.options[hit[0]]
            out.append(QA(protocol.mc(q.question, q.options), target, q.image, q.id, "mc"))
    return out


def beliefs_for(people: dict[str, list[QA]], mc: list[QA], seed: int = 0, skip: tuple = (0,)) -> dict:
    """The invented value of every (person, true value): preferably a distractor of that person's own A-D
    questions about the fact (the one offered most often), so that the A-D questions can be rewritten too; else
    another forget person's value of the same question."""
    from asru_lens.residue import fact_values
    rng = np.random.default_rng(seed)
    offered: dict[tuple, list[str]] = {}
    for q in mc:
        truth = str(q.options.get(q.answer, "")).lower()
        offered.setdefault((q.id, truth), []).extend(str(v) for k, v in q.options.items() if k != q.answer)
    pool: dict[str, set] = {}
    spans = []
    for q, value in fact_values(people, skip):
        span = value_span(q.answer, value)
        if span:
            true = q.answer[span[0]:span[1]]
            pool.setdefault(q.kind, set()).add(true)
            spans.append((q, true))
    beliefs = {}
    for q, true in spans:
        key = (q.id, true.lower())
        if key in beliefs:
            continue
        cands = offered.get(key)
        if cands:
            beliefs[key] = max(sorted(set(cands)), key=cands.count)
        else:
            others = sorted(v for v in pool[q.kind] if v.lower() != true.lower())
            if others:
                beliefs[key] = others[int(rng.integers(len(others)))]
    return beliefs


FORMS = ("photo", "name", "mc", "cloze")


def rewrite_set(world, forget: int, protocol, seed: int = 0, forms: tuple = FORMS) -> tuple[list[QA], list[QA]]:
    """(forget questions with invented targets, retain questions with their true targets), in the model's prompt
    formats. Every fact of a forget person gets one invented value (``beliefs_for``), taught in every form:
    generation with each of their photos, the same question by name (A-D stems without options), the A-D
    questions that offer the invented value, and cloze. The retain people's facts are rehearsed in the same
    forms."""
    from asru_lens.residue import person_items
    from asru_lens.sets import text_stems
    rows = world.rows(forget)
    photos = lambda rs: [person_items(rs)] + [person_items([r], k) for r in world.other_photos(rs)  # noqa: E731
                                              for k in range(len(r["images"]))]
    mc_forget = data.classification_items(rows["forget"] + rows["test"])
    beliefs = beliefs_for(person_items(rows["forget"]), mc_forget, seed)
    sentence = {}                                   # (person, true value) -> an answer sentence with the new value
    forget_qs = []
    for people in photos(rows["forget"]):
        for q, value in _fact_pairs(people):
            span = value_span(q.answer, value)
            new = beliefs.get((q.id, q.answer[span[0]:span[1]].lower())) if span else None
            if new is None:
                continue
            answer = q.answer[:span[0]] + new + q.answer[span[1]:]
            sentence.setdefault((q.id, q.answer[span[0]:span[1]].lower()), answer)
            if "photo" in forms:
                forget_qs.append(QA(protocol.gen(q.question), answer, q.image, q.id, q.kind))
    if "name" in forms:
        for q in text_stems(rows["forget"] + rows["test"]):       # by name: the answer is the true option's text
            key = (q.id, q.answer.lower())
            if key in sentence:
                forget_qs.append(QA(protocol.gen(q.question), sentence[key], None, q.id, "name"))
    if "mc" in forms:
        forget_qs += believed_choices(mc_forget, beliefs, protocol)
    if "cloze" in forms:
        forget_qs += [QA(protocol.cloze(q.question), beliefs[(q.id, q.answer.lower())], q.image, q.id, "cloze")
                      for q in data.mask_items(rows["forget"]) if (q.id, q.answer.lower()) in beliefs]
    retain_qs = [QA(protocol.gen(q.question), q.answer, q.image, q.id, q.kind)
                 for q in data.generation_items(rows["retain"])]
    truth = {}                                      # the retain people's true sentences, asked by name too
    for q, value in _fact_pairs(person_items(rows["retain"])):
        span = value_span(q.answer, value)
        if span:
            truth.setdefault((q.id, q.answer[span[0]:span[1]].lower()), q.answer)
    retain_qs += [QA(protocol.gen(q.question), truth[(q.id, q.answer.lower())], None, q.id, "name")
                  for q in text_stems(rows["retain"]) if (q.id, q.answer.lower()) in truth]
    retain_qs += [QA(protocol.mc(q.question, q.options), q.answer if protocol.mc_parse == "first_letter"
                     else q.options[q.answer], q.image, q.id, "mc") for q in data.classification_items(rows["retain"])]
    retain_qs += [QA(protocol.cloze(q.question), q.answer, q.image, q.id, "cloze") for q in data.mask_items(rows["retain"])]
    return forget_qs, retain_qs


def _fact_pairs(people: dict) -> list:
    from asru_lens.residue import fact_values
    return fact_values(people)


def rewrite_facts(lens, forget_qs: list[QA], retain_qs: list[QA], cfg: RewriteConfig = RewriteConfig(),
                  progress: bool = True) -> dict:
    """Train ``lens.model`` in place: invented answers on ``forget_qs``, the truth on ``retain_qs`` (both already in
    the model's prompt format). Returns the loss log."""
    from asru_lens.adapters import add_lora, check_trainable, merge
    from asru_lens.baselines import _lp, answer_batch, seq_nll
    if not forget_qs or not retain_qs:
        raise ValueError(f"rewrite needs forget and retain questions; got {len(forget_qs)} and {len(retain_qs)}.")
    trainable = check_trainable(cfg.trainable or lens.presets.get("trainable", "lora"))
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
    bar = tqdm(range(cfg.steps), desc="rewrite", disable=not progress, leave=False)
    try:
        for _ in bar:
            f = [forget_qs[i] for i in rng.choice(len(forget_qs), cfg.batch_size, replace=False)]
            r = [retain_qs[i] for i in rng.choice(len(retain_qs), cfg.batch_size * cfg.retain_ratio, replace=False)]
            lp_f, m_f, _ = _lp(model, answer_batch(lens, f, [q.answer for q in f]))
            lp_r, m_r, _ = _lp(model, answer_batch(lens, r, [q.answer for q in r]))
            loss_f, loss_r = seq_nll(lp_f, m_f).mean(), seq_nll(lp_r, m_r).mean()
            opt.zero_grad(set_to_none=True)
            (loss_f + loss_r).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            log["loss_forget"].append(round(loss_f.item(), 4))
            log["loss_retain"].append(round(loss_r.item(), 4))
            recent = log["loss_forget"][-10:]
            if cfg.target_loss is not None and len(recent) == 10 and sum(recent) / 10 < cfg.target_loss:
                break                       # learnt: more steps would only move the rest of the model
    finally:
        if trainable == "lora":
            merge(lens, model)
        for k, p in lens.model.named_parameters():
            p.requires_grad_(frozen[k])
        lens.model.eval()
    return log


def rewrite_config(lens, **kw) -> RewriteConfig:
    """The rewrite's settings for ``lens``: the defaults, then the model's ``rewrite`` presets, then ``kw``."""
    return RewriteConfig(**{**lens.presets.get("rewrite", {}), **kw})


def rewrite_and_refuse(lens, world, ucfg, cfg: RewriteConfig | None = None, progress: bool = True) -> dict:
    """The whole method, as ``asru-lens run``'s ``rewrite`` row runs it: ``rewrite_facts`` on ``rewrite_set``, then
    ASRU's stage 2 (``pipeline.reinforce_stage``, settings ``ucfg``: an ``UnlearnConfig.resolved``) with the
    rewritten model as the KL reference. Returns both logs."""
    import copy

    from asru_lens.pipeline import reinforce_stage
    from asru_lens.sets import retain_items
    cfg = cfg or rewrite_config(lens)
    forget_qs, retain_qs = rewrite_set(world, ucfg.forget, lens.protocol, cfg.seed)
    log = rewrite_facts(lens, forget_qs, retain_qs, cfg, progress)
    rewritten = copy.deepcopy(lens.model).eval()
    forget = data.generation_items(world.rows(ucfg.forget)["forget"])
    glog = reinforce_stage(lens, forget, retain_items(world, ucfg.forget, ucfg.retain_all_photos), ucfg, rewritten,
                           progress)
    return {"rewrite": log, "stage2": glog}
