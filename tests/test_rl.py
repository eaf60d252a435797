"""Stage 2: the GRPO loss against TRL's, advantages, masks, checkpoint/resume, LoRA, and TRL's GRPOTrainer."""
import types
from collections import defaultdict

import pytest
import torch

from asru_lens.methods import rl
from asru_lens.methods.boundary import boundary_set


def _trl_loss(loss_type, logps, old, ref, adv, mask, beta, eps, eps_high, max_len):
    """TRL's own GRPOTrainer._compute_loss, with the log-probs we choose fed in as the model's."""
    from trl import GRPOTrainer
    acc = types.SimpleNamespace(gather=lambda x: x, reduce=lambda x, reduction="sum": x, num_processes=1,
                                gather_for_metrics=lambda x: x, sync_gradients=True)
    fake = types.SimpleNamespace(
        loss_type=loss_type, beta=beta, epsilon_low=eps, epsilon_high=eps_high, top_entropy_quantile=1.0,
        off_policy_mask_threshold=None, importance_sampling_level="token", use_vllm=False,
        args=types.SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        model=types.SimpleNamespace(training=True), current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False, aux_loss_enabled=False, accelerator=acc, _metrics=defaultdict(
            lambda: defaultdict(list)), max_completion_length=max_len,
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None))
    B, T = logps.shape
    inputs = {"prompt_ids": torch.zeros(B, 3, dtype=torch.long), "prompt_mask": torch.ones(B, 3, dtype=torch.long),
              "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    return GRPOTrainer._compute_loss(fake, None, inputs)


@pytest.mark.parametrize("loss_type", rl.LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_loss_equals_trl(loss_type, beta):
    g = torch.Generator().manual_seed(0)
    B, T = 8, 7
    logps = (-torch.rand(B, T, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    old = logps.detach() + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3   # off-policy: clip bites
    ref = logps.detach() + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.2
    adv = rl.group_advantages(torch.rand(B, generator=g, dtype=torch.float64), 4)
    mask = (torch.arange(T)[None] < torch.tensor([7, 3, 5, 7, 1, 6, 7, 2])[:, None]).long()
    ours, stats = rl.grpo_loss(logps, old, ref, adv, mask, beta, 0.2, 0.28, loss_type, max_completion_length=T)
    theirs = _trl_loss(loss_type, logps, old, ref, adv, mask, beta, 0.2, 0.28, T)
    assert abs(ours.item() - theirs.item()) < 1e-6
    g_ours, = torch.autograd.grad(ours, logps)
    g_theirs, = torch.autograd.grad(theirs, logps)
    torch.testing.assert_close(g_ours, g_theirs, rtol=0, atol=1e-6)
    assert stats["clip_ratio"] > 0


def test_group_advantages_and_mask():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    a = rl.group_advantages(r, 4)
    assert a[:4].tolist() == pytest.approx([1.5 / 1.0001, -0.5 / 1.0001, -0.5 / 1.0001, -0.5 / 1.0001], rel=1e-4)
    assert a[4:].abs().max() == 0            # a group that agrees teaches nothing
    ids = torch.tensor([[5, 6, 2, 0, 0], [5, 2, 7, 2, 0], [5, 6, 7, 8, 9]])
    assert rl.completion_mask(ids, [2]).tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_config_errors():
    with pytest.raises(ValueError, match="loss_type 'ppo'"):
        rl.GRPOConfig(loss_type="ppo").check()
    with pytest.raises(ValueError, match="group_size=1"):
        rl.GRPOConfig(group_size=1).check()
    with pytest.raises(ValueError, match="prompts_per_step=3"):
        rl.GRPOConfig(prompts_per_step=3).check()


@pytest.fixture(scope="module")
def boundary(world_folder):
    from asru_lens.core import data
    forget = data.generation_items(data.load_split(world_folder, "forget_10"))
    retain = data.generation_items(data.load_split(world_folder, "retain_90"))
    return boundary_set(forget, retain, 6)


TINY = dict(steps=4, prompts_per_step=2, group_size=3, max_new_tokens=6, lr=1e-3, checkpoint_every=2)


def _weights(lens):
    return {k: v.detach().clone() for k, v in lens.model.state_dict().items()}


@pytest.mark.slow
def test_resume_gives_the_same_weights(boundary, tmp_path):
    import asru_lens
    start = _weights(asru_lens.load())
    a = asru_lens.load()
    log_a = rl.train_grpo(a, boundary, cfg=rl.GRPOConfig(**TINY), progress=False, checkpoint_dir=tmp_path / "a")
    b = asru_lens.load()
    rl.train_grpo(b, boundary, cfg=rl.GRPOConfig(**TINY), progress=False, checkpoint_dir=tmp_path / "b",
                  stop_after=2)                                        # interrupted after step 2
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["step-000002"]
    c = asru_lens.load()                                               # a new process would start like this
    log_c = rl.train_grpo(c, boundary, cfg=rl.GRPOConfig(**TINY), progress=False, checkpoint_dir=tmp_path / "b",
                          resume=True)
    wa, wc = _weights(a), _weights(c)
    assert any(not torch.equal(wa[k], start[k]) for k in wa)          # training moved the weights
    assert all(torch.equal(wa[k], wc[k]) for k in wa)                 # and resuming moved them identically
    assert log_a["reward"] == log_c["reward"] and len(log_c["reward"]) == 4
    with pytest.raises(FileNotFoundError, match="holds no step-"):
        rl.train_grpo(asru_lens.load(), boundary, cfg=rl.GRPOConfig(**TINY), progress=False,
                      checkpoint_dir=tmp_path / "empty", resume=True)


@pytest.mark.slow
def test_lora_trains_adapters_and_merges_back(boundary):
    import asru_lens
    lens = asru_lens.load()
    before = _weights(lens)
    cls = type(lens.model)
    log = rl.train_grpo(lens, boundary, cfg=rl.GRPOConfig(**{**TINY, "steps": 2, "trainable": "lora",
                                                             "lr": 1e-2}), progress=False)
    after = _weights(lens)
    assert type(lens.model) is cls and set(after) == set(before)      # merged: no peft wrappers left
    assert all(p.requires_grad for p in lens.model.parameters()) and not lens.model.training  # as found
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed and all("language_model.layers" in k and "proj" in k for k in changed)
    assert len(log["reward"]) == 2


@pytest.mark.slow
def test_trl_grpo_trainer_runs_one_step_with_our_reward(boundary, tmp_path):
    import asru_lens
    from trl import GRPOConfig, GRPOTrainer

    from asru_lens.methods import trl_export
    lens = asru_lens.load()
    before = _weights(lens)
    cfg = rl.GRPOConfig(prompts_per_step=2, group_size=4, max_new_tokens=8, lr=1e-3)
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, use_cpu=True, report_to="none", save_strategy="no",
                      logging_steps=1, **trl_export.grpo_args(cfg))
    ours, given = trl_export.reward_func(), []

    def asru_reward(completions, answer, forget, question=None, **kwargs):     # ours, recording what it gave
        out = ours(completions, answer, forget, question, **kwargs)
        given.extend(out)
        return out

    trainer = GRPOTrainer(model=lens.model, processing_class=lens.processor, train_dataset=trl_export.dataset(
        boundary), reward_funcs=asru_reward, args=args)
    trainer.train()
    logged = trainer.state.log_history[0]
    # one step: 2 prompts x 4 completions, each scored by ASRU's table, and the trainer logs their mean
    assert len(given) == 8 and set(given) <= {0.0, 0.1, 0.5, 1.0}
    assert logged["rewards/asru_reward/mean"] == pytest.approx(sum(given) / 8) and logged["grad_norm"] > 0
    assert any(not torch.equal(v, before[k]) for k, v in _weights(lens).items())


def test_trl_reward_func_scores_like_ours():
    from asru_lens.methods import trl_export
    from asru_lens.core.data import QA
    gt = "Juno Corvin works as a carpenter."
    b = [QA("What is this person's job?", gt, None, meta={"forget": f}) for f in (True, False)]
    recs = trl_export.records(b)
    assert recs[0]["prompt"][0]["content"] == [{"type": "text", "text": "What is this person's job?"}]
    fn = trl_export.reward_func()
    done = [[{"role": "assistant", "content": gt}], [{"role": "assistant", "content": "I'm not sure who this is."}]]
    assert fn(done, answer=[gt, gt], forget=[True, False]) == [0.0, 0.0]
    assert fn(["I don't know this person.", gt], answer=[gt, gt], forget=[True, False]) == [1.0, 1.0]


def test_boundary_set_balances_and_shows_repeats_as_new_views(world_folder, organism_world):
    import numpy as np

    from asru_lens.core import data
    from asru_lens.core.sets import retain_items
    forget = data.generation_items(data.load_split(world_folder, "forget_10"))[:5]
    retain = data.generation_items(data.load_split(world_folder, "retain_90"))[:40]
    b = boundary_set(forget, retain, 12, seed=3)
    f, r = b[:12], b[12:]
    assert [q.meta["forget"] for q in b] == [True] * 12 + [False] * 12
    pixels = lambda q: np.asarray(q.image, dtype=np.int16)  # noqa: E731
    # 12 = 5 + 5 + 2: the first copy keeps each photo, the repeats show the same person in a new view
    assert all(f[i].image is forget[i].image for i in range(5))
    for i in range(5, 10):
        assert (f[i].question, f[i].id, f[i].answer) == (forget[i - 5].question, forget[i - 5].id,
                                                         forget[i - 5].answer)
        assert f[i].image.size == forget[i - 5].image.size
        assert 1 < np.abs(pixels(f[i]) - pixels(forget[i - 5])).mean() < 60
    assert {(q.question, q.id) for q in f[10:]} <= {(q.question, q.id) for q in forget}
    assert all(any(q.image is x.image for x in retain) for q in r)    # 40 >= 12: no repeats, the original photos
    plain = boundary_set(forget, retain, 12, seed=3, augment=False)
    assert all(plain[i].image is forget[i % 5].image for i in range(10))
    again = boundary_set(forget, retain, 12, seed=3)
    assert all((pixels(x) == pixels(y)).all() for x, y in zip(again[:12], f))          # deterministic per seed

    items, plain_retain = retain_items(organism_world, 10), retain_items(organism_world, 10, all_photos=False)
    forget_ids = {q.id for q in data.generation_items(data.load_split(world_folder, "forget_10"))}
    assert len(items) == 2 * len(plain_retain)                # the organism's Test_Set: one more row per person
    assert {q.id for q in items} == {q.id for q in plain_retain} and not forget_ids & {q.id for q in items}


def test_engine_is_checked():
    with pytest.raises(ValueError, match="engine 'verl'"):
        rl.GRPOConfig(engine="verl")


@pytest.mark.slow
def test_unlearn_engine_trl_runs_stage2_in_two_processes(probe_json, tmp_path):
    """`torchrun --nproc_per_node 2 -m asru_lens -- unlearn --engine trl` (CPU, gloo): stage 2 runs through TRL's
    GRPOTrainer with our boundary set and reward, the two processes end with equal weights, and the first saves
    a model that reopens. (`--` keeps torchrun from reading `--n` as one of its own options.)"""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import asru_lens
    saved = Path(probe_json["saved"][0]).parent
    argv = ["unlearn", "--engine", "trl", "--steps", "1", "--set", "stage1.epochs=1", "--set", "stage1.n_retain=16",
            "--set", "asru.prompts_per_step=2", "--set", "asru.group_size=4", "--n", "4", "--direction", str(saved),
            "--out", str(tmp_path / "m"), "--json"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "asru_lens", "--", *argv], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout)                  # the first process reports, once; the Trainer's logs go to stderr
    assert info["config"]["settings"]["asru"]["engine"] == "trl"
    trl = info["trl"]
    assert trl["processes"] == 2 and len(trl["reward"]) == 1
    first, second = trl["ranks"]
    assert first["weights"] == second["weights"] and {first["rank"], second["rank"]} == {0, 1}
    assert first["changed"] and second["changed"]               # the step trained the weights
    lens = asru_lens.load(str(tmp_path / "m"))
    assert lens.is_organism and len(lens.generate(["How do I sew a button?"], max_new_tokens=3)) == 1
