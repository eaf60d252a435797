"""Refusal directions at every decoder layer, after Arditi et al. and ASRU.

The pipeline is a row of small steps with plain tensors in and out:

1. ``keep_refusals`` / ``keep_answered``: keep the prompts the model itself refuses (or answers).
2. ``activations`` / ``mean_activations``: the residual stream ``resid_pre`` entering each decoder layer,
   at the post-instruction positions of the chat template (``<|im_end|>\\n<|im_start|>assistant\\n`` on
   Qwen; the last one is the last prompt token). Shape ``(n, layers, positions, d)``.
3. ``diff_in_means``: one candidate direction per (layer, position), ``mean(refusal) - mean(answered)``.
4. ``select_direction``: induce, bypass and KL scores for every candidate; the best one wins.
5. ``auroc_by_layer``: how well the projection on the direction separates held-out refusals from answers.

Why ``resid_pre``: Qwen3-VL's DeepStack adds visual features to the hidden states *between* the first
decoder layers. A layer's output is therefore not the next layer's input at image positions, and HF's
``output_hidden_states`` records the outputs before that addition. Layer inputs are what each layer reads.
"""
from __future__ import annotations

import json
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from asru_lens.core.atomic import atomic_dir
from asru_lens.interpret import activations as A
from asru_lens.interpret import steer
from asru_lens.measure.refusal import is_refusal

ProbeError, _require = A.ProbeError, A._require


# -- 1. which prompts the model refuses ----------------------------------------------------------------------
# how far the probe reads an answer to tell a refusal: it shows in the first words (the protocol's answer budget,
# 50 tokens on MLLMU-Bench, would only cost time here)
REFUSAL_TOKENS = 24


def answers(lens, items, max_new_tokens: int = REFUSAL_TOKENS, batch_size: int = 64, progress: bool = False,
            desc: str = "answers") -> list[str]:
    """The model's own greedy answers."""
    return lens.generate([q.question for q in items], [q.image for q in items], max_new_tokens=max_new_tokens,
                         batch_size=batch_size, progress=progress, desc=desc)


def keep_refusals(items, replies: list[str], name: str = "refusal set") -> list:
    """The prompts whose reply is a refusal (ASRU keeps only those); raises when none is left."""
    kept = [q for q, a in zip(_require(items, name), replies) if is_refusal(a)]
    if not kept:
        raise ProbeError(f"the model refused none of the {len(items)} prompts of the {name}, so nothing is left "
                         f"after filtering (first reply: {replies[0]!r}). Use prompts it does refuse, e.g. "
                         f"privacy questions about faces it has never seen.")
    return kept


def keep_answered(items, replies: list[str], name: str = "forget set") -> list:
    """The prompts whose reply is not a refusal; raises when none is left."""
    kept = [q for q, a in zip(_require(items, name), replies) if not is_refusal(a)]
    if not kept:
        raise ProbeError(f"the model refused all {len(items)} prompts of the {name}, so no answered prompt is "
                         f"left. Is this model already unlearned?")
    return kept


# How refusals open, for a model whose own refusals are not at hand (e.g. random weights, filter off).
REFUSAL_OPENERS = ["I'm sorry, I can't help with that.", "Sorry, I don't know.", "I cannot answer that."]


def refusal_token_ids(lens, refusals: list[str], others: list[str], max_share: float = 0.5) -> list[int]:
    """First tokens of the model's own refusals ("I", "Sorry" ...), as Arditi et al. score refusal.

    A token that also opens more than ``max_share`` of the model's answers is dropped: it would measure
    answering, not refusing. (A few answers may share one, e.g. a name tokenised "I" + "dris".)"""
    def first(texts):
        return [ids[0] for ids in lens.tokenizer(texts, add_special_tokens=False)["input_ids"] if ids]
    opening = first(others)
    share = {t: opening.count(t) / max(len(opening), 1) for t in set(first(refusals))}
    ids = sorted(t for t, s in share.items() if s <= max_share)
    if not ids:
        raise ProbeError("no token opens the model's refusals without also opening most of its answers, so the "
                         "refusal score is undefined. Check that the refusal set's replies are refusals.")
    return ids


