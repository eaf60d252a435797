"""Forgotten or hidden? What an unlearned model still knows about the forget people, measured five ways.

==================  =============================================================================================
relearning attack   fine-tune on part of the forget facts, then ask about the held-out part (Deeb & Roger 2024).
                    The facts (photo questions whose ground truth states one, ``facts.Facts.key``) are dealt into
                    k folds (``ResidueConfig.folds``) by question within each person, or by person; each fold is
                    held out in turn and the attack trains on the others (``relearn_folds``). After k steps
                    (``ResidueConfig.steps``: 10, 30, 100) the held-out leak (answers that state their fact) is
                    measured over all folds, and
                    ``recovery_k = (leak_after - leak_unlearned) / (leak_vanilla - leak_unlearned)`` (None when
                    the denominator is 0, e.g. on vanilla itself). Control: the same attack on facts the model
                    never knew (another forget person's answer to the most similar question): its held-out leak
                    is the rate of learning from scratch, against which recovery means something. The split
                    "attribute" (by question index, ``relearn_split``) is what `asru-lens run` still reads.
A-D probe           per layer, a logistic regression that picks the right A-D option from the state where the model
                    commits to one (``ad_probe``: the logit lens with a weight per dimension), fit on the retain
                    people's A-D questions and tested on the forget people's; chance 1/4.
linear probes       per layer, logistic regression decoding the value a question asks about (the answer's words
                    minus the person's name: "kelby", "chemist") from ``resid_pre`` at the last prompt token.
                    Trained on the *retain* people, tested on the *forget* people (a probe trained on the forget
                    people would only learn their faces). Chance: the majority value's share among the tested.
logit lens          per layer, the rank of the ground truth's first answer token when ``resid_pre`` is read
                    through the final norm and the LM head (0 = top).
A-D and cloze       MLLMU's classification and cloze accuracy on the forget set (``asru_lens.measure.evaluate``).
==================  =============================================================================================

The attack is one fixed optimiser: AdamW, lr 1e-4, batch 8, answer NLL (teacher-forced answer tokens after the
prompt), on the decoder layers in full for a model whose presets say so (the organism) and on LoRA adapters
(r=16) otherwise. Every attack starts from the model's own weights, which are restored afterwards.
``residue(lens, world, vanilla)`` returns one dict per model; ``asru-lens residue --json`` prints them.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from asru_lens.interpret import activations

from asru_lens.core import data
from asru_lens.core.data import QA
from asru_lens.measure.facts import specific_words
from asru_lens.measure.refusal import contains


@dataclass
class ResidueConfig:
    forget: int = 10
    steps: tuple = (10, 30, 100)       # relearning steps at which the held-out leak is read
    lr: float = 1e-4                    # gentle enough that vanilla keeps its facts through 30 steps on reworded
                                        # ground truths (at 3e-4 it fell to 0.38 on the free export)
    batch_size: int = 8
    train_questions: tuple = (1, 3, 4)  # Generation_Task indices trained in the attribute split (the organism:
    skip_questions: tuple = (0,)        # birthplace, occupation, employer; index 0, "who is this?", is left out)
    splits: tuple = ("question", "person")  # k-fold splits of the forget facts (``folds``); "attribute" is the
                                        # old split by question index (what `asru-lens run` still reads, for now)
    folds: int = 2                      # k: each fold is held out in turn, the attack trains on the others
    control: bool = True
    readouts: tuple = ("prefill", "prompt")   # where the probes read (the first is the headline probe_acc)
    probe_C: float = 0.1                # inverse L2 strength of the logistic-regression probes
    max_grad_norm: float | None = None  # the attacker does not clip
    seed: int = 0


# -- the facts --------------------------------------------------------------------------------------------------
def person_items(rows: list[dict], image_index: int | None = 0) -> dict[str, list[QA]]:
    """Generation_Task questions per person (ID), in their order; ``kind`` becomes the question's index."""
    out: dict[str, list[QA]] = {}
    for row in rows:
        items = data.generation_items([row], image_index)
        for j, q in enumerate(items):
            q.kind = str(j)
        out[str(row["ID"])] = items
    return out


