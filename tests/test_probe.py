"""The probe: activations equal HF and TransformerLens, the steps' maths, and clear errors."""
import copy

import numpy as np
import pytest
import torch

from asru_lens.core import data

from asru_lens.interpret import probe, steer
from asru_lens.core.data import QA


@pytest.fixture(scope="module")
def mixed(organism, world_folder):
    """Four image prompts and two text-only ones, as one left-padded batch."""
    items = data.generation_items(data.load_split(world_folder, "forget_10"))[:4]
    items += [QA("Where was Nora Okafor born?", ""), QA("How do I bake a loaf of bread?", "")]
    return items, organism.encode([q.question for q in items], [q.image for q in items])


def close(a, b):
    """Equal to within 1e-5 in fp32, relative to each activation vector's scale: |a - b| <= 1e-5 (1 + max |b|)
    over the hidden dimension, at every token. Rounding in a matmul scales with the size of the terms, not of
    the result, so an element near zero in a vector whose entries reach 100 carries that vector's rounding
    (measured on the organism: at most 2.3e-5 absolute, 2e-7 relative to the norm, between two paths)."""
    scale = 1 + b.abs().amax(-1, keepdim=True)
    return bool(((a - b).abs() <= 1e-5 * scale).all())


@torch.no_grad()
def test_resid_pre_equals_transformerlens_and_hf(organism, mixed):
    from transformer_lens.model_bridge import TransformerBridge

    from asru_lens.core.load import ORGANISM_DIR
    items, enc = mixed
    T = enc["input_ids"].shape[1]
    ours = probe.resid_pre(organism, enc, list(range(-T, 0)))        # (batch, layers, T, d)
    assert ours.shape == (6, organism.n_layers, T, organism.model.config.text_config.hidden_size)

    # the bridge rewires the model it is given in place; give it a copy so the shared organism stays savable
    bridge = TransformerBridge.boot_transformers(str(ORGANISM_DIR), hf_model=copy.deepcopy(organism.model),
                                                 tokenizer=organism.tokenizer)
    bridge.processor = organism.processor
    _, cache = bridge.run_with_cache(enc["input_ids"], pixel_values=enc["pixel_values"],
                                     image_grid_thw=enc["image_grid_thw"], attention_mask=enc["attention_mask"],
                                     mm_token_type_ids=enc["mm_token_type_ids"])
    real = enc["attention_mask"].bool()  # left padding: fully masked rows hold arbitrary values in any path
    for i in range(organism.n_layers):
        assert close(ours[:, i][real], cache[f"blocks.{i}.hook_in"][real]), f"layer {i} vs TransformerLens"

    # HF records each layer's output *before* DeepStack adds visual features behind it: resid_pre[i] equals
    # hidden_states[i] plus deepstack feature i-1 at image positions, and equals it everywhere else.
    hs = organism.model(**enc, output_hidden_states=True).hidden_states
    deep = organism.model.model.get_image_features(enc["pixel_values"], enc["image_grid_thw"]).deepstack_features
    image = enc["input_ids"] == organism.model.config.image_token_id
    assert image[:4].any() and not image[4:].any()
    for i in range(organism.n_layers):
        expected = hs[i].clone()
        if 1 <= i <= len(deep):
            expected[image] += torch.cat(deep[i - 1])
            assert (ours[:, i][image] - hs[i][image]).abs().max() > 1e-3  # DeepStack really is there
        assert close(ours[:, i][real], expected[real]), f"layer {i} vs HF hidden_states"


def test_mean_activations_float64_and_batch_invariant(organism, mixed):
    items, _ = mixed
    m1 = probe.mean_activations(organism, items, batch_size=6)
    m2 = probe.mean_activations(organism, items, batch_size=4)
    acts = probe.activations(organism, items, batch_size=3)
    assert m1.dtype == torch.float64 and m1.shape == acts.shape[1:]
    assert torch.allclose(m1, m2, atol=1e-5) and torch.allclose(m1, acts.double().mean(0), atol=1e-5)
    # post-instruction tokens are the same ids in every prompt: layer 0 reads the same embedding
    assert acts[:, 0].std(0).max() == 0 and acts[:, 2].std(0).max() > 0


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 30).round(1), rng.normal(0, 1, 40).round(1)   # rounding makes ties
    pairs = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert probe.auroc(pos, neg) == pytest.approx(pairs, abs=1e-12)
    assert probe.auroc([2, 3], [0, 1]) == 1.0 and probe.auroc([0, 1], [2, 3]) == 0.0


def test_refusal_score_is_log_odds():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5], [0.9, 0.05, 0.05]]))
    s = probe.refusal_score(logits, [0, 1])
    assert s.tolist() == pytest.approx([np.log(0.5 / 0.5), np.log(0.95 / 0.05)], abs=1e-6)


def test_direction_helpers():
    a, b = torch.randn(4, 5, 8, dtype=torch.float64), torch.randn(4, 5, 8, dtype=torch.float64)
    assert torch.equal(probe.diff_in_means(a, b), a - b)
    m = probe.cosine_matrix(a[:, 0])
    assert m.shape == (4, 4) and torch.allclose(m.diagonal(), torch.ones(4, dtype=torch.float64))
    with pytest.raises(probe.ProbeError, match="cannot be subtracted"):
        probe.diff_in_means(a, b[:, :3])


@torch.no_grad()
def test_ablation_equals_plain_pytorch_hooks(organism, mixed):
    """steer.ablate in an nnsight trace == projecting r out with forward hooks on every layer's input and the
    last layer's output; and it does change the logits."""
    _, enc = mixed
    r = torch.randn(organism.model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    unit = r / r.norm()

    def project_in(module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        h -= (h @ unit).unsqueeze(-1) * unit

    def project_out(module, args, output):
        output -= (output @ unit).unsqueeze(-1) * unit

    handles = [layer.register_forward_pre_hook(project_in, with_kwargs=True) for layer in organism.layers]
    handles.append(organism.layers[-1].register_forward_hook(project_out))
    try:
        reference = organism.model(**enc).logits[:, -1]
    finally:
        for h in handles:
            h.remove()
    ours = steer.last_logits(organism, enc, steer.Steering(r, mode="ablate"))
    assert torch.allclose(ours, reference, atol=1e-5)
    assert (ours - steer.last_logits(organism, enc)).abs().max() > 1e-2


def test_bad_input_errors(organism, mixed, tmp_path):
    items, enc = mixed
    with pytest.raises(probe.ProbeError, match="refusal set is empty"):
        probe.mean_activations(organism, [], desc="refusal set")
    with pytest.raises(probe.ProbeError, match="refused none of the 2 prompts"):
        probe.keep_refusals(items[:2], ["Juno was born in Fennick.", "Sure!"])
    with pytest.raises(steer.InterventionError, match="layer 7 is out of range.*0..3"):
        steer.generate_with_addition(organism, items[:1], 7, torch.zeros(192))
    with pytest.raises(data.DataError, match="missing.png.*does not exist"):
        probe.activations(organism, [QA("Who is this?", "", str(tmp_path / "missing.png"))])
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(data.DataError, match="corrupt.png.*missing or corrupt"):
        probe.activations(organism, [QA("Who is this?", "", str(bad))])