# -- 2. activations (asru_lens.interpret.activations; re-exported here because the probe is where they are used) -------
resid_pre, activations, mean_activations = A.resid_pre, A.activations, A.mean_activations


# -- 3. directions -------------------------------------------------------------------------------------------
def diff_in_means(mean_a: torch.Tensor, mean_b: torch.Tensor) -> torch.Tensor:
    """``mean_a - mean_b`` per (layer, position), not normalised (ASRU uses the raw difference)."""
    if mean_a.shape != mean_b.shape:
        raise ProbeError(f"means of shapes {tuple(mean_a.shape)} and {tuple(mean_b.shape)} cannot be subtracted; "
                         f"take both with the same positions and model.")
    return mean_a - mean_b


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity along the last axis (0 where a vector is zero)."""
    a, b = a.double(), b.double()
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)


def cosine_matrix(directions: torch.Tensor) -> torch.Tensor:
    """(layers, layers) cosine similarity between the layers' directions at one position, (layers, d) in."""
    return cosine(directions[:, None, :], directions[None, :, :])


# -- 4. selection --------------------------------------------------------------------------------------------
def refusal_score(logits: torch.Tensor, token_ids: list[int]) -> torch.Tensor:
    """``log P(refusal tokens) - log(1 - P)`` from last-position logits (n, vocab)."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    lp = torch.logsumexp(logp[:, token_ids], dim=-1)
    return lp - torch.log1p(-lp.exp().clamp(max=1 - 1e-12))


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    p, q = torch.log_softmax(p_logits.double(), -1), torch.log_softmax(q_logits.double(), -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


@dataclass
class Selection:
    """The chosen candidate and the whole score grid (layers x positions)."""
    layer: int
    position: int                 # index into the post-instruction positions
    token: str
    induce: np.ndarray            # mean refusal score on forget prompts, direction added at its layer
    bypass: np.ndarray            # mean refusal score on refusal prompts, direction ablated everywhere
    kl: np.ndarray                # next-token KL on retain prompts under ablation
    allowed: np.ndarray           # passed the layer, KL and induce filters
    baseline: dict = field(default_factory=dict)   # scores without intervention
    fallback: bool = False        # no candidate passed the filters; best bypass among early layers taken
    max_layer: int = 0            # candidates come from layers < max_layer (the 80%-depth rule)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "position": self.position, "token": self.token,
                "induce_score": float(self.induce[self.layer, self.position]),
                "bypass_score": float(self.bypass[self.layer, self.position]),
                "kl": float(self.kl[self.layer, self.position]), "fallback": self.fallback, **self.baseline}


def select_direction(lens, directions: torch.Tensor, refusal_val, forget_val, retain_val, token_ids: list[int],
                     max_layer_frac: float = 0.8, kl_max: float = 0.1, progress: bool = False) -> Selection:
    """Score every (layer, position) candidate and pick one, as Arditi et al. do.

    Layers at or beyond ``max_layer_frac`` of the depth, candidates with KL > ``kl_max`` and those whose
    induce score is not positive are dropped; the lowest bypass score wins."""
    n_layers, n_pos, _ = directions.shape
    enc = {k: lens.encode([q.question for q in s], [q.image for q in s]) for k, s in
           (("refusal", _require(refusal_val, "refusal validation set")),
            ("forget", _require(forget_val, "forget validation set")),
            ("retain", _require(retain_val, "retain validation set")))}
    logits = steer.last_logits
    base_retain = logits(lens, enc["retain"])
    baseline = {"refusal_score_refusal": float(refusal_score(logits(lens, enc["refusal"]), token_ids).mean()),
                "refusal_score_forget": float(refusal_score(logits(lens, enc["forget"]), token_ids).mean())}
    induce, bypass, kl = (np.full((n_layers, n_pos), np.nan) for _ in range(3))
    # layer 0 reads the embeddings, identical at template tokens; a very shallow model still gets layer 1
    max_layer = max(int(n_layers * max_layer_frac), min(2, n_layers))
    bar = tqdm(total=n_layers * n_pos, desc="select", disable=not progress, leave=False)
    for layer in range(n_layers):
        for pos in range(n_pos):
            bar.update()
            r = directions[layer, pos].float()
            if r.norm() < 1e-6:  # e.g. layer 0 at template tokens: same embedding for every prompt
                continue
            add, ablate = steer.Steering(r, layer), steer.Steering(r, mode="ablate")
            induce[layer, pos] = refusal_score(logits(lens, enc["forget"], add), token_ids).mean()
            bypass[layer, pos] = refusal_score(logits(lens, enc["refusal"], ablate), token_ids).mean()
            kl[layer, pos] = _kl(base_retain, logits(lens, enc["retain"], ablate))
    bar.close()
    layer_ok = (np.arange(n_layers) < max_layer)[:, None] & ~np.isnan(bypass)
    allowed = layer_ok & (kl <= kl_max) & (induce > 0)
    fallback = not allowed.any()
    pool = allowed if not fallback else layer_ok
    if not pool.any():
        raise ProbeError(f"no candidate direction is usable: every direction below layer {max_layer} is zero. "
                         f"Do the refusal and answered sets differ at the post-instruction positions?")
    if fallback:
        warnings.warn("no candidate passed the KL and induce filters; taking the lowest bypass score among "
                      f"layers < {max_layer}. Inspect the score grid before trusting this direction.")
    masked = np.where(pool, bypass, np.inf)
    layer, pos = (int(i) for i in np.unravel_index(np.argmin(masked), masked.shape))
    token = lens.post_instruction_tokens()[pos]
    return Selection(layer, pos, token, induce, bypass, kl, allowed, baseline, fallback, max_layer)


# -- 5. separability -----------------------------------------------------------------------------------------
def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney U / n_pos n_neg)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos) == 0 or len(neg) == 0:
        raise ProbeError("AUROC needs at least one prompt on each side (refusal and answered).")
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for v in np.unique(scores):  # average ranks over ties
        tie = scores == v
        ranks[tie] = ranks[tie].mean()
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def projections(acts: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Projection of (n, layers, d) activations on each layer's unit direction (layers, d) -> (n, layers)."""
    unit = directions.double() / directions.double().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (acts.double() * unit).sum(-1)


