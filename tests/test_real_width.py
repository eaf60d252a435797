"""Issue 15: the real path at the real Qwen3-VL-2B-Instruct widths, on CPU, with random weights.

The model is built from the released config (widths, heads, RoPE, DeepStack) cut to 2 text layers and 2 vision
blocks, with an image processor at Qwen3-VL's released pixel settings (16-pixel patches, 2x2 merge): a 64x64
photo becomes 256x256, 64 visual tokens. It has no asru_lens.json, so it is treated as a real model: the paper's
protocol and LoRA stages. One test walks the whole path (measured: about 2 minutes on 2 cores)."""
import json

import pytest
import torch

import asru_lens
from asru_lens.core import training as adapters, finetune, qwen3vl
from asru_lens.methods import redirect, reward, rl
from asru_lens.methods.boundary import boundary_set
from asru_lens.cli import main
from asru_lens.methods.asru import grpo_config


def _logits(model, enc):
    with torch.no_grad():
        return model(**enc).logits.float()


@pytest.mark.slow
def test_real_2b_widths_end_to_end(tmp_path, export, capsys):
    mllmu, faces = export
    model, processor = qwen3vl.random_model("2B", text_layers=2, vision_blocks=2)
    assert model.config.text_config.hidden_size == 2048 and model.config.vision_config.out_hidden_size == 2048
    assert processor.image_processor.patch_size == 16 and processor.image_processor.merge_size == 2
    folder = tmp_path / "qwen3vl-2b-random"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)

    lens = asru_lens.load(str(folder))
    assert lens.protocol.name == "mllmu" and lens.presets == {} and not lens.is_organism
    world = asru_lens.open_world(mllmu, unseen_faces=faces)

    # -- finetune: a few steps on one batch, the loss goes down; the merged, saved model equals the LoRA model
    items = finetune.finetune_items(world.split("forget_5"))[:4]
    cfg = finetune.finetune_config(lens, split="forget_5", max_steps=5, lr=2e-3, gradient_checkpointing=True)
    assert cfg.trainable == "lora" and cfg.lora_r == 16 and (adapters.LoRA().alpha, adapters.LoRA().dropout) == (16, 0.05)
    log = finetune.finetune(lens, items, cfg, progress=False, merge_lora=False)
    assert log["loss"][-1] < log["loss"][0] - 0.5, log["loss"]
    assert log["trained"] and all("lora_" in k for k in log["trained"])
    assert not any("visual" in k for k in log["trained"])           # never the vision tower or the merger
    enc = lens.encode(["Who is this person?", "Where was this person born?"], [items[0].image, None])
    lora_logits = _logits(log["policy"].eval(), enc)
    adapters.merge(lens, log["policy"])
    lens.save(tmp_path / "vanilla")
    back = asru_lens.load(str(tmp_path / "vanilla"))
    assert type(back.model) is type(model)
    assert (lora_logits - _logits(back.model, enc)).abs().max() <= 1e-4

    # -- probe on the CLI with JSONL refusal prompts and the filter off (random weights refuse nothing), 8 prompts
    # per set (each candidate's scores cost seconds at a 151k vocabulary on a CPU): the direction half of 16 is kept
    prompts = tmp_path / "refusal.jsonl"
    prompts.write_text("".join(json.dumps({"question": f"What is the phone number of the person in the image? {i}",
                                           "image": str(p / "0.png")}) + "\n"
                               for i, p in enumerate(sorted(faces.iterdir())[:16])))
    assert main(["probe", "--model", str(tmp_path / "vanilla"), "--data", str(mllmu), "--refusal-prompts",
                 str(prompts), "--no-refusal-filter", "--n", "8", "--json"]) == 0
    probe = json.loads(capsys.readouterr().out)
    assert probe["n_layers"] == 2 and probe["counts"]["refusal_kept"] == 8 and probe["protocol"] == "mllmu"
    assert any("refusal filter off" in n for n in probe["notes"])

    # -- stage 1 (one down_proj, one epoch) and three stage-2 steps through LoRA adapters
    forget = [q for q in finetune.finetune_items(world.split("forget_5")) if q.image is not None][:4]
    retain = [q for q in finetune.finetune_items(world.split("retain_95")) if q.image is not None][:8]
    before = {k: v.clone() for k, v in back.model.state_dict().items()}
    direction = torch.randn(2048)
    rlog = redirect.redirect(back, direction, 1, forget, retain, redirect.RedirectConfig(epochs=1, lr=1e-3),
                             progress=False)
    moved = [k for k, v in back.model.state_dict().items() if not torch.equal(v, before[k])]
    assert moved == ["model.language_model.layers.0.mlp.down_proj.weight"] and rlog["shift"]["forget"] > 0
    after_stage1 = {k: v.clone() for k, v in back.model.state_dict().items()}
    gcfg = grpo_config(back, steps=3, prompts_per_step=2, group_size=2, max_new_tokens=4, lr=1e-3)
    assert gcfg.trainable == "lora" and gcfg.gradient_checkpointing
    # random weights earn one ASRU reward on every sample (zero advantage, no gradient); reply length varies
    def length(response, sample):
        return len(response) / 10
    glog = rl.train_grpo(back, boundary_set(forget, retain, 4), reward=reward.Reward([(1.0, length)]),
                         cfg=gcfg, progress=False)
    assert len(glog["reward"]) == 3 and glog["trained"] and all("lora_" in k for k in glog["trained"])
    state = back.model.state_dict()
    changed = {k for k, v in state.items() if not torch.equal(v, after_stage1[k])}
    # merged adapters move only the language model's linear layers; embeddings, norms and vision stay put
    assert changed and all(adapters.re_lm_linear(k) for k in changed)
    assert state.keys() == after_stage1.keys()

    # -- evaluate runs, with the paper's protocol; random weights never stop, and at a 151k vocabulary each token
    # costs seconds on a CPU, so the saved profile caps the answers at 8 tokens (the authors' 50 otherwise)
    profile_path = tmp_path / "vanilla" / "asru_lens.json"
    profile = json.loads(profile_path.read_text())
    assert profile["protocol"]["name"] == "mllmu" and profile["protocol"]["max_new_tokens"] == 50
    profile["protocol"]["max_new_tokens"] = 8
    profile_path.write_text(json.dumps(profile))
    # forget_5: the privacy read scores every A-D option of every forget question (seconds a batch at this width)
    assert main(["evaluate", "--model", str(tmp_path / "vanilla"), "--data", str(mllmu), "--forget", "5", "--n", "4",
                 "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["protocol"] == "mllmu" and ev["judge"] == "rule"
    from asru_lens.run import HEADLINE
    missing = [k for k in HEADLINE if ev["metrics"].get(k) is None]      # every headline metric was measured
    assert missing == [], missing
    assert 0 < ev["metrics"]["truth_ratio"] <= 1           # the privacy read ran at a 151k vocabulary
