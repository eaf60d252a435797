"""Each baseline's loss on a tiny batch: its value, its sign and which way it pushes the log-probs."""
import math

import pytest
import torch

from asru_lens import baselines as B


def _batch():
    lp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return lp, mask


def test_seq_nll_ignores_padding():
    lp, mask = _batch()
    assert B.seq_nll(lp, mask).tolist() == pytest.approx([2.0, 0.5])


def test_ga_pushes_forget_likelihood_down():
    lp, mask = _batch()
    loss = B.ga_loss(lp, mask)
    assert loss.item() == pytest.approx(-1.25)              # minus the mean NLL
    g, = torch.autograd.grad(loss, lp)
    assert (g[mask.bool()] > 0).all() and g[1, 2] == 0      # descent lowers every real forget token's log-prob


def test_gd_raises_retain_likelihood():
    lp_f, m_f = _batch()
    lp_r = torch.tensor([[-2.0, -2.0]], requires_grad=True)
    loss = B.gd_loss(lp_f, m_f, lp_r, torch.ones(1, 2))
    assert loss.item() == pytest.approx(-1.25 + 2.0)
    g, = torch.autograd.grad(loss, lp_r)
    assert (g < 0).all()


def test_kl_is_zero_at_the_reference_and_positive_away_from_it():
    lp_f, m_f = _batch()
    ref = torch.log_softmax(torch.tensor([[[1.0, 2.0, 0.5]]]), -1)
    same = B.kl_loss(lp_f, m_f, ref.clone(), ref, torch.ones(1, 1))
    assert same.item() == pytest.approx(-1.25)
    other = torch.log_softmax(torch.tensor([[[3.0, 0.0, 0.0]]]), -1)
    assert B.kl_loss(lp_f, m_f, other, ref, torch.ones(1, 1)).item() > -1.25


def test_npo_value_at_reference_and_direction():
    lp, mask = _batch()
    loss = B.npo_loss(lp, mask, lp.detach(), beta=0.1)
    assert loss.item() == pytest.approx(2 / 0.1 * math.log(2))
    g, = torch.autograd.grad(loss, lp)
    assert (g[mask.bool()] > 0).all()
    lower = B.npo_loss(lp.detach() - 1.0, mask, lp.detach(), beta=0.1)
    assert lower.item() < loss.item()                       # having forgotten is rewarded, and bounded below by 0
    assert B.npo_loss(lp.detach() - 1e4, mask, lp.detach()).item() >= 0


def test_idk_raises_refusal_and_retain_likelihood():
    lp_i, m_i = _batch()
    lp_r = torch.tensor([[-2.0]], requires_grad=True)
    loss = B.idk_loss(lp_i, m_i, lp_r, torch.ones(1, 1))
    assert loss.item() == pytest.approx(1.25 + 2.0)
    gi, gr = torch.autograd.grad(loss, [lp_i, lp_r])
    assert (gi[m_i.bool()] < 0).all() and (gr < 0).all()


@pytest.mark.parametrize("method", B.METHODS)
def test_each_method_trains_the_organism(method, world_folder):
    import asru_lens
    from asru_lens import data
    lens = asru_lens.load()
    forget = data.generation_items(data.load_split(world_folder, "forget_10"))[:4]
    retain = data.generation_items(data.load_split(world_folder, "retain_90"))[:4]
    batch = B.answer_batch(lens, forget, [q.answer for q in forget])
    before = B.seq_nll(*B._lp(lens.model, batch)[:2]).mean().item()
    log = B.unlearn_baseline(lens, forget, retain, B.BaselineConfig(method, steps=3, batch_size=2, lr=1e-3),
                             progress=False)
    after = B.seq_nll(*B._lp(lens.model, batch)[:2]).mean().item()
    assert len(log["loss"]) == 3
    assert after > before                                    # every method makes the forget answers less likely
    with pytest.raises(ValueError, match="method 'XX'"):
        B.unlearn_baseline(lens, forget, retain, B.BaselineConfig("XX"), progress=False)