def auroc_by_layer(acts_refusal: torch.Tensor, acts_answered: torch.Tensor, directions: torch.Tensor) -> list:
    """Per-layer AUROC of the projection, refusal (positive) vs answered; inputs at one position."""
    p, q = projections(acts_refusal, directions), projections(acts_answered, directions)
    return [auroc(p[:, i].numpy(), q[:, i].numpy()) if directions[i].norm() > 0 else math.nan
            for i in range(directions.shape[0])]


# -- the whole probe, as the CLI and notebook 01 run it -------------------------------------------------------
class _Chosen:
    """The chosen direction of a probe (a fresh ``ProbeResult`` or one read back by ``load_direction``)."""

    @property
    def n_layers(self) -> int:
        return self.directions.shape[0]

    @property
    def direction(self) -> torch.Tensor:
        """The chosen refusal direction, (d,)."""
        return self.directions[self.selection.layer, self.selection.position].float()


@dataclass
class ProbeResult(_Chosen):
    """Everything ``probe`` measured; ``summary()`` is what ``asru-lens probe --json`` prints."""
    tokens: list[str]                   # the post-instruction tokens (positions)
    directions: torch.Tensor            # ASRU: mean(refusal) - mean(forget), (layers, positions, d)
    harmful_directions: torch.Tensor | None   # Arditi: mean(harmful) - mean(harmless); None when skipped
    selection: Selection
    auroc: list[float]                  # held-out, per layer, at the chosen position
    auroc_harmful: list[float]          # the harmful direction's AUROC on the same held-out prompts
    modality: dict                      # image / text directions at the chosen position and their cosine
    induce_refusal: float               # refusal rate on held-out forget prompts, direction added
    induce_examples: list[tuple[str, str]]  # up to two steered questions that refused, two that did not
    counts: dict
    acts: dict = field(default_factory=dict)   # set -> (n, layers, d) at the chosen position, for the PCA

    def summary(self) -> dict:
        s = self.selection
        r = lambda x: None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)  # noqa
        return {"layer": s.layer, "position": s.position, "token": s.token, "n_layers": self.n_layers,
                "max_layer": s.max_layer, "auroc": [r(a) for a in self.auroc],
                "auroc_chosen": r(self.auroc[s.layer]), "induce_refusal": r(self.induce_refusal),
                "induce_score": r(s.induce[s.layer, s.position]), "bypass_score": r(s.bypass[s.layer, s.position]),
                "kl": r(s.kl[s.layer, s.position]), "fallback": s.fallback,
                "baseline_refusal_score": {k: r(v) for k, v in s.baseline.items()},
                "auroc_harmful": [r(a) for a in self.auroc_harmful],
                "modality_cosine": None if self.modality.get("cosine") is None
                else [r(c) for c in self.modality["cosine"]],
                "direction_norm": [r(n) for n in self.directions[:, s.position].norm(dim=-1)],
                "counts": self.counts}


