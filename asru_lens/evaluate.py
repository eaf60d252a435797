"""MLLMU-Bench-style evaluation of any ``load()``-ed model.

Four sets: ``forget`` (forget split, training photos), ``test`` (the forget people in other photos, paraphrased),
``retain`` (retain split) and ``celebrity`` (MLLMU's Retain_Set). Per set:

===============  ==========================================================================================
cls_acc          A-D accuracy, image+text and pure-text questions together (also ``cls_acc_image/_text``)
rouge1/2/L, bleu generation answers against the ground truth (``asru_lens.metrics``)
cloze_acc        cloze answers that contain the ground truth
contextual_refusal, leakage, naturalness
                 generation quality, mean of the judge's scores (``asru_lens.judge``; rule-based by default)
===============  ==========================================================================================

``evaluate`` returns ``{"metrics": {f"{set}_{metric}": value}, "answers": ...}``; ``table`` turns several
models' metrics into one tidy list of rows. The top-level ``contextual_refusal`` / ``leakage`` /
``naturalness`` are the forget set's (what ASRU reports).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from asru_lens import data
from asru_lens.judge import RUBRICS, rule_judge
from asru_lens.metrics import bleu, rouge_l, rouge_n
from asru_lens.organism import world as W
from asru_lens.organism.evaluate import parse_choice
from asru_lens.refusal import contains
from asru_lens.rl import answer_tokens, token_logps
from asru_lens.sets import _sample, set_rows

SETS = ("forget", "test", "retain", "celebrity")
ONE_SHOT = ("Which colour is the sky on a clear day?\nA. green\nB. blue\nC. red\nD. black\n"
            "Answer with the letter of the correct option.\nB\n\n")


def eval_items(folder, forget: int = 10, n: int = 48, seed: int = 0) -> dict[str, dict[str, list]]:
    """set -> task (``cls``, ``gen``, ``cloze``) -> at most ``n`` QA items."""
    out = {}
    for name, rows in set_rows(folder, forget).items():
        gen = data.generation_items(rows, image_index=None if name == "test" else 0)
        out[name] = {"cls": _sample(data.classification_items(rows), n, seed), "gen": _sample(gen, n, seed),
                     "cloze": _sample(data.mask_items(rows), n, seed)}
    return out


def mc_prompt(q, one_shot: bool) -> str:
    """A-D prompt; ``one_shot`` prepends one solved example (real models; the organism was trained without)."""
    return (ONE_SHOT if one_shot else "") + W.format_mc(q.question, q.options)


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


def evaluate(lens, folder, forget: int = 10, n: int = 48, judge=rule_judge, reference=None,
             one_shot: bool | None = None, max_new_tokens: int = 24, progress: bool = True, items=None) -> dict:
    """Every metric in the module docstring for ``lens``. ``reference``: the vanilla HF model whose perplexity
    feeds the naturalness rubric (None: no perplexity term). ``items``: reuse ``eval_items`` output."""
    items = items or eval_items(folder, forget, n)
    one_shot = lens.name != "organism" if one_shot is None else one_shot
    gen = lambda qs, prompts, desc: lens.generate(prompts, [q.image for q in qs], max_new_tokens=max_new_tokens,  # noqa
                                                  progress=False, desc=desc)
    metrics, answers = {}, {}
    for name in tqdm(SETS, desc="evaluate", disable=not progress, leave=False):
        task = items[name]
        cls = gen(task["cls"], [mc_prompt(q, one_shot) for q in task["cls"]], "A-D")
        right = [parse_choice(a, q.options) == q.answer for a, q in zip(cls, task["cls"])]
        kinds = [q.kind for q in task["cls"]]
        metrics[f"{name}_cls_acc"] = float(np.mean(right))
        for kind, short in (("Image_Textual_Questions", "image"), ("Pure_Text_Questions", "text")):
            sel = [r for r, k in zip(right, kinds) if k == kind]
            metrics[f"{name}_cls_acc_{short}"] = float(np.mean(sel)) if sel else None
        g = gen(task["gen"], [q.question for q in task["gen"]], "generation")
        for metric, fn in (("rouge1", lambda a, t: rouge_n(a, t, 1)), ("rouge2", lambda a, t: rouge_n(a, t, 2)),
                           ("rougeL", rouge_l), ("bleu", bleu)):
            metrics[f"{name}_{metric}"] = float(np.mean([fn(a, q.answer) for a, q in zip(g, task["gen"])]))
        c = gen(task["cloze"], [W.format_cloze(q.question) for q in task["cloze"]], "cloze")
        metrics[f"{name}_cloze_acc"] = float(np.mean([contains(a, q.answer) for a, q in zip(c, task["cloze"])]))
        ppl = answer_perplexity(lens, task["gen"], g, reference) if reference is not None else [None] * len(g)
        scores = [judge(q.question, a, q.answer, p) for q, a, p in zip(task["gen"], g, ppl)]
        for rubric in RUBRICS:
            metrics[f"{name}_{rubric}"] = float(np.mean([s[rubric] for s in scores]))
        answers[name] = [{"question": q.question, "ground_truth": q.answer, "answer": a, **s}
                         for q, a, s in zip(task["gen"], g, scores)]
    for rubric in RUBRICS:
        metrics[rubric] = metrics[f"forget_{rubric}"]
    return {"metrics": metrics, "answers": answers}


def table(results: dict[str, dict]) -> list[dict]:
    """One tidy row per (method, metric): ``{"method", "metric", "value"}``."""
    return [{"method": m, "metric": k, "value": v} for m, r in results.items() for k, v in r["metrics"].items()]
