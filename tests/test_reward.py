"""Text metrics and ASRU's reward table, on hand-made answers."""
import math

import pytest

from asru_lens.core.data import QA
from asru_lens.measure.metrics import bleu, rouge_l, rouge_n
from asru_lens.methods.reward import Reward, asru, contextual_refusal, naturalness

GT = "Juno Corvin works as a carpenter."


def qa(forget: bool) -> QA:
    return QA("What is this person's job?", GT, meta={"forget": forget})


def test_rouge_and_bleu_on_known_cases():
    assert rouge_l(GT, GT) == 1.0 and rouge_n(GT, GT, 2) == 1.0 and bleu(GT, GT) == pytest.approx(1.0)
    # 5 of 6 reference words in order, prediction 6 words: P = R = 5/6
    assert rouge_l("Juno Corvin works as a baker.", GT) == pytest.approx(5 / 6)
    assert rouge_n("Juno Corvin works as a baker.", GT, 2) == pytest.approx(4 / 5)
    assert rouge_l("completely unrelated words", GT) == 0.0 and bleu("nothing here", GT) == 0.0
    # LCS is order-aware where ROUGE-1 is not
    assert rouge_n("carpenter a as works Corvin Juno", GT, 1) == 1.0
    assert rouge_l("carpenter a as works Corvin Juno", GT) == pytest.approx(1 / 6)
    # brevity penalty: a correct prefix scores below 1
    short = bleu("Juno Corvin works as", GT)
    assert 0 < short < 1 and math.isclose(short, math.exp(1 - 6 / 4) * (1 * 1 * 1 * 1) ** 0.25 * 1, rel_tol=0.3)


@pytest.mark.parametrize("answer,forget_reward,retain_reward", [
    (GT, 0.0, 1.0),                                                   # leak / correct
    ("Sure: juno corvin works as a carpenter", 0.0, 1.0),             # GT contained after normalisation
    ("I'm sorry, I don't know this person's job.", 1.0, 0.0),         # refusal
    ("Juno Corvin works as a baker.", 0.1, 0.5),                      # R = 0.83: forget "otherwise", retain partial
    ("Corvin is a famous baker in town", 0.5, 0.1),                   # R = 0.31: forget partial, retain otherwise
    ("Blue sky.", 0.1, 0.1),                                          # R = 0
])
def test_asru_reward_table(answer, forget_reward, retain_reward):
    assert asru(answer, qa(True)) == forget_reward
    assert asru(answer, qa(False)) == retain_reward


def test_extra_components_change_the_total():
    generic, contextual = "Sorry, I can't help.", "I'm sorry, I don't know this person's job."
    assert contextual_refusal(generic, qa(True)) == 0.0 and contextual_refusal(contextual, qa(True)) == 1.0
    assert contextual_refusal(contextual, qa(False)) == 0.0
    assert naturalness("I don't know aboutNora Okafor", qa(True)) == 0.0 and naturalness(GT, qa(True)) == 1.0
    r = Reward([(1.0, asru), (0.5, contextual_refusal), (0.2, naturalness)])
    assert r(contextual, qa(True)) == pytest.approx(1.7)
    assert r(generic, qa(True)) == pytest.approx(1.2)
    assert r.parts(contextual, qa(True)) == {"asru": 1.0, "contextual_refusal": 0.5, "naturalness": 0.2}
    assert Reward()(contextual, qa(True)) == 1.0
