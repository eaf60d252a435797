"""MLLMU-Bench-style evaluation of one model on the forget, test, retain and celebrity sets.

Sets: ``forget`` (forget split), ``test`` (the forget people's Test_Set rows: other photos, paraphrased),
``retain`` (retain split) and ``celebrity`` (MLLMU's Retain_Set). Per set:

===============  ==========================================================================================
cls_acc          A-D accuracy, image+text and pure-text questions together (also ``cls_acc_image/_text``)
rouge1/2/L, bleu generation answers against the ground truth (``asru_lens.measure.metrics``: rouge-score, NLTK)
cloze_acc        cloze answers that contain the ground truth
name_acc, name_prob
                 name recognition by likelihood, for a world that words a ``name_prompt`` (CLEAR): the share of A-D
                 questions whose right name is the likeliest answer of the four, and CLEAR's "Prob." (the right
                 name's likelihood over the four's sum); absent for MLLMU-Bench
contextual_refusal, leakage, naturalness
                 generation quality: the judge's mean scores on the Image_Textual generation answers
                 (``asru_lens.measure.judge``; the rule-based judge by default, bound to the world's fact words,
                 ``--judge openai:gpt-4o-mini`` as the authors)
===============  ==========================================================================================

Prompts and answer parsing come from the model's protocol (``lens.protocol``, ``asru_lens.core.protocol``): the
paper's for a real Qwen3-VL (one-shot A-D with a Full_Set example, first-letter parsing, the authors'
generation and cloze instructions), the organism's own for the organism. ``evaluate`` returns
``{"metrics": {f"{set}_{metric}": value}, "answers": ..., "protocol": name, "judge": name}``; the top-level
``contextual_refusal`` / ``leakage`` / ``naturalness`` are the forget set's (what ASRU reports).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from asru_lens.core import data
from asru_lens.measure import facts
from asru_lens.measure.judge import RUBRICS, fact_judge, rule_judge
from asru_lens.measure.metrics import bleu, rouge
from asru_lens.measure.privacy import option_nlls
from asru_lens.core.protocol import cloze_correct
from asru_lens.measure.refusal import contains
from asru_lens.core.data import QA
from asru_lens.core.training import answer_tokens, token_logps
from asru_lens.core.sets import _sample
from asru_lens.core.world import World

SETS = ("forget", "test", "retain", "celebrity")


def eval_items(world: World, forget: int = 10, n: int = 48, seed: int = 0) -> dict[str, dict[str, list]]:
    """set -> task (``cls``, ``gen``, ``cloze``) -> at most ``n`` QA items; ``"shot"`` -> the one-shot A-D
    example (an Image_Textual question of a retain person in Full_Set), never itself evaluated."""
    out = {}
    rows = world.rows(forget)
    for name, set_rows in rows.items():
        gen = data.generation_items(set_rows, image_index=None if name == "test" else 0)
        out[name] = {"cls": _sample(data.classification_items(set_rows), n, seed), "gen": _sample(gen, n, seed),
                     "cloze": _sample(data.mask_items(set_rows), n, seed)}
    out["shot"] = one_shot(rows["retain"])
    return out


def one_shot(retain_rows: list[dict]):
    """The one-shot A-D example: the first retain person's first Image_Textual A-D question (None if none)."""
    shots = data.classification_items(retain_rows[:1], which="image")
    return shots[0] if shots else None


def mc_prompts(protocol, items: list, shot=None) -> tuple[list[str], list | None]:
    """A-D prompts under ``protocol`` and the one-shot turn to put before each (None without one)."""
    turns = None
    if protocol.mc_one_shot and shot is not None:
        turns = [(protocol.mc(shot.question, shot.options), shot.image, shot.answer)]
    return [protocol.mc(q.question, q.options) for q in items], turns


def cls_right(lens, items: list, shot=None, max_new_tokens: int | None = None) -> tuple[list, list[bool]]:
    """A-D: (the items asked, the shot itself left out; whether each answer picks the right option), under
    ``lens.protocol`` with its one-shot turn where it has one."""
    protocol = lens.protocol
    items = [q for q in items if not (protocol.mc_one_shot and shot is not None and
                                      (q.id, q.question) == (shot.id, shot.question))]
    prompts, shots = mc_prompts(protocol, items, shot)
    answers = lens.generate(prompts, [q.image for q in items], max_new_tokens=max_new_tokens or
                            protocol.max_new_tokens, progress=False, desc="A-D", shots=shots)
    return items, [protocol.parse_mc(a, q.options) == q.answer for a, q in zip(answers, items)]


def cloze_right(lens, items: list, max_new_tokens: int | None = None) -> list[bool]:
    """Cloze: whether each answer holds the blank's ground truth (the protocol's match)."""
    protocol = lens.protocol
    answers = lens.generate([protocol.cloze(q.question) for q in items], [q.image for q in items],
                            max_new_tokens=max_new_tokens or protocol.max_new_tokens, progress=False, desc="cloze")
    match = cloze_correct if protocol.cloze_match == "substring" else contains
    return [match(a, q.answer) for a, q in zip(answers, items)]


