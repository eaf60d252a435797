"""The whole probe on the shipped organism, through the CLI a user runs: the issue's acceptance numbers."""
import json

import pytest

from asru_lens.cli import main


def test_probe_json_keys_and_shapes(probe_json):
    out = probe_json
    assert out["n_layers"] == 4 and len(out["auroc"]) == 4 and len(out["direction_norm"]) == 4
    assert out["direction_norm"][0] == 0.0      # layer 0 reads the same template embedding in every prompt
    assert out["counts"]["refusal_kept"] > 0 and out["counts"]["forget_kept"] > 0


def test_probe_finds_a_mid_depth_causal_direction(probe_json):
    out = probe_json
    assert 0 < out["layer"] < out["n_layers"] - 1            # neither the embedding nor the last layer
    assert out["kl"] <= 0.1
    base = out["baseline_refusal_score"]
    assert out["bypass_score"] < base["refusal_score_refusal"] - 3    # ablating it removes refusal
    assert out["induce_score"] > base["refusal_score_forget"] + 3     # adding it pushes towards refusal


# Issue 3's acceptance numbers on the shipped organism (measured: layer 2 of 4, held-out AUROC 0.992 there,
# adding the direction makes 70% of forget prompts refuse, and a candidate passes every filter).
def test_probe_auroc_at_chosen_layer_reaches_095(probe_json):
    assert probe_json["auroc"][probe_json["layer"]] >= 0.95


def test_probe_induces_refusal_on_half_the_forget_prompts(probe_json):
    assert probe_json["induce_refusal"] >= 0.5


def test_probe_selection_needs_no_fallback(probe_json):
    assert not probe_json["fallback"]


def test_probe_writes_every_figure(probe_json):
    names = {p.rsplit("/", 1)[-1] for p in probe_json["figures"]}
    for fig in ("probe_direction_norms", "probe_cosine", "probe_auroc", "probe_selection", "probe_pca",
                "probe_modality"):
        assert f"{fig}.html" in names


def test_probe_cli_bad_input(capsys):
    assert main(["probe", "--data", "/nonexistent/world"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_probe_in_bfloat16_selects_the_same_layer(probe_json, capsys):
    # 32 prompts per set (bf16 matmuls are slow on a CPU without AVX512-BF16): measured, the same layer as fp32's 96
    assert main(["probe", "--dtype", "bfloat16", "--n", "32", "--json"]) == 0
    bf16 = json.loads(capsys.readouterr().out)
    assert bf16["layer"] == probe_json["layer"] and bf16["n_layers"] == probe_json["n_layers"]


@pytest.mark.slow
def test_saved_direction_steers_as_the_probe_does(probe_json, capsys):
    """`probe --out DIR` saved the chosen direction; `steer --direction DIR` uses it instead of probing again
    and measures exactly what `steer` after its own probe measures."""
    from pathlib import Path
    saved = Path(probe_json["saved"][0]).parent
    assert {p.name for p in saved.iterdir()} == {"directions.safetensors", "probe.json"}
    assert json.loads((saved / "probe.json").read_text())["layer"] == probe_json["layer"]
    assert main(["steer", "--direction", str(saved), "--alpha", "1.5", "--n", "12", "--json"]) == 0
    with_saved = json.loads(capsys.readouterr().out)
    assert main(["steer", "--alpha", "1.5", "--n", "12", "--json"]) == 0
    probed = json.loads(capsys.readouterr().out)
    assert with_saved == probed and with_saved["layer"] == probe_json["layer"]