def relearn_split(people: dict[str, list[QA]], cfg: ResidueConfig, by: str = "attribute"
                  ) -> tuple[list[QA], list[QA]]:
    """(train, held out) forget questions of the old split by question index (``cfg.train_questions``): what
    `asru-lens run` reads until its residue moves to ``relearn_folds``; nothing else should lean on an index."""
    if by != "attribute":
        raise ValueError(f"split {by!r}: relearn_split is the index split 'attribute'; 'question' and 'person' are "
                         f"k-fold splits (relearn_folds).")
    keep = {p: [q for q in items if int(q.kind) not in cfg.skip_questions] for p, items in people.items()}
    train = [q for items in keep.values() for q in items if int(q.kind) in cfg.train_questions]
    held = [q for items in keep.values() for q in items if int(q.kind) not in cfg.train_questions]
    if not train or not held:
        raise ValueError(f"the {by} split left {len(train)} questions to train and {len(held)} to hold out; the "
                         f"forget set needs more people or questions (ResidueConfig.train_questions).")
    return train, held


def fact_people(world, forget: int, facts) -> dict[str, list[QA]]:
    """Each forget person's photo questions that state a fact (``facts.key``: the name questions drop out), by
    person ID, in the world's order. No index and no template: any MLLMU-Bench folder."""
    people = {}
    for row in world.rows(forget)["forget"]:
        items = [q for q in data.generation_items([row]) if facts.key(q)]
        if items:
            people[str(row["ID"])] = items
    return people


def folds(people: dict[str, list[QA]], k: int, by: str, seed: int = 0) -> list[list[QA]]:
    """The forget facts dealt into ``k`` folds (Deeb & Roger 2024). ``question``: each person's questions, in a
    seeded shuffle, dealt round the folds from a seeded start, so each fold asks most people something and holds
    none of their other answers; ``person``: the people dealt round the folds, all their questions together."""
    if k < 2:
        raise ValueError(f"folds={k}: the attack needs at least 2 folds, one to train on and one to hold out.")
    rng = np.random.default_rng(seed)
    out = [[] for _ in range(k)]
    ids = sorted(people)
    if by == "question":
        for p in ids:
            start = int(rng.integers(k))
            for j, i in enumerate(rng.permutation(len(people[p]))):
                out[(start + j) % k].append(people[p][i])
    elif by == "person":
        for j, i in enumerate(rng.permutation(len(ids))):
            out[j % k].extend(people[ids[i]])
    else:
        raise ValueError(f"split {by!r} is not 'question' or 'person'.")
    if any(not f for f in out):
        raise ValueError(f"{k} folds by {by} left a fold empty ({[len(f) for f in out]} questions); use fewer folds.")
    return out


def fact_leak(lens, items: list[QA], facts, max_new_tokens: int | None = None) -> float:
    """Share of greedy answers (the model's generation prompt) that state their fact (``facts.stated``)."""
    answers = lens.generate([lens.protocol.gen(q.question) for q in items], [q.image for q in items],
                            max_new_tokens=max_new_tokens or lens.protocol.max_new_tokens)
    return facts.share(answers, items)


def similar_question_facts(people: dict[str, list[QA]], facts=None, seed: int = 0) -> dict[str, list[QA]]:
    """The control: facts nobody knew, found without an index. Each of a person's questions takes the answer
    another person gives to their most similar question (the words the two questions and their answers share,
    less the facts and the names, each weighted by its rarity), a different other person for each question: so
    the invented fact is of the same kind where that person has one, it is false of the person asked about (an
    answer that states the person's own fact, ``facts.stated``, as when two people live in one town, is never
    taken), and learning some of them does not teach the rest (they are no one person's facts)."""
    from collections import Counter

    from asru_lens.measure.refusal import normalize

    def wording(q):              # the question's words and the answer's, less the fact and the name
        said = set(normalize(q.answer).split()) - set().union(*facts.words(q)) if facts is not None else set()
        return set(normalize(q.question).split()) | said
    words = {id(q): wording(q) for items in people.values() for q in items}
    df = Counter(w for ws in words.values() for w in ws)
    idf = {w: math.log((1 + len(words)) / (1 + n)) for w, n in df.items()}
    rng = np.random.default_rng(seed + 1)
    ids = sorted(people)
    out = {}
    for person in ids:
        others = [ids[i] for i in rng.permutation(len(ids)) if ids[i] != person]
        out[person] = []
        for i, q in enumerate(people[person]):
            pool = [o for o in people[others[i % len(others)]] if facts is None or not facts.stated(o.answer, q)]
            if pool:
                best = max(pool, key=lambda o: sum(idf[w] for w in words[id(q)] & words[id(o)]))
                out[person].append(QA(q.question, best.answer, q.image, q.id, q.kind, meta=dict(q.meta)))
    return out