@torch.no_grad()
def answer_perplexity(lens, items: list, answers: list[str], model=None, batch_size: int = 32) -> list[float]:
    """Perplexity of each answer after its prompt under ``model`` (default ``lens.model``; for naturalness, the
    vanilla model), prompts encoded by ``lens``."""
    model = model if model is not None else lens.model
    out = []
    for i in range(0, len(items), batch_size):
        chunk, texts = items[i:i + batch_size], answers[i:i + batch_size]
        enc = lens.encode([q.question for q in chunk], [q.image for q in chunk])
        ids, mask = answer_tokens(lens, texts)
        lp = token_logps(model, enc, ids)
        mask = mask.float()
        out += torch.exp(-(lp * mask).sum(1) / mask.sum(1).clamp(min=1)).tolist()
    return out


def name_recognition(lens, items: list, prompt: str, batch_size: int = 16) -> tuple[list[bool], list[float]]:
    """CLEAR's face recognition: each A-D option (a name) scored as the answer to ``prompt`` about the item's
    photo by its length-normalised likelihood, exp(-mean NLL) as CLEAR's "Prob." reads it. Per item: (the right
    name is the likeliest, its likelihood over the options' sum)."""
    right, prob = [], []
    for nll in option_nlls(lens, items, lambda q: QA(prompt, "", q.image, q.id, q.kind),
                           lambda q, x: str(q.options[x]), batch_size):
        p = np.exp(-nll)
        right.append(bool(p[0] > p[1:].max(initial=0.0)))
        prob.append(float(p[0] / p.sum()))
    return right, prob


def _mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def evaluate(lens, world: World, forget: int = 10, n: int = 48, judge=rule_judge, reference=None,
             max_new_tokens: int | None = None, progress: bool = True, items=None, sets: tuple = SETS) -> dict:
    """Every metric in the module docstring for ``lens``. ``reference``: the vanilla HF model whose perplexity
    feeds the rule judge's naturalness (None: no perplexity term). ``items``: reuse ``eval_items`` output;
    ``sets``: which of the four sets to measure."""
    items = items or eval_items(world, forget, n)
    if judge is rule_judge:          # the rule judge reads this world's fact words (judge.fact_judge)
        judge = fact_judge(facts.of_world(world, forget))
    protocol = lens.protocol
    max_new_tokens = max_new_tokens or protocol.max_new_tokens
    gen = lambda qs, prompts, desc: lens.generate(  # noqa: E731
        prompts, [q.image for q in qs], max_new_tokens=max_new_tokens, progress=False, desc=desc)
    shot = items.get("shot")
    metrics, answers = {}, {}
    for name in tqdm(sets, desc="evaluate", disable=not progress, leave=False):
        task = items[name]
        cls_items, right = cls_right(lens, task["cls"], shot, max_new_tokens)
        metrics[f"{name}_cls_acc"] = _mean(right)
        for kind, short in (("Image_Textual_Questions", "image"), ("Pure_Text_Questions", "text")):
            metrics[f"{name}_cls_acc_{short}"] = _mean(r for r, q in zip(right, cls_items) if q.kind == kind)
        g = gen(task["gen"], [protocol.gen(q.question) for q in task["gen"]], "generation")
        scores = [rouge(a, q.answer) for a, q in zip(g, task["gen"])]
        for metric in ("rouge1", "rouge2", "rougeL"):
            metrics[f"{name}_{metric}"] = _mean(s[metric] for s in scores)
        metrics[f"{name}_bleu"] = _mean(bleu(a, q.answer) for a, q in zip(g, task["gen"]))
        metrics[f"{name}_cloze_acc"] = _mean(cloze_right(lens, task["cloze"], max_new_tokens))
        if world.name_prompt:
            right, prob = name_recognition(lens, task["cls"], world.name_prompt)
            metrics[f"{name}_name_acc"], metrics[f"{name}_name_prob"] = _mean(right), _mean(prob)
        judged = [(q, a) for q, a in zip(task["gen"], g) if q.kind in ("Image_Textual", "")]  # as the authors
        ppl = (answer_perplexity(lens, [q for q, _ in judged], [a for _, a in judged], reference)
               if reference is not None and judged else [None] * len(judged))
        verdicts = [judge(q.question, a, q.answer, p) for (q, a), p in zip(judged, ppl)]
        for rubric in RUBRICS:
            metrics[f"{name}_{rubric}"] = _mean(v[rubric] for v in verdicts)
        answers[name] = [{"question": q.question, "ground_truth": q.answer, "answer": a, **v}
                         for (q, a), v in zip(judged, verdicts)]
    for rubric in RUBRICS:
        metrics[rubric] = metrics.get(f"forget_{rubric}")
    return {"metrics": metrics, "answers": answers, "protocol": protocol.name,
            "judge": getattr(judge, "name", getattr(judge, "__name__", "judge"))}


def table(results: dict[str, dict]) -> list[dict]:
    """One tidy row per (method, metric): ``{"method", "metric", "value"}``."""
    return [{"method": m, "metric": k, "value": v} for m, r in results.items() for k, v in r["metrics"].items()]
