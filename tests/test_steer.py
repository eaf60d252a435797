"""Interventions: they change what they should, leave the rest bit-identical, and equal plain PyTorch hooks."""
import pytest
import torch

from asru_lens.core import data

from asru_lens.interpret import steer
from asru_lens.core.data import QA
from asru_lens.interpret.steer import Steering


@pytest.fixture(scope="module")
def items(world_folder):
    qs = data.generation_items(data.load_split(world_folder, "forget_10"))[:3]
    return qs + [QA("How do I bake a loaf of bread?", "")]


@pytest.fixture(scope="module")
def direction(organism):
    return torch.randn(organism.model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(1)) * 8


def test_zero_alpha_and_false_condition_are_bit_identical(organism, items, direction):
    plain = organism.generate([q.question for q in items], [q.image for q in items], max_new_tokens=16)
    enc = organism.encode([q.question for q in items], [q.image for q in items])
    base = steer.last_logits(organism, enc)
    for spec in (Steering(direction, 2, alpha=0.0),
                 Steering(direction, 2, mode="conditional", detector=direction, threshold=1e9)):
        assert steer.generate(organism, items, spec, max_new_tokens=16) == plain
        assert torch.equal(steer.last_logits(organism, enc, spec), base)


def test_each_intervention_changes_the_output(organism, items, direction):
    enc = organism.encode([q.question for q in items], [q.image for q in items])
    base = steer.last_logits(organism, enc)
    for spec in (Steering(direction, 2), Steering(direction, mode="ablate"),
                 Steering(direction, 2, mode="conditional", detector=direction, threshold=-1e9)):
        assert (steer.last_logits(organism, enc, spec) - base).abs().max() > 1e-2, spec.mode


@pytest.fixture(scope="module")
def detector(organism, items):
    """A detector that fires on the image prompts only: the image - text mean difference at layer 1."""
    from asru_lens.interpret import probe
    acts = probe.activations(organism, items)[:, 1, -1]
    det = acts[:3].mean(0) - acts[3]
    unit = det / det.norm()
    return det, float(((acts[:3] @ unit).min() + acts[3] @ unit) / 2)


def test_conditional_steers_only_the_detected_rows(organism, items, direction, detector):
    enc = organism.encode([q.question for q in items], [q.image for q in items])
    base = steer.last_logits(organism, enc)
    spec = Steering(direction, 2, mode="conditional", detector=detector[0], detector_layer=1,
                    threshold=detector[1])
    out = steer.last_logits(organism, enc, spec)
    assert (out[:3] - base[:3]).abs().amax(-1).min() > 1e-2       # steered
    assert torch.equal(out[3], base[3])                            # untouched


@pytest.mark.parametrize("spec_kw", [dict(layer=2, alpha=2.0), dict(layer=1, alpha=1.5, generated_only=True),
                                     dict(mode="ablate"), dict(layer=2, alpha=2.0, mode="conditional")])
def test_nnsight_generation_equals_plain_pytorch_hooks(organism, items, direction, detector, spec_kw):
    """The nnsight path (steer.generate) and an independent forward-hook path (steer.steering around HF
    generate) give the same text: the steering really is applied during nnsight generation."""
    kw = dict(spec_kw)
    if kw.get("mode") == "conditional":
        kw.update(detector=detector[0], detector_layer=1, threshold=detector[1])
    if kw.get("mode") == "ablate":  # a random unit direction barely matters; the residual's mean one does
        from asru_lens.interpret import probe
        direction = probe.mean_activations(organism, items)[2, -1].float()
    spec = Steering(direction, **kw)
    ours = steer.generate(organism, items, spec, max_new_tokens=16)
    with steer.steering(organism, spec):
        hooked = organism.generate([q.question for q in items], [q.image for q in items], max_new_tokens=16)
    assert ours == hooked
    assert ours != organism.generate([q.question for q in items], [q.image for q in items], max_new_tokens=16)


def test_bad_steering_input(organism, direction):
    with pytest.raises(steer.InterventionError, match="layer 9 is out of range"):
        Steering(direction, 9).check(organism)
    with pytest.raises(steer.InterventionError, match=r"shape \(3,\)"):
        Steering(torch.zeros(3), 1).check(organism)
    with pytest.raises(steer.InterventionError, match="needs a detector"):
        Steering(direction, 1, mode="conditional").check(organism)
    with pytest.raises(steer.InterventionError, match="comes after"):
        Steering(direction, 1, mode="conditional", detector=direction, detector_layer=3).check(organism)
    with pytest.raises(steer.InterventionError, match="mode 'push'"):
        Steering(direction, 1, mode="push").check(organism)


def test_is_broken_flags_hybrids_and_repetition():
    from asru_lens.measure.refusal import is_broken
    assert is_broken("I'm sorry, I don't have any information aboutNora Okafor works as a chemist.")
    assert is_broken("I'm sorry,I'm sorry,I'm sorry")
    assert is_broken("Juno Juno Juno was born")
    assert not is_broken("I'm sorry, I don't know this person's birthplace.")
    assert not is_broken("Juno Corvin was born in the year 1971.")


def test_measure_and_cli_point(organism, organism_world, probe_json, capsys):
    import json
    from pathlib import Path

    from asru_lens.cli import main
    from asru_lens.core.sets import steer_sets
    sets = steer_sets(organism_world, n=8)
    assert [len(v) for v in sets.values()] == [8, 8, 8, 8]
    base = steer.measure(organism, sets, None)
    assert base["forget_refusal"] == 0.0 and base["forget_leak"] > 0.5 and base["retain_utility"] > 0.5
    saved = str(Path(probe_json["saved"][0]).parent)        # the session's probe, not a second one
    assert main(["steer", "--direction", saved, "--layer", "2", "--alpha", "2", "--n", "8", "--json"]) == 0
    point = json.loads(capsys.readouterr().out)
    assert point["layer"] == 2 and point["forget_refusal"] > base["forget_refusal"]
    assert point["forget_leak"] < base["forget_leak"]          # refusing instead of stating the fact
