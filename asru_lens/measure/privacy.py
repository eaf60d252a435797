"""Against the model that never knew: TOFU's truth ratio and forget quality, membership inference (LOSS, ZLib,
Min-K%, Min-K%++) and MUSE's PrivLeak, with open-unlearning's formulas (``src/evals/metrics/memorization.py``,
``privacy.py`` and ``mia/``).

A row of small steps with plain arrays in and out: ``answer_stats`` reads each answer's token log-probs once
(teacher-forced after its prompt, as the model is asked); the scores below are functions of those.

* **Truth ratio** of an A-D question: P(wrong) / P(right), each the length-normalised likelihood of the whole
  answer, P(wrong) over the three distractors (the geometric mean of their likelihoods, as open-unlearning
  averages their losses). The answer is what the model's protocol answers (``Protocol.mc_target``: the letter, or
  the option's text). On the forget set it is summarised as ``mean(min(r, 1/r))``: 1 when right and wrong are
  alike, as for a model that never knew.
* **Forget quality**: the KS test's p-value between a model's and the oracle's forget truth ratios (TOFU).
* **Membership inference**: a score per answer, higher for an answer the model finds *less* likely (open-
  unlearning's sign); ``mia_auc`` is the AUC of telling members (answers it was trained on) from non-members by
  it, 1 when every member is the likelier, 0.5 when they cannot be told apart.
* **PrivLeak** = (AUC - AUC_oracle) / AUC_oracle x 100: positive when a model gives its members away more than
  the oracle does. MUSE reports the AUC the other way round (1 - ours), so there the original model's PrivLeak is
  negative.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
from scipy.stats import ks_2samp

from asru_lens.core import data
from asru_lens.core.data import QA
from asru_lens.core.training import answer_batch, completion_logprobs

K = 0.4                         # Min-K% and Min-K%++: the share of least likely tokens read (open-unlearning's)
ATTACKS = ("loss", "zlib", "min_k", "min_k++")
MIA = "min_k++"                 # the attack behind the table's mia_auc and privleak: the strongest of the four
COLUMNS = ("forget_quality", "truth_ratio", "mia_auc", "privleak")


# -- one read per answer ------------------------------------------------------------------------------------------
@torch.no_grad()
def answer_stats(lens, items: list[QA], answers: list[str], batch_size: int = 16) -> list[dict]:
    """Per answer: ``logp`` (its tokens' log-probs, EOS included), and ``mu`` and ``var`` (the mean and variance of
    the log-prob under the model's own next-token distribution at each of those positions, for Min-K%++)."""
    out = []
    for i in range(0, len(items), batch_size):
        enc, ids, mask = answer_batch(lens, items[i:i + batch_size], answers[i:i + batch_size])
        logp = completion_logprobs(lens.model, enc, ids).float()               # (B, T, V)
        p = logp.exp()
        mu = (p * logp).sum(-1)
        var = (p * logp.square()).sum(-1) - mu.square()
        tok = logp.gather(2, ids.unsqueeze(-1)).squeeze(-1)
        for b in range(ids.shape[0]):
            m = mask[b].bool()
            out.append({"logp": tok[b][m].cpu(), "mu": mu[b][m].cpu(), "var": var[b][m].cpu()})
    return out


def avg_nll(stat: dict) -> float:
    return float(-stat["logp"].mean())


# -- truth ratio and forget quality ----------------------------------------------------------------------------
def option_nlls(lens, items: list[QA], ask, answer, batch_size: int = 16) -> list[np.ndarray]:
    """Per A-D item, the mean NLL (``avg_nll``) of each option read as the answer: the right one first, then the
    others by letter. ``ask(q)``: the QA asked (its prompt and image); ``answer(q, letter)``: the text scored. The
    one option read behind the truth ratio here and CLEAR's name recognition (``measure.evaluate``)."""
    asked, answers, sizes = [], [], []
    for q in items:
        letters = [q.answer] + sorted(k for k in q.options if k != q.answer)
        asked += [ask(q)] * len(letters)
        answers += [answer(q, x) for x in letters]
        sizes.append(len(letters))
    losses = np.array([avg_nll(s) for s in answer_stats(lens, asked, answers, batch_size)])
    return np.split(losses, np.cumsum(sizes)[:-1]) if sizes else []


def truth_ratios(lens, items: list[QA], batch_size: int = 16) -> np.ndarray:
    """P(wrong) / P(right) per A-D question (``items`` from ``data.classification_items``), asked in the model's
    A-D prompt with its image."""
    nlls = option_nlls(lens, items, lambda q: QA(lens.protocol.mc(q.question, q.options), q.answer, q.image, q.id,
                                                 q.kind),
                       lambda q, x: lens.protocol.mc_target(q.options, x), batch_size)
    return np.array([float(np.exp(-n[1:].mean()) / (np.exp(-n[0]) + 1e-10)) for n in nlls])


def truth_ratio_score(ratios) -> float:
    """TOFU's forget-set summary: ``mean(min(r, 1/r))`` (1: right and wrong answers alike likely)."""
    r = np.asarray(ratios, dtype=float)
    return float(np.mean(np.minimum(r, 1 / (r + 1e-10))))


def forget_quality(ratios, oracle_ratios) -> float:
    """The two-sample KS test's p-value between a model's forget truth ratios and the oracle's (TOFU): near 1 when
    they could come from one model, small when they differ."""
    return float(ks_2samp(np.asarray(ratios, float), np.asarray(oracle_ratios, float)).pvalue)


# -- membership inference ------------------------------------------------------------------------------------------
def mia_scores(stats: list[dict], answers: list[str], k: float = K) -> dict[str, np.ndarray]:
    """Every attack's score per answer (higher: less likely a member): LOSS (mean NLL), ZLib (mean NLL over the
    answer's zlib-compressed length), Min-K% (the mean NLL of its least likely ``k`` of tokens) and Min-K%++ (the
    same on token log-probs standardised by the model's own distribution there)."""
    out = {a: [] for a in ATTACKS}
    for s, text in zip(stats, answers):
        lp = s["logp"].numpy()
        n = max(1, int(len(lp) * k))
        z = (lp - s["mu"].numpy()) / np.sqrt(np.clip(s["var"].numpy(), 1e-6, None))
        out["loss"].append(-lp.mean())
        out["zlib"].append(-lp.mean() / len(zlib.compress(text.encode("utf-8"))))
        out["min_k"].append(-np.sort(lp)[:n].mean())
        out["min_k++"].append(-np.sort(z)[:n].mean())
    return {a: np.array(v, dtype=float) for a, v in out.items()}


def auc(members, nonmembers) -> float:
    """The probability that a random member scores below a random non-member (ties count half): the ROC AUC of
    telling them apart by the score, with members the likelier."""
    m, n = np.asarray(members, float), np.asarray(nonmembers, float)
    below = (m[:, None] < n[None, :]).sum() + 0.5 * (m[:, None] == n[None, :]).sum()
    return float(below / (len(m) * len(n)))


def auc_interval(members, nonmembers, member_groups, nonmember_groups, level: float = 0.95, n_boot: int = 1000,
                 seed: int = 0) -> list[float]:
    """A bootstrap interval of ``auc`` that resamples *people*, not answers (``*_groups``: whose answer each
    score is): one person's answers share a face and a name, so they are not independent draws, and with ten
    forget people the interval is wide. [lo, hi] at ``level``."""
    m, n = np.asarray(members, float), np.asarray(nonmembers, float)
    rng = np.random.default_rng(seed)

    def rows(groups):
        groups = np.asarray(groups)
        return [np.flatnonzero(groups == g) for g in dict.fromkeys(groups.tolist())]
    gm, gn = rows(member_groups), rows(nonmember_groups)
    draws = []
    for _ in range(n_boot):
        a = np.concatenate([gm[i] for i in rng.integers(len(gm), size=len(gm))])
        b = np.concatenate([gn[i] for i in rng.integers(len(gn), size=len(gn))])
        draws.append(auc(m[a], n[b]))
    tail = (1 - level) / 2 * 100
    return [float(x) for x in np.percentile(draws, [tail, 100 - tail])]


def membership_scores(lens, items: list[QA], k: float = K, batch_size: int = 16) -> dict[str, np.ndarray]:
    """``mia_scores`` of each item's ground truth, read after its prompt."""
    answers = [q.answer for q in items]
    return mia_scores(answer_stats(lens, items, answers, batch_size), answers, k)


def mia_auc(lens, members: list[QA], nonmembers: list[QA], k: float = K, batch_size: int = 16) -> dict:
    """Each attack's AUC (``auc``) of telling ``members`` (answers the model was trained on, e.g. the forget set's)
    from ``nonmembers`` (a holdout of people it never saw)."""
    m, n = (membership_scores(lens, items, k, batch_size) for items in (members, nonmembers))
    return {a: auc(m[a], n[a]) for a in ATTACKS}


def privleak(auc_model: float, auc_oracle: float) -> float:
    """MUSE's PrivLeak, on our AUC's sign: (AUC - AUC_oracle) / AUC_oracle x 100."""
    return (auc_model - auc_oracle) / (auc_oracle + 1e-10) * 100


# -- one model's read, and the table's columns ---------------------------------------------------------------------
def privacy_items(world, forget: int = 10) -> dict:
    """What the privacy read asks: the forget set's A-D questions (``truth``, photo and by name), its
    Generation_Task answers (``members``) and the holdout people's (``nonmembers``, None without a holdout)."""
    rows = world.rows(forget)["forget"]
    return {"truth": data.classification_items(rows), "members": data.generation_items(rows),
            "nonmembers": world.holdout_items()}


def read(lens, world, forget: int = 10, batch_size: int = 16) -> dict:
    """One model's privacy read: its forget truth ratios and, with a holdout, every attack's membership score of
    each member and non-member, their AUCs and each AUC's 95% interval over people (``auc_interval``). Plain
    lists, so it goes into JSON as it is."""
    items = privacy_items(world, forget)
    out = {"truth_ratios": truth_ratios(lens, items["truth"], batch_size).tolist()}
    if items["nonmembers"]:
        scores = {side: {a: v.tolist() for a, v in membership_scores(lens, items[side], batch_size=batch_size).items()}
                  for side in ("members", "nonmembers")}
        out["scores"] = scores
        out["mia_auc"] = {a: auc(scores["members"][a], scores["nonmembers"][a]) for a in ATTACKS}
        people = [[q.id for q in items[side]] for side in ("members", "nonmembers")]
        out["mia_auc_interval"] = {a: auc_interval(scores["members"][a], scores["nonmembers"][a], *people)
                                   for a in ATTACKS}
    return out


def columns(mine: dict, oracle: dict | None = None) -> dict:
    """The table's four columns from a model's ``read`` and the oracle's (None: forget quality and PrivLeak
    need the oracle, ``mia_auc`` and PrivLeak a holdout; what is missing is None, never a zero)."""
    tr = mine["truth_ratios"]
    has_auc = "mia_auc" in mine
    return {"forget_quality": forget_quality(tr, oracle["truth_ratios"]) if oracle else None,
            "truth_ratio": truth_ratio_score(tr),
            "mia_auc": mine["mia_auc"][MIA] if has_auc else None,
            "privleak": privleak(mine["mia_auc"][MIA], oracle["mia_auc"][MIA])
            if has_auc and oracle and "mia_auc" in oracle else None}
