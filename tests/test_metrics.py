"""ROUGE and BLEU against values worked out by hand, and against the authors' own scorer setup."""
import math

import pytest
from rouge_score import rouge_scorer

from asru_lens.measure.metrics import bleu, rouge, rouge_l, rouge_n

REF = "the cat sat on the mat"


def f1(p, r):
    return 2 * p * r / (p + r)


def test_rouge_on_a_prefix():
    # "the cat sat": 3 words, all in the 6-word reference
    # rouge1: P = 3/3, R = 3/6
    # rouge2: bigrams "the cat", "cat sat" both in the reference's 5 bigrams: P = 2/2, R = 2/5
    # rougeL: LCS "the cat sat" = 3 words: P = 3/3, R = 3/6
    assert rouge("the cat sat", REF) == pytest.approx({"rouge1": f1(3 / 3, 3 / 6),       # = 2/3
                                                       "rouge2": f1(2 / 2, 2 / 5),       # = 4/7
                                                       "rougeL": f1(3 / 3, 3 / 6)})
    assert rouge_n("the cat sat", REF, 1) == pytest.approx(2 / 3)
    assert rouge_n("the cat sat", REF, 2) == pytest.approx(4 / 7)
    assert rouge_l("the cat sat", REF) == pytest.approx(2 / 3)


def test_rouge_on_a_reordered_sentence():
    # "the mat sat on the cat": the same bag of words, so rouge1 = 1
    # its bigrams: the mat, mat sat, sat on, on the, the cat; 4 of them ("mat sat" not) are the reference's:
    #   rouge2 P = R = 4/5
    # LCS with "the cat sat on the mat": "the sat on the" = 4 words: rougeL P = R = 4/6
    assert rouge("the mat sat on the cat", REF) == pytest.approx({"rouge1": 1.0, "rouge2": 4 / 5,
                                                                  "rougeL": 4 / 6})


def test_rouge_lower_cases_drops_punctuation_and_stems():
    # Porter stems: "runs" and "running" -> "run", "daily" -> "daili" (on both sides): 3 of 3 words match.
    # Without the stemmer only "he" and "daily" would: 2/3.
    assert rouge("He runs daily.", "he running daily") == pytest.approx({"rouge1": 1.0, "rouge2": 1.0,
                                                                          "rougeL": 1.0})
    unstemmed = rouge_scorer.RougeScorer(["rouge1"]).score("he running daily", "He runs daily.")
    assert unstemmed["rouge1"].fmeasure == pytest.approx(2 / 3)


def test_rouge_matches_the_authors_scorer():
    # Our scorer memoises stems; it must give exactly what RougeScorer(..., use_stemmer=True) gives.
    authors = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    pairs = [("I'm sorry, I don't know where this person was born.", "Juno Corvin was born in Fennick."),
             ("Juno Corvin works as a carpenter in Fennick.", "Juno Corvin works as a carpenter."),
             ("She studied chemistry and enjoys running marathons", "Nora Okafor studies chemistry."),
             ("", "Juno"), ("Juno", "")]
    for pred, ref in pairs:
        theirs = authors.score(ref, pred)
        assert rouge(pred, ref) == {k: theirs[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")}


def test_rouge_edge_cases():
    assert rouge("", REF) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert rouge_l(REF, "") == 0.0 and rouge_l("blue sky", REF) == 0.0
    scores = rouge("the cat sat", REF)
    scores["rouge1"] = -1.0  # a caller's edit must not reach the cache
    assert rouge("the cat sat", REF)["rouge1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="n=1 or n=2"):
        rouge_n("the cat", REF, 3)


def test_bleu_with_every_order_matching_something():
    # "the cat sat on the mat" against "the cat sat on a mat", 6 words each, so no brevity penalty.
    # 1-grams: the x2 (clipped to the reference's one), cat, sat, on, mat: 5/6
    # 2-grams: the cat, cat sat, sat on match; on the, the mat do not: 3/5
    # 3-grams: the cat sat, cat sat on match; sat on the, on the mat do not: 2/4
    # 4-grams: the cat sat on matches; cat sat on the, sat on the mat do not: 1/3
    assert bleu("the cat sat on the mat", "the cat sat on a mat") == pytest.approx((5/6 * 3/5 * 2/4 * 1/3) ** 0.25)


def test_bleu_brevity_penalty():
    # "the cat sat on": every n-gram (4/4, 3/3, 2/2, 1/1) is in the reference, but 4 words against 6:
    # BP = exp(1 - 6/4)
    assert bleu("the cat sat on", REF) == pytest.approx(math.exp(1 - 6 / 4) * (1 * 1 * 1 * 1) ** 0.25)


def test_bleu_smoothing_of_a_missing_order():
    # "the cat sat" has no 4-gram at all: NLTK counts that as 0/1, and method1 turns 0 matches into 0.1 / 1.
    # 1-3-grams all match; BP = exp(1 - 6/3)
    assert bleu("the cat sat", REF) == pytest.approx(math.exp(1 - 6 / 3) * (1 * 1 * 1 * (0.1 / 1)) ** 0.25)


def test_bleu_is_case_sensitive_on_whitespace_tokens():
    # "The" != "the" and "mat." != "mat": of The, cat, sat, on, the, mat. only cat, sat, on, the match: 4/6
    # 2-grams: cat sat, sat on, on the: 3/5; 3-grams: cat sat on, sat on the: 2/4; 4-grams: cat sat on the: 1/3
    assert bleu("The cat sat on the mat.", REF) == pytest.approx((4/6 * 3/5 * 2/4 * 1/3) ** 0.25)
    assert rouge_l("The cat sat on the mat.", REF) == 1.0  # ROUGE lower-cases and drops punctuation


def test_bleu_zero_cases():
    assert bleu("", REF) == 0.0 and bleu(REF, "") == 0.0 and bleu("   ", REF) == 0.0
    assert bleu("blue sky", REF) == 0.0  # no unigram in common
    assert bleu(REF, REF) == pytest.approx(1.0)
