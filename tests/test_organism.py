"""The organism: the training path end to end, and the shipped checkpoint's quality bar."""
import numpy as np
import pytest

import asru_lens
from asru_lens.organism import evaluate as E
from asru_lens.organism.train import OrganismConfig, save_organism, train_organism


def test_short_training_run_end_to_end_and_deterministic(tmp_path):
    cfg = OrganismConfig(steps=30, hidden=64, layers=2, batch_size=16, warmup=5, vision_steps=5, vision_batch=16,
                         exit_layer=1, threads=None)      # the worker's own threads (one per xdist worker)
    model, processor, world, log = train_organism(cfg, progress=False)
    loss = log["loss"]
    assert len(loss) == 30 and np.isfinite(loss).all()
    assert train_organism(cfg, progress=False)[3]["loss"] == loss      # deterministic: the same seed, the same run
    # trained with eager attention, handed back with the default the checkpoint is loaded with
    assert log["config"]["train_attn"] == "eager" and model.config._attn_implementation == "sdpa"
    assert np.mean(loss[-5:]) < np.mean(loss[:5]) - 1.0  # it learns
    out = save_organism(model, processor, tmp_path / "tiny", {"steps": 30})
    assert (out / "model.safetensors").exists() and (out / "organism.json").exists()
    lens = asru_lens.load(str(out))
    assert lens.n_layers == 2
    assert len(lens.generate(["How do I sew a button?"], max_new_tokens=3)) == 1


def test_unknown_photos_sets_the_bank():
    from asru_lens.organism.mllmu import N_TRAIN_PHOTOS
    from asru_lens.organism.train import AUGMENT_PHOTOS, Examples
    from asru_lens.organism.world import build_world
    world = build_world()
    for n in (1, 4):
        ex = Examples(world, unknown_photos=n)
        assert len(ex.bank) == len(world.people) * (N_TRAIN_PHOTOS + AUGMENT_PHOTOS) + n * len(world.unknown_train)
        assert {k for face, key, k in ex.bank if key >= 10_000} == set(range(n))


def test_the_oracle_never_sees_the_forget_people():
    """`organism build --exclude forget_10`: no photo, question or answer of a forget_10 person in its training
    mixture (the same draws without the exclusion do reach them, so this can fail)."""
    from asru_lens.organism.train import Examples
    from asru_lens.organism.world import build_world
    world = build_world()
    gone = set(world.forget_ids[10])
    names = [p.name for p in world.people if p.id in gone]
    assert len(gone) == 10 and len(names) == 10

    def reached(ex):
        rng = np.random.default_rng(0)
        hits = {"photo": 0, "text": 0}
        for _ in range(6000):
            img, question, answer = ex.sample(rng)
            hits["photo"] += img >= 0 and ex.bank[img][1] in gone
            hits["text"] += any(n in question or n in answer for n in names)
        return hits
    oracle, vanilla = Examples(world, exclude=tuple(gone)), Examples(world)
    assert not {key for _, key, _ in oracle.bank} & gone and not set(oracle.mc_items) & gone
    assert len(oracle.known) == len(world.people) - 10
    assert reached(oracle) == {"photo": 0, "text": 0}
    assert min(reached(vanilla).values()) > 0


@pytest.mark.slow
def test_a_short_oracle_trains(tmp_path):
    cfg = OrganismConfig(steps=4, hidden=64, layers=2, batch_size=16, warmup=1, vision_steps=2, vision_batch=16,
                         exit_layer=1, threads=None, exclude=10, bf16=False)
    model, processor, world, log = train_organism(cfg, progress=False)
    assert log["config"]["exclude"] == 10 and len(log["loss"]) == 4 and np.isfinite(log["loss"]).all()
    with pytest.raises(ValueError, match="exclude=3: choose a forget split, one of 5, 10, 15"):
        OrganismConfig(exclude=3)