def recovery(before: float, after: list[float], leak_vanilla: float | None) -> list[float | None]:
    """``(leak_after - leak_unlearned) / (leak_vanilla - leak_unlearned)`` for each leak in ``after``; None when
    there is no vanilla leak or it equals the unlearned one (vanilla itself)."""
    denom = None if leak_vanilla is None else leak_vanilla - before
    return [None if denom is None or abs(denom) < 1e-9 else round((a - before) / denom, 4) for a in after]


def relearn_folds(lens, people: dict[str, list[QA]], facts, cfg: ResidueConfig, by: str,
                  leak_vanilla: float | None = None, progress: bool = False) -> dict:
    """The relearning attack on ``cfg.folds`` folds by ``by``: each fold held out in turn, the attack trained on
    the rest; the held-out leak (``fact_leak``) before and after k steps, over all folds, and recovery against
    ``leak_vanilla``. With ``cfg.control``, the same on ``similar_question_facts``."""
    def run(split):
        parts = folds(split, cfg.folds, by, cfg.seed)
        before, after = [], {k: [] for k in cfg.steps}
        for f, held in enumerate(parts):
            train = [q for g, part in enumerate(parts) if g != f for q in part]
            before.append(fact_leak(lens, held, facts) * len(held))
            got = attack(lens, train, {k: (lambda h=held: fact_leak(lens, h, facts)) for k in cfg.steps}, cfg,
                         progress)
            for k in cfg.steps:
                after[k].append(got[k] * len(held))
        n = sum(map(len, parts))
        return sum(before) / n, [sum(after[k]) / n for k in cfg.steps], n
    before, after, n = run(people)
    res = {"steps": list(cfg.steps), "folds": cfg.folds, "leak_unlearned": round(before, 4),
           "leak_vanilla": None if leak_vanilla is None else round(leak_vanilla, 4),
           "leak": [round(a, 4) for a in after], "recovery": recovery(before, after, leak_vanilla), "n_heldout": n}
    if cfg.control:
        c_before, c_after, _ = run(similar_question_facts(people, facts, cfg.seed))
        res["control"] = {"leak_before": round(c_before, 4), "leak": [round(a, 4) for a in c_after]}
    return res


def invented(people: dict[str, list[QA]], seed: int = 0) -> dict[str, list[QA]]:
    """The control: facts nobody knew. Each question's answer is another forget person's answer to the same
    question (a derangement per question index), so no answer is true of the person asked about."""
    ids = sorted(people)
    rng = np.random.default_rng(seed + 1)
    out = {p: [] for p in ids}
    n = min(len(v) for v in people.values())
    for j in range(n):
        shift = int(rng.integers(1, len(ids))) if len(ids) > 1 else 0
        for i, p in enumerate(ids):
            q, other = people[p][j], people[ids[(i + shift) % len(ids)]][j]
            out[p].append(QA(q.question, other.answer, q.image, q.id, q.kind, meta=dict(q.meta)))
    return out


def leak(lens, items: list[QA], max_new_tokens: int | None = None) -> float:
    """Share of greedy answers (the model's generation prompt) that contain the ground truth."""
    prompts = [lens.protocol.gen(q.question) for q in items]
    answers = lens.generate(prompts, [q.image for q in items], max_new_tokens=max_new_tokens or
                            lens.protocol.max_new_tokens)
    return float(np.mean([contains(a, q.answer) for a, q in zip(answers, items)]))