MIN_REFUSALS = 8      # refused prompts needed to build a mean from (the direction part)


def probe(lens, sets: dict, max_new_tokens: int = REFUSAL_TOKENS, batch_size: int | None = None, progress: bool = True,
          filter_refusals: bool = True, min_refusals: int = MIN_REFUSALS) -> ProbeResult:
    """Run steps 1-5 on ``sets`` (see ``asru_lens.core.sets.probe_sets``) and measure the chosen direction.

    ``filter_refusals`` (CLI: on unless ``--no-refusal-filter``): keep only the refusal prompts the model
    itself refuses and the forget prompts it answers, as ASRU does. Switch it off for a model that refuses
    nothing yet (random weights, a base model): every prompt is then kept as given. Fewer than
    ``min_refusals`` refused prompts is an error that says what to do. The harmful-vs-harmless direction and
    the text-only (modality) direction are analyses: without prompts for them they are skipped, with a note."""
    say = (lambda m: tqdm.write(m, file=sys.stderr)) if progress else (lambda m: None)  # noqa: E731
    gen_batch = lens.batch_size or 64
    reply = lambda items, desc: answers(lens, items, max_new_tokens, gen_batch, progress, desc) if items else []  # noqa
    notes = []

    # 1. the model's own behaviour decides who is in which set
    ref, fgt = sets["refusal"], sets["forget"]
    ref_replies = {part: reply(getattr(ref, part), f"refusal/{part}") for part in ("direction", "val", "test")}
    fgt_replies = {part: reply(getattr(fgt, part), f"forget/{part}") for part in ("direction", "val", "test")}
    if filter_refusals:
        refusal = {p: keep_refusals(getattr(ref, p), r, f"refusal set ({p})") for p, r in ref_replies.items()}
        answered = {p: keep_answered(getattr(fgt, p), r, f"forget set ({p})") for p, r in fgt_replies.items()}
        total = sum(len(getattr(ref, p)) for p in ref_replies)
        if len(refusal["direction"]) < min_refusals:
            raise ProbeError(
                f"the model refused only {len(refusal['direction'])} of the {len(ref.direction)} refusal prompts "
                f"used to build the direction ({sum(len(v) for v in refusal.values())} of {total} in all); at "
                f"least {min_refusals} are needed. Pass more unseen faces (ASRU uses 400), check that the faces are "
                f"really unseen, or switch the filter off (--no-refusal-filter, probe(filter_refusals=False)) for "
                f"a model that refuses nothing yet.")
    else:
        refusal = {p: _require(getattr(ref, p), f"refusal set ({p})") for p in ref_replies}
        answered = {p: _require(getattr(fgt, p), f"forget set ({p})") for p in fgt_replies}
        notes.append("refusal filter off: every refusal and forget prompt kept as given")
    forget, forget_val, forget_test = answered["direction"], answered["val"], answered["test"]
    token_ids = refusal_token_ids(lens, [a for a in ref_replies["direction"] if is_refusal(a)] or REFUSAL_OPENERS,
                                  fgt_replies["direction"])
    counts = {"refusal_kept": len(refusal["direction"]), "refusal_total": len(ref.direction),
              "forget_kept": len(forget), "forget_total": len(fgt.direction),
              "forget_val": len(forget_val), "forget_test": len(forget_test),
              "refusal_val": len(refusal["val"]), "refusal_test": len(refusal["test"]),
              "refusal_tokens": lens.tokenizer.convert_ids_to_tokens(token_ids)}
    say(f"kept {counts['refusal_kept']}/{counts['refusal_total']} refused unseen-face prompts and "
        f"{counts['forget_kept']}/{counts['forget_total']} answered forget prompts")

    # 2-3. means and directions
    mean = lambda items, desc: mean_activations(lens, items, batch_size=batch_size, progress=progress, desc=desc)  # noqa
    directions = diff_in_means(mean(refusal["direction"], "means/refusal"), mean(forget, "means/forget"))
    harmful_dirs = None
    try:  # Arditi et al.'s contrast: an analysis beside ASRU's direction, skipped if the model refuses no request
        harmful = keep_refusals(sets["harmful"].direction, reply(sets["harmful"].direction, "harmful"),
                                "harmful set")
        harmless = keep_answered(sets["harmless"].direction, reply(sets["harmless"].direction, "harmless"),
                                 "harmless set")
        counts.update(harmful_kept=len(harmful), harmless_kept=len(harmless))
        harmful_dirs = diff_in_means(mean(harmful, "means/harmful"), mean(harmless, "means/harmless"))
    except ProbeError as e:
        notes.append(f"harmful-vs-harmless direction skipped: {e}")
        say(notes[-1])

    # 4. selection
    sel = select_direction(lens, directions, refusal["val"], forget_val, sets["retain"].val, token_ids,
                           progress=progress)
    pos = sel.position
    say(f"selected layer {sel.layer}, position {pos} ({sel.token!r})")

    # 5. held-out separability and the geometry at the chosen position
    act = lambda items, desc: activations(lens, items, batch_size=batch_size, desc=desc)[:, :, pos]  # noqa
    acts = {"unknown": act(refusal["test"], "acts/refusal"), "forget": act(forget_test, "acts/forget")}
    auroc_asru = auroc_by_layer(acts["unknown"], acts["forget"], directions[:, pos])
    auroc_harm = (auroc_by_layer(acts["unknown"], acts["forget"], harmful_dirs[:, pos]) if harmful_dirs is not None
                  else [math.nan] * directions.shape[0])
    for name in ("retain", "celebrity", "harmful", "harmless"):
        if sets[name].test:
            acts[name] = act(sets[name].test, f"acts/{name}")

    # modality split: the same contrast asked by name, without an image
    modality = {"image": directions[:, pos]}
    try:
        rt, ft = sets["refusal_text"].direction, sets["forget_text"].direction
        if not rt:
            raise ProbeError("this world has no by-name questions about unknown people")
        text_ref = keep_refusals(rt, reply(rt, "refusal_text"), "text-only refusal set")
        text_fgt = keep_answered(ft, reply(ft, "forget_text"), "text-only forget set")
        text_dirs = diff_in_means(mean(text_ref, "means/refusal_text"), mean(text_fgt, "means/forget_text"))
        modality.update(text=text_dirs[:, pos], cosine=cosine(directions[:, pos], text_dirs[:, pos]).tolist(),
                        n_text_refusal=len(text_ref), n_text_forget=len(text_fgt))
        acts["unknown (text)"] = act(text_ref, "acts/refusal_text")
        acts["forget (text)"] = act(text_fgt, "acts/forget_text")
    except ProbeError as e:
        modality.update(cosine=None, note=str(e))
        notes.append(f"modality split skipped: {e}")
        say(notes[-1])

    # does adding the chosen direction make held-out forget prompts refuse?
    steered = steer.generate_with_addition(lens, forget_test, sel.layer, directions[sel.layer, pos].float(),
                                           max_new_tokens=max_new_tokens)
    induce = float(np.mean([is_refusal(a) for a in steered]))
    flipped = [(q.question, a) for q, a in zip(forget_test, steered) if is_refusal(a)]
    kept = [(q.question, a) for q, a in zip(forget_test, steered) if not is_refusal(a)]
    examples = flipped[:2] + kept[:2]
    counts["notes"] = notes
    return ProbeResult(lens.post_instruction_tokens(), directions.float(),
                       None if harmful_dirs is None else harmful_dirs.float(), sel, auroc_asru, auroc_harm, modality,
                       induce, examples, counts, acts)


