"""Text-overlap metrics on ``refusal.normalize``-d words: ROUGE-1/2/L F1 and BLEU.

Written out here (a few lines each) rather than imported, so the numbers are the
same on every machine and a researcher can read exactly what is counted.
ROUGE follows Lin (2004) with F1; BLEU is sentence BLEU-4 with add-one smoothing
for n > 1 (Lin & Och 2004) and the brevity penalty.
"""
from __future__ import annotations

import math
from collections import Counter

from asru_lens.refusal import normalize


def _words(text: str) -> list[str]:
    return normalize(text).split()


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    p, r = overlap / n_pred, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_n(prediction: str, reference: str, n: int = 1) -> float:
    """ROUGE-n F1: clipped n-gram overlap."""
    pred, ref = _ngrams(_words(prediction), n), _ngrams(_words(reference), n)
    return _f1(sum((pred & ref).values()), sum(pred.values()), sum(ref.values()))


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: longest common subsequence of words."""
    pred, ref = _words(prediction), _words(reference)
    return _f1(_lcs(pred, ref), len(pred), len(ref))


def bleu(prediction: str, reference: str, max_n: int = 4) -> float:
    """Sentence BLEU-``max_n`` with add-one smoothing for n > 1 and the brevity penalty."""
    pred, ref = _words(prediction), _words(reference)
    if not pred or not ref:
        return 0.0
    logs = []
    for n in range(1, max_n + 1):
        p, r = _ngrams(pred, n), _ngrams(ref, n)
        overlap, total = sum((p & r).values()), max(sum(p.values()), 0)
        if n == 1:
            if overlap == 0:
                return 0.0
            logs.append(math.log(overlap / total))
        else:
            logs.append(math.log((overlap + 1) / (total + 1)))
    bp = 1.0 if len(pred) > len(ref) else math.exp(1 - len(ref) / len(pred))
    return bp * math.exp(sum(logs) / max_n)