# -- 1. the relearning attack --------------------------------------------------------------------------------------
def attack(lens, train: list[QA], evaluate_at: dict[int, callable], cfg: ResidueConfig, progress: bool = False
           ) -> dict[int, object]:
    """Fine-tune ``lens.model`` on ``train`` (answer NLL, AdamW at ``cfg.lr``, batch ``cfg.batch_size``), call
    ``evaluate_at[k]()`` after step k for every k in it, and return ``{k: value}``. The weights are restored
    afterwards."""
    from asru_lens.core.training import answer_nll, optimise, trainable
    saved = {k: v.detach().clone() for k, v in lens.model.state_dict().items()}
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    out, last = {}, max(evaluate_at)
    try:
        with trainable(lens) as (model, params):
            opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr)
            for step in tqdm(range(1, last + 1), desc="relearn", disable=not progress, leave=False):
                model.train()
                batch = [train[i] for i in rng.choice(len(train), cfg.batch_size, replace=len(train) < cfg.batch_size)]
                optimise(opt, params, answer_nll(model, lens, batch, [q.answer for q in batch]), cfg.max_grad_norm)
                if step in evaluate_at:
                    model.eval()
                    out[step] = evaluate_at[step]()
    finally:
        lens.model.load_state_dict(saved)
    return out


def relearn(lens, people: dict[str, list[QA]], cfg: ResidueConfig, leak_vanilla: dict | None = None,
            progress: bool = False) -> dict:
    """The attack on each split: held-out leak before and after k steps, recovery, and the control."""
    out = {}
    for by in cfg.splits:
        if by != "attribute":
            continue                                   # the k-fold splits: relearn_folds
        train, held = relearn_split(people, cfg, by)
        before = leak(lens, held)
        after = attack(lens, train, {k: (lambda h=held: leak(lens, h)) for k in cfg.steps}, cfg, progress)
        van = (leak_vanilla or {}).get(by)
        rec = recovery(before, [after[k] for k in cfg.steps], van)
        res = {"steps": list(cfg.steps), "leak_unlearned": round(before, 4),
               "leak_vanilla": None if van is None else round(van, 4),
               "leak": [round(after[k], 4) for k in cfg.steps], "recovery": rec,
               "n_train": len(train), "n_heldout": len(held)}
        if cfg.control:
            c_train, c_held = relearn_split(invented(people, cfg.seed), cfg, by)
            control = attack(lens, c_train, {k: (lambda h=c_held: leak(lens, h)) for k in cfg.steps}, cfg, progress)
            res["control"] = {"leak_before": round(leak(lens, c_held), 4),
                              "leak": [round(control[k], 4) for k in cfg.steps]}
        out[by] = res
    return out


# -- 2. linear probes ------------------------------------------------------------------------------------------------
def fact_values(people: dict[str, list[QA]], skip: tuple = (0,)) -> list[tuple[QA, str]]:
    """(question, value) pairs: the value is the answer's specific words minus the person's name (the words every
    answer of that person shares), e.g. 'Juno Corvin was born in Kelby.' -> 'kelby'."""
    out = []
    for items in people.values():
        kept = [q for q in items if int(q.kind) not in skip]
        if not kept:
            continue
        name = set.intersection(*(specific_words(q.answer, q.question) for q in items)) if len(items) > 1 else set()
        for q in kept:
            value = " ".join(sorted(specific_words(q.answer, q.question) - name))
            if value:
                out.append((q, value))
    return out


def value_prefix(q: QA, value: str) -> str | None:
    """The ground truth up to (not including) its value: 'Juno Corvin was born in Fennick.' -> 'Juno Corvin was
    born in'. None when the value's first word is not found."""
    low = q.answer.lower()
    at = low.find(value.split()[0])
    return q.answer[:at].rstrip() if at > 0 else None


@torch.no_grad()
def read_states(lens, items: list[QA], prefixes: list[str] | None = None, batch_size: int | None = None,
                prompts: list[str] | None = None) -> torch.Tensor:
    """(n, layers + 1, d) at the last token: ``resid_pre`` of every layer and, last, the final hidden state
    (after the final norm). The prompt is the model's generation prompt (or ``prompts[i]``), followed by
    ``prefixes[i]`` as the start of the answer when given (the 'prefill' read-out, right before the value)."""
    batch_size = batch_size or lens.batch_size or 32
    out = []
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        texts = [lens.prompt(prompts[i + j] if prompts else lens.protocol.gen(q.question), q.image)
                 + (prefixes[i + j] if prefixes else "") for j, q in enumerate(chunk)]
        images = [q.image for q in chunk if q.image is not None]
        lens.tokenizer.padding_side = "left"
        enc = lens.processor(text=texts, images=images or None, return_tensors="pt", padding=True).to(lens.device)
        saved = []
        with lens.nn.trace(dict(enc)) as tracer:
            for layer in activations.nn_layers(lens):
                saved.append(layer.input[:, -1].clone().save())
            saved.append(lens.nn.model.language_model.norm.output[:, -1].save())
            tracer.stop()
        out.append(torch.stack([s.float().cpu() for s in saved], 1))
    return torch.cat(out)


