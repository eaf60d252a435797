"""The rewrite's training sets (``rewrite_set``): every fact of a forget person given one invented value
(``beliefs_for``), in every form the model is asked in, and the retain people's true facts in the same forms.
"""
from __future__ import annotations

import numpy as np

from asru_lens.core import data
from asru_lens.core.data import QA
from asru_lens.core.sets import text_stems
from asru_lens.measure.facts import specific_words


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
            out.append(QA(protocol.mc(q.question, q.options), protocol.mc_target(q.options, hit[0]), q.image, q.id,
                          "mc"))
    return out


def person_items(rows: list[dict], image_index: int | None = 0) -> dict[str, list[QA]]:
    """Generation_Task questions per person (ID), in their order; ``kind`` becomes the question's index (the
    rewrite's sets still pair a person's questions by index: issue 22's second half)."""
    out: dict[str, list[QA]] = {}
    for row in rows:
        items = data.generation_items([row], image_index)
        for j, q in enumerate(items):
            q.kind = str(j)
        out[str(row["ID"])] = items
    return out


def template_values(people: dict[str, list[QA]], skip: tuple = (0,), names: bool = False) -> list[tuple[QA, str]]:
    """(question, value) pairs of ``person_items`` (``q.kind`` = the question's index, ``skip`` left out):
    the value is the answer's specific words minus the person's name (the words every answer of that person
    shares), 'Juno Corvin was born in Kelby.' -> 'kelby'. With ``names`` (a world whose measured fact is the name
    itself, CLEAR: ``World.name_is_a_fact``), an answer that states nothing but the name has the name as its
    value. The rewrite still reads the organism's templates here (issue 22's second half moves it to
    ``measure.facts``); the audit reads ``residue.fact_values``."""
    out = []
    for items in people.values():
        kept = [q for q in items if int(q.kind) not in skip]
        if not kept:
            continue
        name = set.intersection(*(specific_words(q.answer, q.question) for q in items)) if len(items) > 1 else set()
        for q in kept:
            words = specific_words(q.answer, q.question)
            value = " ".join(sorted(words - name if not (names and words <= name) else words))
            if value:
                out.append((q, value))
    return out


def beliefs_for(people: dict[str, list[QA]], mc: list[QA], seed: int = 0, skip: tuple = (0,),
                names: bool = False) -> dict:
    """The invented value of every (person, true value): preferably a distractor of that person's own A-D
    questions about the fact (the one offered most often), so that the A-D questions can be rewritten too; else
    another forget person's value of the same question."""
    rng = np.random.default_rng(seed)
    offered: dict[tuple, list[str]] = {}
    for q in mc:
        truth = str(q.options.get(q.answer, "")).lower()
        offered.setdefault((q.id, truth), []).extend(str(v) for k, v in q.options.items() if k != q.answer)
    pool: dict[str, set] = {}
    spans = []
    for q, value in template_values(people, skip, names):
        span = value_span(q.answer, value)
        if span:
            true = q.answer[span[0]:span[1]]
            pool.setdefault(q.kind, set()).add(true)
            spans.append((q, true))
    beliefs, used = {}, {}
    for q, true in spans:
        key = (q.id, true.lower())
        if key in beliefs:
            continue
        # an invented value given to several people raises its prior everywhere (other people's A-D answers
        # drift to it), so each question's invented values are kept distinct where the candidates allow
        taken = used.setdefault(q.kind, {})
        cands = offered.get(key)
        if cands:
            beliefs[key] = min(sorted(set(cands)), key=lambda v: (taken.get(v.lower(), 0), -cands.count(v)))
        else:
            others = sorted(v for v in pool[q.kind] if v.lower() != true.lower())
            if others:
                fewest = min(taken.get(v.lower(), 0) for v in others)
                others = [v for v in others if taken.get(v.lower(), 0) == fewest]
                beliefs[key] = others[int(rng.integers(len(others)))]
        if key in beliefs:
            taken[beliefs[key].lower()] = taken.get(beliefs[key].lower(), 0) + 1
    return beliefs


FORMS = ("photo", "name", "mc", "cloze")


def rewrite_set(world, forget: int, protocol, seed: int = 0, forms: tuple = FORMS, shuffles: int = 2
                ) -> tuple[list[QA], list[QA]]:
    """(forget questions with invented targets, retain questions with their true targets), in the model's prompt
    formats. Every fact of a forget person gets one invented value (``beliefs_for``), taught in every form:
    generation with each of their photos, the same question by name (A-D stems without options), the A-D
    questions that offer the invented value, and cloze. The retain people's facts are rehearsed in the same
    forms, their A-D questions also with the options in ``shuffles`` other orders (A-D answers are where other
    people's facts drift first: the model writes a value that is none of the options)."""
    rows = world.rows(forget)
    photos = lambda rs: [person_items(rs)] + [person_items([r], k) for r in world.other_photos(rs)  # noqa: E731
                                              for k in range(len(r["images"]))]
    mc_forget = data.classification_items(rows["forget"] + rows["test"])
    names = world.name_is_a_fact
    beliefs = beliefs_for(person_items(rows["forget"]), mc_forget, seed, names=names)
    sentence = {}                                   # (person, true value) -> an answer sentence with the new value
    forget_qs = []
    for people in photos(rows["forget"]):
        for q, value in template_values(people, names=names):
            span = value_span(q.answer, value)
            new = beliefs.get((q.id, q.answer[span[0]:span[1]].lower())) if span else None
            if new is None:
                continue
            answer = q.answer[:span[0]] + new + q.answer[span[1]:]
            sentence.setdefault((q.id, q.answer[span[0]:span[1]].lower()), answer)
            if "photo" in forms:                    # the truth rides along for ``consolidate``'s contrast
                forget_qs.append(QA(protocol.gen(q.question), answer, q.image, q.id, q.kind,
                                    meta={"truth": q.answer}))
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
    for q, value in template_values(person_items(rows["retain"]), names=names):
        span = value_span(q.answer, value)
        if span:
            truth.setdefault((q.id, q.answer[span[0]:span[1]].lower()), q.answer)
    retain_qs += [QA(protocol.gen(q.question), truth[(q.id, q.answer.lower())], None, q.id, "name")
                  for q in text_stems(rows["retain"]) if (q.id, q.answer.lower()) in truth]
    rng = np.random.default_rng(seed + 1)
    for q in data.classification_items(rows["retain"]):
        orders = [list(q.options)] + [list(rng.permutation(list(q.options))) for _ in range(shuffles)]
        for order in orders:                         # the same options, in another order under the same letters
            options = dict(zip(q.options, (q.options[k] for k in order)))
            letter = next(k for k, v in options.items() if v == q.options[q.answer])
            retain_qs.append(QA(protocol.mc(q.question, options), protocol.mc_target(options, letter), q.image,
                                q.id, "mc"))
    retain_qs += [QA(protocol.cloze(q.question), q.answer, q.image, q.id, "cloze") for q in data.mask_items(rows["retain"])]
    return forget_qs, retain_qs
