"""The organism: the training path end to end, and the shipped checkpoint's quality bar."""
import numpy as np
import pytest

import asru_lens
from asru_lens.organism import evaluate as E
from asru_lens.organism.train import OrganismConfig, save_organism, train_organism


def test_short_training_run_end_to_end(tmp_path):
    cfg = OrganismConfig(steps=30, hidden=64, layers=2, batch_size=16, warmup=5, vision_steps=5, vision_batch=16)
    model, processor, world, log = train_organism(cfg, progress=False)
    loss = log["loss"]
    assert len(loss) == 30 and np.isfinite(loss).all()
    assert np.mean(loss[-5:]) < np.mean(loss[:5]) - 1.0  # it learns
    out = save_organism(model, processor, tmp_path / "tiny", {"steps": 30})
    assert (out / "model.safetensors").exists() and (out / "organism.json").exists()
    lens = asru_lens.load(str(out))
    assert lens.n_layers == 2
    assert len(lens.generate(["How do I sew a button?"], max_new_tokens=3)) == 1


def test_training_is_deterministic():
    cfg = OrganismConfig(steps=6, hidden=64, layers=1, batch_size=8, warmup=2, vision_steps=2, vision_batch=8)
    a = train_organism(cfg, progress=False)[3]["loss"]
    b = train_organism(cfg, progress=False)[3]["loss"]
    assert a == b


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


# Targets the shipped organism does not reach yet (issue 2 stays open until this set is empty). Strict:
# a key that starts passing fails here, so the set cannot go stale.
KNOWN_GAPS = {"cls_acc_celebrity", "cls_acc_full", "perception_acc", "unknown_refusal"}


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.xfail(
    strict=True, reason="issue 2: the shipped organism is below this target")) if k in KNOWN_GAPS else k
    for k in E.THRESHOLDS])
def test_shipped_organism_meets_threshold(organism_results, key):
    op, bound, meaning = E.THRESHOLDS[key]
    value = organism_results[key]
    assert (value <= bound) if op == "<=" else (value >= bound), f"{key} = {value} ({meaning}); needs {op} {bound}"


def test_shipped_organism_reproduces_its_recorded_eval(organism_results):
    """The numbers in the checkpoint's organism.json (written by `organism eval --record`) are what it does."""
    import json

    from asru_lens.load import ORGANISM_DIR
    recorded = json.loads((ORGANISM_DIR / "organism.json").read_text())["eval"]
    assert set(recorded) == set(E.THRESHOLDS)
    for key, value in recorded.items():
        # greedy decoding on another CPU may flip an answer or two; more than that is a real change
        assert organism_results[key] == pytest.approx(value, abs=0.01), key
