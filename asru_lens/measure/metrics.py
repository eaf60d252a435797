"""Text-overlap metrics, computed exactly as ASRU's authors do: ROUGE-1/2/L F-measure and sentence BLEU-4.

Both come from the packages the authors use (their ``eval/MLLMU_eval.py`` and their RL reward,
``EasyR1/examples/reward_function/all_reward_copy.py``), so our numbers can be set beside theirs:

* **ROUGE** (``rouge-score``): ``RougeScorer(['rouge1', 'rouge2', 'rougeL'], use_stemmer=True)``, called as
  ``score(reference, prediction)``, F-measure. Its tokenizer lower-cases, turns everything but ``a-z0-9`` into
  spaces (so non-ASCII letters are dropped) and Porter-stems words longer than three characters
  ("running" and "runs" both become "run"). ROUGE-L is the sentence-level longest common subsequence.
* **BLEU** (``nltk``): ``sentence_bleu([reference.split()], prediction.split(),
  smoothing_function=SmoothingFunction().method1)``: whitespace tokens, case-sensitive, punctuation stays glued
  to its word, uniform 4-gram weights, brevity penalty, and a zero n-gram precision replaced by 0.1 / count.
  No unigram in common, or an empty prediction or reference, gives 0.

Every function takes ``(prediction, reference)``, the order the rest of asru_lens uses.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.stem import porter
from rouge_score import rouge_scorer, tokenize, tokenizers

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_SMOOTHING = SmoothingFunction().method1


class _MemoStemmer:
    """NLTK's PorterStemmer (what ``use_stemmer=True`` builds) with each word's stem remembered: stemming is
    three quarters of a ROUGE call, and answers keep reusing the same few hundred words."""

    def __init__(self):
        self.stem = lru_cache(maxsize=1 << 16)(porter.PorterStemmer().stem)


class _StemmingTokenizer(tokenizers.Tokenizer):
    """rouge-score's ``DefaultTokenizer(use_stemmer=True)``, token for token, over the memoised stemmer."""

    def __init__(self):
        self._stemmer = _MemoStemmer()

    def tokenize(self, text):
        return tokenize.tokenize(text, self._stemmer)


@lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    # Built once, on first use: the RL reward calls ROUGE thousands of times. Equivalent to the authors'
    # RougeScorer([...], use_stemmer=True); tests/test_metrics.py checks the two agree.
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=_StemmingTokenizer())


@lru_cache(maxsize=1 << 16)
def _rouge(prediction: str, reference: str) -> tuple[float, float, float]:
    # Cached because GRPO groups and repeated evaluations score the same (answer, ground truth) pairs again;
    # a tuple, so no caller can mutate a cached value.
    scores = _scorer().score(reference, prediction)  # target first, as the authors call it
    return tuple(scores[t].fmeasure for t in ROUGE_TYPES)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """``{"rouge1", "rouge2", "rougeL"}`` F-measures of ``prediction`` against ``reference``, one scorer call."""
    return dict(zip(ROUGE_TYPES, _rouge(prediction, reference)))


def rouge_n(prediction: str, reference: str, n: int = 1) -> float:
    """ROUGE-n F-measure, n = 1 or 2 (the two the authors report)."""
    if n not in (1, 2):
        raise ValueError(f"rouge_n supports n=1 or n=2 (the authors' rouge1/rouge2), got n={n}")
    return _rouge(prediction, reference)[n - 1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure: longest common subsequence of stemmed words."""
    return _rouge(prediction, reference)[2]


def bleu(prediction: str, reference: str) -> float:
    """The authors' sentence BLEU-4 (see the module docstring); 0.0 for an empty prediction or reference."""
    hypothesis, ref = prediction.split(), reference.split()
    if not hypothesis or not ref:
        return 0.0
    with warnings.catch_warnings():
        # NLTK warns about zero n-gram counts on short answers; method1 smoothing already handles them.
        warnings.simplefilter("ignore", UserWarning)
        return float(sentence_bleu([ref], hypothesis, smoothing_function=_SMOOTHING))
