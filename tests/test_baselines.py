"""Each baseline's loss on a tiny batch: its value, its sign and which way it pushes the log-probs; and every
loss-based method, trained through the registry, makes the forget answers less likely."""
import math
from types import SimpleNamespace

import pytest
import torch

from asru_lens.core import training as T
from asru_lens.methods.ga import ga_loss
from asru_lens.methods.gd import gd_loss
from asru_lens.methods.idk import idk_loss
from asru_lens.methods.kl import kl_loss
from asru_lens.methods.npo import npo_loss

B = SimpleNamespace(seq_nll=T.seq_nll, ga_loss=ga_loss, gd_loss=gd_loss, kl_loss=kl_loss, npo_loss=npo_loss,
                    idk_loss=idk_loss)


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
    # far below the reference the loss vanishes (it is bounded below by 0, and reaches it)
    assert B.npo_loss(lp.detach() - 1e4, mask, lp.detach()).item() == pytest.approx(0.0, abs=1e-6)
    # one nat below per token: each row's log-ratio is minus its length n, -(2/beta) log sigmoid(beta n)
    want = [-(2 / 0.1) * math.log(1 / (1 + math.exp(-0.1 * n))) for n in mask.sum(1).tolist()]
    assert lower.item() == pytest.approx(sum(want) / len(want), rel=1e-5)


def test_idk_raises_refusal_and_retain_likelihood():
    lp_i, m_i = _batch()
    lp_r = torch.tensor([[-2.0]], requires_grad=True)
    loss = B.idk_loss(lp_i, m_i, lp_r, torch.ones(1, 1))
    assert loss.item() == pytest.approx(1.25 + 2.0)
    gi, gr = torch.autograd.grad(loss, [lp_i, lp_r])
    assert (gi[m_i.bool()] < 0).all() and (gr < 0).all()


@pytest.mark.parametrize("method", ["GA", "GD", "KL", "NPO", "IDK", "MMUnlearner", "RMU"])
def test_each_method_trains_the_organism(method, organism_world):
    """Through ``methods.fit``, as `run` and `unlearn` train them: three steps make the forget answers less likely
    and leave the model's requires_grad and eval mode as they were."""
    import asru_lens
    from asru_lens import methods
    from asru_lens.run import RunConfig
    lens = asru_lens.load()
    grad = {k: p.requires_grad for k, p in lens.model.named_parameters()}
    extra = {"MMUnlearner": {"fisher_samples": 8}, "RMU": {"layer": 2}}.get(method, {})   # RMU: no probe needed
    ctx = methods.Context(lens, organism_world, RunConfig.small(), lrs={method: 1e-3},
                          overrides={method: {"steps": 3, "batch_size": 2, **extra}})
    forget = ctx.forget[:4]
    nll = lambda: T.answer_nll(lens.model, lens, forget, [q.answer for q in forget]).item()  # noqa: E731
    before = nll()
    out = methods.fit(ctx, method)
    assert out["lr"] == 1e-3 and out["grid"] is None
    losses = out["log"]["loss"] if "loss" in out["log"] else out["log"]["loss_forget"]
    assert len(losses) == 3
    assert nll() > before                                    # every method makes the forget answers less likely
    assert {k: p.requires_grad for k, p in lens.model.named_parameters()} == grad and not lens.model.training


def test_configs_check_themselves():
    from asru_lens.methods.baselines import BaselineConfig
    from asru_lens.methods.npo import NPOConfig
    from asru_lens.methods.rl import GRPOConfig
    for make, word in ((lambda: BaselineConfig(steps=0), "BaselineConfig.steps=0"),
                       (lambda: BaselineConfig(lr=float("nan")), "BaselineConfig.lr=nan"),
                       (lambda: NPOConfig(beta=-1.0), "NPOConfig.beta=-1.0"),
                       (lambda: GRPOConfig(group_size=1), "group_size=1")):
        with pytest.raises(ValueError, match=word.replace(".", r"\.")):
            make()