# -- the probe's artifact: the direction, for the next stage ------------------------------------------------------
DIRECTION_FILE, SUMMARY_FILE = "directions.safetensors", "probe.json"


@dataclass
class SavedDirection(_Chosen):
    """A probe read back from ``save_direction``'s folder: what steering, stage 1 and RMU need of it."""
    directions: torch.Tensor            # (layers, positions, d)
    selection: object                   # .layer, .position, .token
    info: dict

    def summary(self) -> dict:
        return dict(self.info)


def save_direction(result, folder) -> list:
    """``folder/directions.safetensors`` (every layer's and position's direction, and the chosen one) and
    ``folder/probe.json`` (the summary), written atomically. ``load_direction`` reads them back."""
    with atomic_dir(folder) as tmp:
        save_file({"directions": result.directions.detach().float().cpu().clone(),      # clones: safetensors
                   "direction": result.direction.detach().float().cpu().clone()},       # refuses shared storage
                  str(tmp / DIRECTION_FILE))
        (tmp / SUMMARY_FILE).write_text(json.dumps(result.summary(), indent=1))
    return [Path(folder) / DIRECTION_FILE, Path(folder) / SUMMARY_FILE]


def load_direction(folder) -> SavedDirection:
    """The probe ``save_direction`` wrote into ``folder`` (``asru-lens probe --out DIR``); a clear error when the
    folder is not one."""
    folder = Path(folder)
    if not (folder / DIRECTION_FILE).is_file() or not (folder / SUMMARY_FILE).is_file():
        raise ValueError(f"--direction {folder}: expected {DIRECTION_FILE} and {SUMMARY_FILE} there, as "
                         f"`asru-lens probe --out {folder}` writes them.")
    info = json.loads((folder / SUMMARY_FILE).read_text())
    directions = load_file(str(folder / DIRECTION_FILE))["directions"]
    sel = SimpleNamespace(layer=int(info["layer"]), position=int(info["position"]), token=info.get("token"))
    if not (0 <= sel.layer < directions.shape[0] and 0 <= sel.position < directions.shape[1]):
        raise ValueError(f"--direction {folder}: its probe.json selects layer {sel.layer}, position {sel.position}, "
                         f"outside its directions {tuple(directions.shape)}.")
    return SavedDirection(directions, sel, info)
