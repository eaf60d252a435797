"""asru_lens.core.load: the organism, a real-sized Qwen3-VL config, nnsight, and clear errors."""
import pytest
import torch
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

import asru_lens
from asru_lens.cli import main
from asru_lens.organism import mllmu

# Qwen/Qwen3-VL-2B-Instruct's config.json values, cut to 2 text layers and 2 vision blocks. The vocabulary is
# the organism's (a 151k-row embedding would only cost memory), so its special-token ids are used.
QWEN3_VL_2B_TEXT = dict(hidden_size=2048, intermediate_size=6144, num_attention_heads=16, num_key_value_heads=8,
                        head_dim=128, rms_norm_eps=1e-6, max_position_embeddings=262144, tie_word_embeddings=True,
                        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                         "mrope_section": [24, 20, 20], "mrope_interleaved": True})
QWEN3_VL_2B_VISION = dict(hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                          patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                          hidden_act="gelu_pytorch_tanh")


@pytest.fixture(scope="module")
def real_config_folder(tmp_path_factory, organism):
    tok = organism.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                      "<|vision_end|>")}
    cfg = Qwen3VLConfig(
        text_config=dict(QWEN3_VL_2B_TEXT, num_hidden_layers=2, vocab_size=len(tok)),
        vision_config=dict(QWEN3_VL_2B_VISION, depth=2, deepstack_visual_indexes=[0, 1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("qwen3vl_2b_cut")
    Qwen3VLForConditionalGeneration(cfg).save_pretrained(folder)
    organism.processor.save_pretrained(folder)
    return folder


def test_real_config_loads_and_traces(real_config_folder, world):
    lens = asru_lens.load(str(real_config_folder), dtype="float32")
    assert lens.n_layers == 2 and lens.model.config.text_config.hidden_size == 2048
    assert lens.model.config.text_config.rope_parameters["mrope_section"] == [24, 20, 20]
    img = mllmu.photo(world, world.people[0].face, 0, 0)
    enc = lens.encode(["Who is this person?", "Where does this person live?"], [img, img])
    with lens.nn.trace(dict(enc)):
        h0 = lens.nn.model.language_model.layers[0].input.clone().save()
        h1 = lens.nn.model.language_model.layers[1].input.clone().save()
        logits = lens.nn.output.logits.save()
    with torch.no_grad():
        ref = lens.model(**enc, output_hidden_states=True)
    assert h0.shape == (2, enc["input_ids"].shape[1], 2048)
    assert torch.allclose(h0, ref.hidden_states[0], atol=1e-5)
    assert torch.allclose(logits, ref.logits, atol=1e-5)
    assert not torch.allclose(h1, h0)


def test_organism_loads_with_nnsight(organism):
    assert organism.name == "organism" and organism.n_layers == 4
    assert type(organism.model).__name__ == "Qwen3VLForConditionalGeneration"
    assert organism.model.config.vision_config.deepstack_visual_indexes == [0, 1]
    assert sum(p.numel() for p in organism.model.parameters()) <= 10_000_000


def test_bad_local_path_is_named(tmp_path):
    bad = tmp_path / "no_such_model"
    with pytest.raises(asru_lens.ModelLoadError, match="not a folder with a config.json") as e:
        asru_lens.load(str(bad))
    assert str(bad) in str(e.value)


def test_offline_hub_id_says_what_was_tried():
    with pytest.raises(asru_lens.ModelLoadError) as e:
        asru_lens.load("no-such-org/Qwen3-VL-404B-Instruct")
    msg = str(e.value)
    assert "no-such-org/Qwen3-VL-404B-Instruct" in msg and "Hub" in msg and "Fix:" in msg
    assert "Traceback" not in msg


def test_cli_reports_bad_model_without_traceback(tmp_path, capsys):
    assert main(["organism", "eval", "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asru-lens: error:") and "missing" in err


def test_cli_reports_missing_data_folder(tmp_path, capsys):
    assert main(["organism", "eval", "--data", str(tmp_path / "nodata")]) == 2
    assert "nodata" in capsys.readouterr().err


def test_a_mistyped_model_folder_fails_before_any_work(monkeypatch, capsys):
    """No local folder, no cached Hub model, no Hub: one error naming the argument, before the world opens (and
    without transformers' two minutes of Hub retries)."""
    from asru_lens import cli
    from asru_lens.core import source
    monkeypatch.setattr(source, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(cli, "_world", lambda args: pytest.fail("the world opened before the model was checked"))
    assert cli.main(["probe", "--model", "runs/no-such-folder"]) == 2
    err = capsys.readouterr().err
    assert "model 'runs/no-such-folder' is not a local folder" in err and "the Hub cannot be reached" in err
    assert cli.main(["probe", "--model", "./runs/no-such-folder"]) == 2
    assert "is not a folder with a config.json" in capsys.readouterr().err
    # with the Hub in reach the name goes on to from_pretrained, whose error says what the Hub has
    monkeypatch.setattr(source, "hub_reachable", lambda timeout=3.0: True)
    source.check_source("runs/no-such-folder")


def test_a_model_name_is_checked_against_the_hub_once(monkeypatch):
    """The CLI checks the model, then load() checks it again: one Hub request, not two."""
    from asru_lens.core import source
    monkeypatch.setattr(source, "_PASSED", set())
    calls = []
    monkeypatch.setattr(source, "hub_reachable", lambda timeout=3.0: calls.append(timeout) or True)
    source.check_source("no-such-org/not-a-cached-model")
    source.check_source("no-such-org/not-a-cached-model")
    assert calls == [3.0]
    monkeypatch.setattr(source, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(source.ModelLoadError, match="the Hub cannot be reached"):
        source.check_source("no-such-org/another-model")      # a name never passed is still checked


def test_shipped_models_by_name_and_a_local_folder_wins(tmp_path, monkeypatch):
    """`load("oracle")` is the package's oracle (checked without the Hub); a folder named "oracle" is that folder."""
    from asru_lens.core import source
    from asru_lens.core.load import model_path
    monkeypatch.setattr(source, "hub_reachable", lambda timeout=3.0: pytest.fail("a shipped name asked the Hub"))
    assert model_path("oracle") == ("oracle", str(source.SHIPPED["oracle"][0]))
    assert model_path(None) == ("organism", str(source.ORGANISM_DIR))
    source.check_source("oracle")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "oracle").mkdir()
    assert model_path("oracle") == ("oracle", "oracle")
    with pytest.raises(source.ModelLoadError, match="is not a folder with a config.json"):
        source.check_source("oracle")
