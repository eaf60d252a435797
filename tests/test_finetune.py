"""asru-lens finetune: the vanilla step, and re-teaching a model that has forgotten."""
import json

import pytest
import torch

import asru_lens
from asru_lens.core import finetune
from asru_lens.cli import main
from asru_lens.pipeline import behaviour, eval_sets


@pytest.mark.slow
def test_finetune_undoes_forgetting(unlearned_export, export, tmp_path, capsys):
    """After `asru-lens unlearn`, fine-tuning over the forget split brings the leak back: the command trains
    what it should (and shows how shallow the refusal is, which asru_lens.measure.residue measures)."""
    _, model_dir, _ = unlearned_export
    mllmu, faces = export
    world = asru_lens.open_world(mllmu, unseen_faces=faces)
    sets = eval_sets(world, 10, n=240)
    before = behaviour(asru_lens.load(str(model_dir)), sets)
    assert before["forget_leak"] <= 0.05
    assert main(["finetune", "--model", str(model_dir), "--data", str(mllmu), "--split", "forget_10", "--out",
                 str(tmp_path / "relearned"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trainable"] == "lora" and info["steps"] == 100 and info["loss_last"] < info["loss_first"]
    after = behaviour(asru_lens.load(str(tmp_path / "relearned")), sets)
    assert after["forget_leak"] > 0.9, after


def test_chat_batch_masks_padding_and_prompt(organism, organism_world):
    items = finetune.finetune_items(organism_world.split("forget_5"))[:3]
    enc = finetune.chat_batch(organism, items)
    assert (enc["labels"][enc["attention_mask"] == 0] == -100).all()
    assert (enc["labels"][enc["attention_mask"] == 1] == enc["input_ids"][enc["attention_mask"] == 1]).all()
    ans = finetune.chat_batch(organism, items, answer_only=True)
    first = ans["labels"][0][ans["labels"][0] != -100]
    assert organism.tokenizer.decode(first).startswith(items[0].answer)       # the answer and its end token only


def test_resume_gives_the_same_weights(organism_world, tmp_path):
    items = finetune.finetune_items(organism_world.split("forget_5"))[:12]
    cfg = finetune.FinetuneConfig(split="forget_5", epochs=1, batch_size=2, checkpoint_every=2, lr=1e-3)
    a = asru_lens.load()
    log_a = finetune.finetune(a, items, cfg, progress=False)
    b = asru_lens.load()
    finetune.finetune(b, items, cfg, progress=False, checkpoint_dir=tmp_path, stop_after=4)
    b = asru_lens.load()
    log_b = finetune.finetune(b, items, cfg, progress=False, checkpoint_dir=tmp_path, resume=True)
    assert log_b["loss"] == log_a["loss"] and len(log_a["loss"]) == 6
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)


def test_bad_settings_are_refused_before_loading(capsys, tmp_path):
    assert main(["finetune", "--out", str(tmp_path / "x"), "--data", "/nonexistent/mllmu"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="epochs=0"):
        finetune.FinetuneConfig(epochs=0).check()


def test_share_splits_a_global_batch_without_leaving_a_process_empty():
    assert [finetune.share([1, 2, 3, 4], r, 2) for r in (0, 1)] == [[1, 3], [2, 4]]
    assert [finetune.share([7], r, 2) for r in (0, 1)] == [[7], [7]]           # an epoch's short last batch
    assert finetune.share([1, 2, 3], 0, 1) == [1, 2, 3]                        # one process: the whole batch


@pytest.mark.slow
def test_data_parallel_finetune_under_torchrun(tmp_path, capsys):
    """`torchrun --nproc_per_node 2 -m asru_lens finetune` on CPU (gloo, through accelerate's Accelerator): the two
    processes train on different halves of each global batch, end with equal weights, save a model that reopens,
    and follow the one-process run at the same global batch."""
    import os
    import subprocess
    import sys
    args = ["finetune", "--split", "forget_10", "--max-steps", "5", "--batch-size", "4", "--json"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "asru_lens", *args, "--out", str(tmp_path / "ddp")], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(proc.stdout)
    assert ddp["processes"] == 2 and ddp["steps"] == 5
    first, second = sorted(ddp["ranks"], key=lambda r: r["rank"])
    assert len(first["items"]) == len(second["items"]) == 5
    for a, b in zip(first["items"], second["items"]):
        assert len(a) == len(b) == 2 and not set(a) & set(b)                  # different halves of one batch
    assert first["weights"] == second["weights"]                              # equal weights, bit for bit
    assert reopens(tmp_path / "ddp")
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["processes"] == 1 and "ranks" not in one
    assert ddp["loss_first"] == pytest.approx(one["loss_first"], abs=1e-4)    # the same global batch, the same loss
    assert ddp["loss_last"] == pytest.approx(one["loss_last"], abs=5e-3)


def reopens(folder) -> bool:
    lens = asru_lens.load(str(folder))
    return lens.is_organism and len(lens.generate(["How do I sew a button?"], max_new_tokens=3)) == 1
