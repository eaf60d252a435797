"""The guard against library drift: one read of every kind the toolkit makes through nnsight, on the organism,
each compared with the same values read by plain PyTorch hooks, after the model has been through a training step.

A release of transformers or nnsight that changes how a module is called breaks these in seconds, with the
versions in the message, instead of 20 minutes into `asru-lens run` (issue 35: transformers 5.25 kernelized the
RMSNorms on every ``train()``, which overwrote the forward nnsight had wrapped). How to move a bound:
docs/development.md, "Library versions".
"""
import contextlib
from importlib.metadata import version

import pytest
import torch

VERSIONS = ", ".join(f"{p} {version(p)}" for p in ("transformers", "nnsight", "torch"))


@contextlib.contextmanager
def read(kind: str):
    """Turn any failure of one read into a message that names the read, the versions and what to do."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - any error here means the library changed under us
        pytest.fail(f"tracing broke: {kind} failed under {VERSIONS}: {type(e).__name__}: {e}\n"
                    f"A library release changed the modules asru_lens traces. Install the tested versions "
                    f"(pip install -c constraints.txt -e .) and see docs/development.md, 'Library versions'.",
                    pytrace=False)


@pytest.fixture(scope="module")
def trained(organism_world):
    """A fresh organism that has been through train(), a forward and backward pass, and eval(): the state every
    read-out in `run` and `residue` meets after a method or an attack has trained (no weight moves)."""
    import asru_lens
    from asru_lens import data
    lens = asru_lens.load()
    items = data.generation_items(organism_world.rows(10)["forget"])[:3]
    lens.nn  # wrap first, as a run does: the probe traces before any method trains
    lens.model.train()
    lens.model(**lens.encode([q.question for q in items], [q.image for q in items])).logits.sum().backward()
    lens.model.zero_grad(set_to_none=True)
    lens.model.eval()
    return lens, items


def hooked(lens, enc, positions) -> torch.Tensor:
    """(batch, layers + 1, positions, d): every layer's input and the final norm's output, by PyTorch hooks."""
    saved, handles = [], []
    for layer in lens.layers:
        handles.append(layer.register_forward_pre_hook(
            lambda m, args, kwargs: saved.append((args[0] if args else kwargs["hidden_states"])[:, positions].clone()),
            with_kwargs=True))
    handles.append(lens.model.model.language_model.norm.register_forward_hook(
        lambda m, args, out: saved.append(out[:, positions].clone())))
    try:
        with torch.no_grad():
            lens.model(**enc)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(saved, 1).float()


def test_probe_activations_read_resid_pre(trained):
    from asru_lens.interpret import activations
    lens, items = trained
    positions = lens.post_instruction_positions()
    with read("the probe's resid_pre (interpret.activations)"):
        acts = activations.activations(lens, items, positions)
    want = hooked(lens, lens.encode([q.question for q in items], [q.image for q in items]), positions)[:, :-1]
    assert acts.shape == (len(items), lens.n_layers, len(positions), want.shape[-1])
    torch.testing.assert_close(acts, want)


@pytest.mark.parametrize("readout", ["prompt", "prefill"])
def test_residue_read_states_read_every_layer_and_the_final_norm(trained, readout):
    from asru_lens.measure import residue
    lens, items = trained
    prefixes = [q.answer.split()[0] for q in items] if readout == "prefill" else None
    with read(f"residue.read_states, {readout} read-out"):
        states = residue.read_states(lens, items, prefixes)
    texts = [lens.prompt(lens.protocol.gen(q.question), q.image) + (prefixes[j] if prefixes else "")
             for j, q in enumerate(items)]
    lens.tokenizer.padding_side = "left"
    enc = lens.processor(text=texts, images=[q.image for q in items], return_tensors="pt", padding=True)
    want = hooked(lens, enc, [-1])[:, :, 0]
    assert states.shape == (len(items), lens.n_layers + 1, want.shape[-1])
    torch.testing.assert_close(states, want)


def test_steering_under_nnsight_matches_the_hooks_and_moves_the_answer(trained):
    from asru_lens.interpret import steer
    lens, items = trained
    direction = torch.randn(lens.model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    spec = steer.Steering(direction * 8, layer=1)
    with read("steering under nnsight (steer.generate)"):
        steered = steer.generate(lens, items, spec, max_new_tokens=8)
    with steer.steering(lens, spec):
        hooked_answers = lens.generate([q.question for q in items], [q.image for q in items], max_new_tokens=8)
    plain = lens.generate([q.question for q in items], [q.image for q in items], max_new_tokens=8)
    assert steered == hooked_answers
    assert steered != plain, "the steering was not applied"


def test_logit_lens_last_entry_is_the_models_own_rank(trained):
    from asru_lens.measure import residue
    lens, items = trained
    class FirstWord:             # each answer's value is its first word: read at the last prompt token
        def key(self, q):
            return {q.answer.split()[0].strip(".,").lower()}
    with read("the logit lens (residue.logit_lens_rank)"):
        ranks = residue.logit_lens_rank(lens, items, FirstWord())
    assert len(ranks) == lens.n_layers + 1
    texts = [lens.prompt(lens.protocol.gen(q.question), q.image) for q in items]
    lens.tokenizer.padding_side = "left"
    enc = lens.processor(text=texts, images=[q.image for q in items], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = lens.model(**enc).logits[:, -1].float()
    first = torch.tensor([lens.tokenizer(q.answer, add_special_tokens=False)["input_ids"][0] for q in items])
    rank = (logits > logits.gather(1, first[:, None])).sum(1).float().median()
    assert ranks[-1] == float(rank)


def test_a_model_loaded_with_hub_kernels_still_traces(organism_world):
    """A model someone loaded with transformers' hub kernels on (the default from 5.25): wrapping it turns them
    off, so a later train() leaves the forwards nnsight installed in place."""
    from transformers import AutoModelForImageTextToText

    import asru_lens
    from asru_lens import data
    from asru_lens.core.load import ORGANISM_DIR, Lens
    from asru_lens.measure import residue
    lens = asru_lens.load()
    try:
        model = AutoModelForImageTextToText.from_pretrained(ORGANISM_DIR, use_kernels=True)
    except Exception as e:  # noqa: BLE001 - a transformers without the kernels package cannot load it this way
        pytest.skip(f"transformers cannot load with use_kernels=True here: {e}")
    kernel_lens = Lens(model.eval(), lens.processor, "organism", lens.protocol, lens.presets)
    items = data.generation_items(organism_world.rows(10)["forget"])[:2]
    before = residue.read_states(kernel_lens, items)
    model.train()
    model.eval()
    with read("residue.read_states after train() on a model loaded with use_kernels=True"):
        after = residue.read_states(kernel_lens, items)
    torch.testing.assert_close(after, before)
