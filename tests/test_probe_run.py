"""The whole probe on the shipped organism, through the CLI a user runs: the issue's acceptance numbers."""
import json

import pytest

from asru_lens.cli import main


@pytest.fixture(scope="module")
def probe_json(world_folder, tmp_path_factory):
    import io
    from contextlib import redirect_stdout
    buf = io.StringIO()
    figures = tmp_path_factory.mktemp("figures")
    with redirect_stdout(buf):
        assert main(["probe", "--json", "--figures", str(figures)]) == 0
    return json.loads(buf.getvalue())


def test_probe_json_keys_and_shapes(probe_json):
    out = probe_json
    for key in ("layer", "position", "n_layers", "auroc", "induce_refusal", "kl"):
        assert key in out
    assert out["n_layers"] == 4 and len(out["auroc"]) == 4 and len(out["direction_norm"]) == 4
    assert out["direction_norm"][0] == 0.0      # layer 0 reads the same template embedding in every prompt
    assert out["counts"]["refusal_kept"] > 0 and out["counts"]["forget_kept"] > 0


def test_probe_acceptance_on_the_organism(probe_json):
    out = probe_json
    assert out["layer"] < 0.8 * out["n_layers"]
    assert not out["fallback"]
    assert out["auroc"][out["layer"]] >= 0.95
    assert out["induce_refusal"] >= 0.5
    assert out["kl"] <= 0.1


def test_probe_writes_every_figure(probe_json):
    names = {p.rsplit("/", 1)[-1] for p in probe_json["figures"]}
    for fig in ("probe_direction_norms", "probe_cosine", "probe_auroc", "probe_selection", "probe_pca",
                "probe_modality"):
        assert f"{fig}.html" in names


def test_probe_cli_bad_input(capsys):
    assert main(["probe", "--data", "/nonexistent/world"]) == 2
    assert "does not exist" in capsys.readouterr().err
