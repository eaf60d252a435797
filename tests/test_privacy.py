"""Truth ratio, forget quality, membership inference and PrivLeak (asru_lens.measure.privacy): the formulas on
numbers worked by hand, then on the organism, which knows its forget people."""
import numpy as np
import pytest
import torch

from asru_lens.core import data
from asru_lens.core.data import QA
from asru_lens.measure import privacy


def test_the_scores_by_hand():
    assert privacy.auc([0.1, 0.2], [0.3, 0.4]) == 1.0            # every member the likelier
    assert privacy.auc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert privacy.auc([0.1, 0.3], [0.2, 0.3]) == 0.625          # 2 of 4 pairs below, one tie (half)
    assert privacy.truth_ratio_score([0.5, 2.0, 1.0]) == pytest.approx(2 / 3)
    assert privacy.privleak(0.8, 0.5) == pytest.approx(60.0) and privacy.privleak(0.5, 0.5) == 0.0
    same = np.linspace(0.1, 1.0, 40)
    assert privacy.forget_quality(same, same) == pytest.approx(1.0)
    assert privacy.forget_quality(same, same + 5) < 1e-6
    lp = torch.log(torch.tensor([0.5, 0.25, 0.125, 0.5, 0.5]))
    stat = {"logp": lp, "mu": torch.full((5,), -1.0), "var": torch.full((5,), 4.0)}
    s = privacy.mia_scores([stat], ["abcd"], k=0.4)
    nll = -lp.numpy()
    assert s["loss"][0] == pytest.approx(nll.mean())
    assert s["zlib"][0] == pytest.approx(nll.mean() / len(__import__("zlib").compress(b"abcd")))
    assert s["min_k"][0] == pytest.approx(np.sort(nll)[-2:].mean())             # the 2 least likely of 5 tokens
    assert s["min_k++"][0] == pytest.approx(-np.sort((-nll + 1.0) / 2.0)[:2].mean())


def test_the_auc_interval_resamples_people():
    """Four answers per person that score alike are one draw, not four: resampling people gives a wider interval
    than resampling answers; fully separated groups give [1, 1]."""
    members = np.repeat([0.0, 1.0, 2.0, 3.0], 4)                  # 4 people x 4 answers
    nonmembers = np.repeat([0.5, 1.5, 2.5, 3.5], 4)
    people = np.repeat([0, 1, 2, 3], 4)
    point = privacy.auc(members, nonmembers)
    assert point == 0.625                                         # 10 of 16 person pairs below
    lo, hi = privacy.auc_interval(members, nonmembers, people, people)
    assert lo < point < hi
    lo_a, hi_a = privacy.auc_interval(members, nonmembers, np.arange(16), np.arange(16))
    assert hi - lo > 1.5 * (hi_a - lo_a), (lo, hi, lo_a, hi_a)
    assert privacy.auc_interval([0.1, 0.2], [0.3, 0.4], [0, 1], [0, 1]) == [1.0, 1.0]


def test_on_the_organism_the_truth_and_the_members_stand_out(organism, organism_world):
    rows = organism_world.rows(10)
    mc = data.classification_items(rows["forget"])[:16]
    ratios = privacy.truth_ratios(organism, mc)
    assert ratios.shape == (16,) and (ratios > 0).all()
    assert (ratios < 1).all() and privacy.truth_ratio_score(ratios) < 0.4    # it knows them: the right option likelier
    gen = data.generation_items(rows["forget"])[:16]
    members = [QA(organism.protocol.gen(q.question), q.answer, q.image, q.id, q.kind) for q in gen]
    # the same questions with another person's answers: pairings it was never trained on
    others = [QA(m.question, gen[(i + 5) % len(gen)].answer, m.image, m.id, m.kind) for i, m in enumerate(members)]
    aucs = privacy.mia_auc(organism, members, others)
    assert set(aucs) == set(privacy.ATTACKS) and min(aucs.values()) >= 0.9, aucs
    stats = privacy.answer_stats(organism, members[:2], [m.answer for m in members[:2]])
    assert [s["logp"].shape == s["mu"].shape == s["var"].shape for s in stats] == [True, True]
    assert all(float(s["var"].min()) >= -1e-4 for s in stats)