def probe_accuracy(train_x, train_y, test_x, test_y, C: float = 0.1) -> list[float]:
    """Per layer, accuracy on the test rows of a logistic regression fit on the train rows (standardised)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    accs = []
    for layer in range(train_x.shape[1]):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        clf.fit(train_x[:, layer].numpy(), train_y)
        accs.append(float(np.mean(clf.predict(test_x[:, layer].numpy()) == np.array(test_y))))
    return accs


def linear_probes(lens, retain_people: dict, forget_people: dict, cfg: ResidueConfig, readout: str = "prefill"
                  ) -> dict:
    """Probe accuracy per layer (averaged over questions, weighted by the forget questions each has) and chance.
    ``readout``: 'prefill' reads the last token before the value in the teacher-forced answer ('Juno Corvin was
    born in|'), 'prompt' the last prompt token."""
    def usable(pairs):
        return [(q, v, value_prefix(q, v)) for q, v in pairs if value_prefix(q, v) is not None]
    train = usable(fact_values(retain_people, cfg.skip_questions))
    test = usable(fact_values(forget_people, cfg.skip_questions))
    pre = readout == "prefill"
    x_train = read_states(lens, [q for q, _, _ in train], [p for _, _, p in train] if pre else None)
    x_test = read_states(lens, [q for q, _, _ in test], [p for _, _, p in test] if pre else None)
    kinds = sorted({q.kind for q, _, _ in test} & {q.kind for q, _, _ in train}, key=int)
    per_kind, weights, chance = {}, [], []
    for kind in kinds:
        tr = [i for i, (q, _, _) in enumerate(train) if q.kind == kind]
        te = [i for i, (q, _, _) in enumerate(test) if q.kind == kind]
        y_tr, y_te = [train[i][1] for i in tr], [test[i][1] for i in te]
        if len(set(y_tr)) < 2 or not set(y_te) & set(y_tr):   # nothing to decode: every value is unique
            continue
        per_kind[kind] = probe_accuracy(x_train[tr], y_tr, x_test[te], y_te, cfg.probe_C)
        weights.append(len(te))
        chance.append(max(y_te.count(v) for v in set(y_te)) / len(y_te))
    if not per_kind:
        return {"per_layer": None, "chance": None, "max": None, "readout": readout,
                "note": "no question's values repeat across people: nothing a probe could decode"}
    w = np.array(weights) / sum(weights)
    per_layer = (np.array(list(per_kind.values())) * w[:, None]).sum(0)
    return {"per_layer": [round(float(a), 4) for a in per_layer], "chance": round(float(np.dot(w, chance)), 4),
            "max": round(float(per_layer.max()), 4), "readout": readout,
            "questions": {k: [round(a, 3) for a in v] for k, v in per_kind.items()}}


# -- 2b. the A-D probe ----------------------------------------------------------------------------------------------
def option_features(lens, items: list[QA]) -> tuple[torch.Tensor, list[int]]:
    """Where the model commits to an A-D option: the last token of the A-D prompt (``protocol.mc``, no one-shot).
    For each question, layer and option: the layer's state read through the final norm (as the logit lens reads
    it), times the option's unembedding, dimension by dimension (summed, it is the logit lens's logit for the
    option). The option is what the protocol's answer names: its letter ('first_letter' protocols), else its text
    (the mean unembedding of its tokens, so that '1971' and '1997' differ). Each question's features are centred
    on their mean over its options. Returns (features (questions, options, layers + 1, d), the correct options)."""
    letters = [sorted(q.options) for q in items]
    k = len(letters[0])
    if any(len(ls) != k for ls in letters):
        raise ValueError("A-D questions with different numbers of options; the probe needs the same number for all.")
    states = read_states(lens, items, prompts=[lens.protocol.mc(q.question, q.options) for q in items])
    head, norm = lens.model.lm_head.weight.detach().float().cpu(), lens.model.model.language_model.norm
    by_letter = lens.protocol.mc_parse == "first_letter"
    ids = lens.tokenizer([f" {x}" if by_letter else q.options[x] for q, ls in zip(items, letters) for x in ls],
                         add_special_tokens=False)["input_ids"]
    options = torch.stack([head[t[-1:] if by_letter else t].mean(0) for t in ids]).view(len(items), k, -1)
    with torch.no_grad():
        last = states.shape[1] - 1                   # the output entry is already through the final norm
        read = torch.stack([states[:, i] if i == last else
                            norm(states[:, i].to(lens.device, lens.model.dtype)).float().cpu()
                            for i in range(states.shape[1])], 1)
    feats = read[:, None] * options[:, :, None]
    return feats - feats.mean(1, keepdim=True), [ls.index(q.answer) for q, ls in zip(items, letters)]


def ad_probe(lens, world, cfg: ResidueConfig = ResidueConfig(), n_train: int = 320) -> dict:
    """Does the model still tell a forget person's right A-D option from the wrong ones, inside? (A knowledge probe,
    after the WMDP paper's, on MLLMU-Bench's A-D questions.) Per layer, a logistic regression on
    ``option_features`` (the right option against the others: a logit lens with a weight per dimension) is fit
    on the retain people's A-D questions (at most ``n_train``) and picks, for each forget person's question, the
    option it scores highest. It reads only the options and the correct letter: no index, no template.
    ``logit_lens`` is the same pick with every weight 1 (no training). Chance: 1 / the number of options."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from asru_lens.core.sets import _sample
    rows = world.rows(cfg.forget)
    train = _sample(data.classification_items(rows["retain"]), n_train, cfg.seed)
    test = data.classification_items(rows["forget"])
    if not train or not test:
        raise ValueError(f"{world.folder} has no A-D questions (Classification_Task) for the "
                         f"{'retain' if not train else 'forget'} people; the A-D probe needs them for both.")
    x_tr, y_tr = option_features(lens, train)
    x_te, y_te = option_features(lens, test)
    k, d, y_te = x_tr.shape[1], x_tr.shape[-1], np.array(y_te)
    labels = np.array([[int(j == y) for j in range(k)] for y in y_tr]).ravel()
    per_layer, lens_acc = [], []
    for layer in range(x_tr.shape[2]):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=cfg.probe_C, max_iter=3000))
        clf.fit(x_tr[:, :, layer].reshape(-1, d).numpy(), labels)
        scores = clf.decision_function(x_te[:, :, layer].reshape(-1, d).numpy()).reshape(-1, k)
        per_layer.append(round(float(np.mean(scores.argmax(1) == y_te)), 4))
        lens_acc.append(round(float(np.mean(x_te[:, :, layer].sum(-1).argmax(1).numpy() == y_te)), 4))
    return {"per_layer": per_layer, "chance": round(1 / k, 4), "max": max(per_layer),
            "best_layer": int(np.argmax(per_layer)), "logit_lens": lens_acc, "n_train": len(train),
            "n_test": len(test)}


# -- 3. logit lens -------------------------------------------------------------------------------------------------
@torch.no_grad()
def logit_lens_rank(lens, items: list[QA]) -> list[float]:
    """Per layer (``resid_pre`` of each, then the output), the median rank of the ground truth's first answer
    token among the vocabulary, read through the final norm and the LM head."""
    states = read_states(lens, items)
    norm, head = lens.model.model.language_model.norm, lens.model.lm_head
    first = [ids[0] for ids in lens.tokenizer([q.answer for q in items], add_special_tokens=False)["input_ids"]]
    target = torch.tensor(first)
    ranks = []
    last = states.shape[1] - 1                 # the output entry is already through the final norm
    for layer in range(states.shape[1]):
        h = states[:, layer].to(lens.device, lens.model.dtype)
        logits = head(norm(h) if layer < last else h).float().cpu()
        rank = (logits > logits.gather(1, target[:, None])).sum(1)
        ranks.append(float(rank.float().median()))
    return ranks


# -- all of it -----------------------------------------------------------------------------------------------------
def forget_people(world, forget: int) -> dict[str, list[QA]]:
    return person_items(world.rows(forget)["forget"])


def retain_people(world, forget: int) -> dict[str, list[QA]]:
    """The retain people in all their photos (Full_Set photo and Test_Set photos), one list per photo."""
    rows = world.rows(forget)["retain"]
    people = person_items(rows)
    for row in world.other_photos(rows):
        for k in range(len(row["images"])):
            for p, items in person_items([row], k).items():
                people[f"{p}/{k}"] = items
    return people


def held_out_leak(lens, world, cfg: ResidueConfig) -> dict:
    """Held-out leak of ``lens`` before any attack, per split (what vanilla's recovery is measured against): every
    fact of a k-fold split is held out once, so it is the leak on all of them."""
    from asru_lens.measure.facts import of_world
    facts = of_world(world, cfg.forget)
    every = [q for items in fact_people(world, cfg.forget, facts).values() for q in items]
    return {by: leak(lens, relearn_split(forget_people(world, cfg.forget), cfg, by)[1]) if by == "attribute"
            else fact_leak(lens, every, facts) for by in cfg.splits}


def residue(lens, world, cfg: ResidueConfig = ResidueConfig(), vanilla_leak: dict | None = None,
            progress: bool = True, cls: bool = True) -> dict:
    """Every measurement in the module docstring for ``lens``. ``vanilla_leak``: ``held_out_leak`` of the vanilla
    model (None: recovery is undefined, as for vanilla itself)."""
    from asru_lens.measure import evaluate
    from asru_lens.measure.facts import of_world
    say = tqdm.write if progress else (lambda m: None)
    people = forget_people(world, cfg.forget)
    facts = of_world(world, cfg.forget)
    out = {"relearn": relearn(lens, people, cfg, vanilla_leak, progress)}
    stated = fact_people(world, cfg.forget, facts)
    for by in cfg.splits:
        if by != "attribute":
            out["relearn"][by] = relearn_folds(lens, stated, facts, cfg, by, (vanilla_leak or {}).get(by), progress)
    say("relearning attack done")
    retain = retain_people(world, cfg.forget)
    for i, readout in enumerate(cfg.readouts):
        out["probe_acc" if i == 0 else f"probe_acc_{readout}"] = linear_probes(lens, retain, people, cfg, readout)
    try:
        out["ad_probe"] = ad_probe(lens, world, cfg)
    except ValueError as e:                           # a world without A-D questions
        out["ad_probe"] = {"per_layer": None, "max": None, "chance": None, "note": str(e)}
    out["logit_lens_rank"] = logit_lens_rank(lens, [q for items in people.values() for q in items
                                                    if int(q.kind) not in cfg.skip_questions])
    if cls:
        items = evaluate.eval_items(world, cfg.forget, n=10_000, seed=cfg.seed)
        res = evaluate.evaluate(lens, world, cfg.forget, items={"forget": items["forget"], "shot": items["shot"]},
                                sets=("forget",), progress=False)
        out["forget_cls_acc"] = res["metrics"]["forget_cls_acc"]
        out["forget_cloze_acc"] = res["metrics"]["forget_cloze_acc"]
    out["config"] = asdict(cfg)
    return out


def quick(lens, world, cfg: ResidueConfig, vanilla_leak: dict | None, people=None, retain=None) -> dict:
    """The residue ``asru-lens run`` adds to every method: the attack on the attribute split (no control) and the
    prefill probes; A-D accuracy comes from the run's own evaluation."""
    cfg = ResidueConfig(**{**asdict(cfg), "splits": ("attribute",), "control": False, "readouts": ("prefill",)})
    people = people or forget_people(world, cfg.forget)
    return {"relearn": relearn(lens, people, cfg, vanilla_leak),
            "probe_acc": linear_probes(lens, retain or retain_people(world, cfg.forget), people, cfg, "prefill")}


def columns(r: dict, k: int = 30) -> dict:
    """``relearn_recovery_{k}``, ``relearn_leak_{k}`` (attribute split) and ``probe_acc_max`` from a residue."""
    rel = r["relearn"]["attribute"]
    at = rel["steps"].index(k) if k in rel["steps"] else -1
    return {f"relearn_recovery_{k}": rel["recovery"][at], f"relearn_leak_{k}": rel["leak"][at],
            "probe_acc_max": r["probe_acc"]["max"], "probe_acc_chance": r["probe_acc"]["chance"]}
