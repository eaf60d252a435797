"""Stage 1 (redirect) and saving an unlearned model."""
import pytest
import torch

import asru_lens
from asru_lens.core import data
from asru_lens.methods import redirect


@pytest.fixture(scope="module")
def items(world_folder):
    forget = data.generation_items(data.load_split(world_folder, "forget_10"))[:8]
    retain = data.generation_items(data.load_split(world_folder, "retain_90"))[:16]
    return forget, retain


@pytest.fixture(scope="module")
def direction():
    torch.manual_seed(0)
    return torch.randn(asru_lens.load().model.config.text_config.hidden_size) * 5


def test_redirect_moves_forget_along_v_and_touches_only_one_down_proj(items, direction):
    forget, retain = items
    lens = asru_lens.load()
    before = {k: v.clone() for k, v in lens.model.state_dict().items()}
    w0 = lens.layers[1].mlp.down_proj.weight.detach().clone()
    log = redirect.redirect(lens, direction, 2, forget, retain, redirect.RedirectConfig(lr=5e-3, epochs=2),
                            progress=False)
    changed = [k for k, v in lens.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["model.language_model.layers.1.mlp.down_proj.weight"]
    assert log["set"].count("forget") == 2 * (16 // 2 // 2) and log["set"].count("retain") == 2 * 8
    # forget prompts moved along v far more than retain prompts, and the right way
    assert log["shift"]["forget"] > 3 * abs(log["shift"]["retain"]) and log["shift"]["forget"] > 1.0
    assert log["shift"]["forget"] == pytest.approx(redirect.shift(lens, forget, 2, direction, w0))
    assert all(p.requires_grad for p in lens.model.parameters())      # the model is left as it was found


def test_frozen_state_without_a_frozen_copy(items, direction):
    """h_frozen = h - a @ (W - W0).T equals the state computed with W0 put back."""
    forget, _ = items
    lens = asru_lens.load()
    down = lens.layers[1].mlp.down_proj
    w0 = down.weight.detach().clone()
    with torch.no_grad():
        down.weight.add_(torch.randn_like(down.weight) * 0.05)
        enc = lens.encode([q.question for q in forget], [q.image for q in forget])
        h, a = redirect.last_token_state(lens, enc, 2)
        h_trick = h - a @ (down.weight - w0).T
        down.weight.copy_(w0)
        h_frozen, _ = redirect.last_token_state(lens, enc, 2)
        # and it is resid_pre[2] at the last token, as the probe reads it
        hs = lens.model(**enc, output_hidden_states=True).hidden_states[2][:, -1]
    torch.testing.assert_close(h_trick, h_frozen, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_frozen, hs, rtol=1e-6, atol=1e-6)


def test_redirect_bad_input(items, direction):
    forget, retain = items
    lens = asru_lens.load()
    with pytest.raises(ValueError, match="layer=0"):
        redirect.redirect(lens, direction, 0, forget, retain, progress=False)
    with pytest.raises(ValueError, match="got 0 forget"):
        redirect.redirect(lens, direction, 2, [], retain, progress=False)
    with pytest.raises(ValueError, match="direction"):
        redirect.redirect(lens, direction[:5], 2, forget, retain, progress=False)


def test_save_reopens_and_a_failed_save_keeps_the_old_folder(tmp_path, items, monkeypatch):
    forget, _ = items
    lens = asru_lens.load()
    with torch.no_grad():
        lens.layers[1].mlp.down_proj.weight.mul_(1.5)          # an "unlearned" model differs from the organism
    want = lens.generate([q.question for q in forget[:4]], [q.image for q in forget[:4]], max_new_tokens=12)
    out = lens.save(tmp_path / "unlearned")
    back = asru_lens.load(str(out))
    assert back.generate([q.question for q in forget[:4]], [q.image for q in forget[:4]], max_new_tokens=12) == want
    assert torch.equal(back.layers[1].mlp.down_proj.weight, lens.layers[1].mlp.down_proj.weight)
    listing = sorted(p.name for p in tmp_path.iterdir())

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(back.processor, "save_pretrained", broken)
    with torch.no_grad():
        back.layers[1].mlp.down_proj.weight.zero_()
    with pytest.raises(OSError, match="disk full"):
        back.save(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == listing   # no temp folder left behind
    again = asru_lens.load(str(out))                               # the good copy is intact
    assert torch.equal(again.layers[1].mlp.down_proj.weight, lens.layers[1].mlp.down_proj.weight)


def test_cached_inputs_train_what_a_forward_pass_per_step_trains(items, direction):
    """Stage 1 on ``redirect_inputs`` (computed once, shared by a grid) takes the gradient a forward pass through
    the model takes: h(W) - h_frozen = a @ (W - W0).T exactly; the cached inputs are the model's own."""
    forget, retain = items
    lens = asru_lens.load()
    down = lens.layers[1].mlp.down_proj
    w0 = down.weight.detach().clone()
    inputs = redirect.redirect_inputs(lens, forget + retain, 2, batch_size=5)
    cfg = redirect.RedirectConfig(lr=5e-3, epochs=1)
    redirect.redirect(lens, direction, 2, forget, retain, cfg, progress=False, inputs=inputs)
    cached = down.weight.detach().clone()
    # the same steps by hand, each batch through the model with W as it is then
    with torch.no_grad():
        down.weight.copy_(w0)
    v = direction.float()
    enc = lens.encode([q.question for q in forget[:2]], [q.image for q in forget[:2]])
    h, a = redirect.last_token_state(lens, enc, 2)
    torch.testing.assert_close(a, inputs[:2], rtol=1e-4, atol=1e-5)
    loss = torch.nn.functional.mse_loss(h.float(), (h - a @ (down.weight - w0).T).detach().float() + cfg.c * v)
    down.weight.grad = None                 # what the training left
    loss.backward()
    want = down.weight.grad.clone()
    down.weight.grad = None
    moved = a.detach() @ (down.weight - w0).T
    torch.nn.functional.mse_loss(moved.float(), (cfg.c * v).expand_as(moved)).backward()
    torch.testing.assert_close(down.weight.grad, want, rtol=1e-4, atol=1e-7)
    assert not torch.equal(cached, w0)
    with pytest.raises(ValueError, match="inputs hold 3 prompts"):
        redirect.redirect(lens, direction, 2, forget, retain, cfg, progress=False, inputs=inputs[:3])