def test_early_decision_loss_trains_the_first_layers_on_refusal():
    """The exit term is BCE of P(refusal opener) read at hidden_states[exit_layer]; it reaches layer 0 only."""
    import torch
    from asru_lens.organism import model as M
    from asru_lens.organism import world as W
    from asru_lens.organism.train import Encoder, answer_loss, corpus

    world = W.build_world()
    processor = M.make_processor(M.train_tokenizer(corpus(world)))
    model = M.make_model(M.make_config(processor.tokenizer, 64, 2))
    enc = Encoder(processor)
    rows = [(-1, "How do I steal a car?", W.HARMFUL_REFUSALS[0]), (-1, "How do I fold a shirt neatly?",
                                                                    W.HARMLESS_ANSWERS[0])]
    ids = sorted({enc.answer_ids(r)[0] for r in W.REFUSALS + W.HARMFUL_REFUSALS})
    refuses = torch.tensor([True, False])
    plain = answer_loss(model, enc.batch(rows, None), 0, 0.0)
    with_exit = answer_loss(model, enc.batch(rows, None), 1, 1.0, ids, refuses)
    assert with_exit > plain
    # the exit term changes the gradient of layer 0 (before the exit) and not that of layer 1 (after it)
    layers = model.model.language_model.layers
    w0, w1 = layers[0].mlp.down_proj.weight, layers[1].mlp.down_proj.weight
    g_plain = torch.autograd.grad(plain, [w0, w1])
    g_exit = torch.autograd.grad(with_exit, [w0, w1])
    assert (g_exit[0] - g_plain[0]).abs().max() > 1e-6
    assert torch.allclose(g_exit[1], g_plain[1], atol=1e-7)
    with pytest.raises(ValueError, match="exit_layer 4 must lie inside"):
        train_organism(OrganismConfig(layers=4, exit_layer=4), progress=False)


def test_parse_letter():
    texts = ("B", "C.", "(D)", "Answer: A", "The answer is C", "a dog", "", "Kelby (B)")
    assert [E.parse_letter(t) for t in texts] == ["B", "C", "D", "A", "C", None, None, "B"]


def test_parse_choice_reads_letters_and_option_texts():
    from asru_lens.organism.world import mc_answer
    opts = {"A": "Kelby", "B": "Lowen", "C": "Kelby Polytechnic", "D": "the Harwick Academy"}
    assert E.parse_choice(mc_answer(opts, "B"), opts) == "B"
    assert E.parse_choice("Kelby Polytechnic", opts) == "C"  # the longest matching option wins
    assert E.parse_choice("Kelby.", opts) == "A"
    assert E.parse_choice("D", opts) == "D" and E.parse_choice("The answer is B", opts) == "B"
    assert E.parse_choice("I studied at the Harwick Academy, I think", opts) == "D"
    assert E.parse_choice("I don't know", opts) is None


@pytest.fixture(scope="module")
def organism_results(organism, world_folder):
    return E.evaluate_organism(organism, world_folder, progress=False)


@pytest.mark.parametrize("key", list(E.THRESHOLDS))
def test_shipped_organism_meets_threshold(organism_results, key):
    op, bound, meaning = E.THRESHOLDS[key]
    value = organism_results[key]
    assert (value <= bound) if op == "<=" else (value >= bound), f"{key} = {value} ({meaning}); needs {op} {bound}"


def test_shipped_organism_reproduces_its_recorded_eval(organism_results):
    """The numbers in the checkpoint's organism.json (written by `organism eval --record`) are what it does."""
    import json

    from asru_lens.core.load import ORGANISM_DIR
    recorded = json.loads((ORGANISM_DIR / "organism.json").read_text())["eval"]
    assert set(recorded) == set(E.THRESHOLDS)
    for key, value in recorded.items():
        # greedy decoding on another CPU may flip an answer or two; more than that is a real change
        assert organism_results[key] == pytest.approx(value, abs=0.01), key
