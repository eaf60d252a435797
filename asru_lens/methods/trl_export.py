"""Stage 2 at scale: the boundary set and ASRU's reward in the form TRL's ``GRPOTrainer`` takes.

Our loop (``asru_lens.methods.rl``) is for reading and for one CPU or GPU. With several GPUs, ``train_trl`` runs the
same stage 2 through TRL (``asru-lens unlearn --engine trl``, or ``--set asru.engine=trl``), which accelerate
launches data-parallel: ``accelerate launch -m asru_lens unlearn --engine trl ...`` (docs/cluster.md). By hand::

    from trl import GRPOConfig, GRPOTrainer
    trainer = GRPOTrainer(model=lens.model, processing_class=lens.processor,
                          reward_funcs=trl_export.reward_func(), train_dataset=trl_export.dataset(boundary),
                          args=GRPOConfig(**trl_export.grpo_args(cfg), output_dir="runs/stage2"))
"""
from __future__ import annotations

import contextlib
import sys
import tempfile

import torch

from asru_lens.core.data import QA
from asru_lens.core.training import launched, trainable, weights_digest
from asru_lens.methods.reward import Reward


def records(boundary: list) -> list[dict]:
    """One conversational record per boundary question: ``prompt`` (with an image slot when there is an
    image), ``image``, ``answer`` and ``forget``; TRL passes the extra columns to the reward function."""
    out = []
    for q in boundary:
        content = ([{"type": "image"}] if q.image is not None else []) + [{"type": "text", "text": q.question}]
        out.append({"prompt": [{"role": "user", "content": content}], "image": q.image, "answer": q.answer,
                    "question": q.question, "forget": bool(q.meta.get("forget"))})
    return out


def dataset(boundary: list):
    """``records`` as a ``datasets.Dataset``."""
    from datasets import Dataset  # the optional TRL extra
    return Dataset.from_list(records(boundary))


def _text(completion) -> str:
    if isinstance(completion, list):        # conversational: [{"role": "assistant", "content": ...}]
        content = completion[-1]["content"] if completion else ""
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content.strip()
    return str(completion).strip()


def reward_func(reward: Reward | None = None):
    """A TRL reward function that scores completions with ``reward`` (ASRU's table by default)."""
    reward = reward or Reward()

    def asru_reward(completions, answer, forget, question=None, **kwargs) -> list[float]:
        questions = question or [""] * len(completions)
        return [float(reward(_text(c), QA(q, a, meta={"forget": bool(f)})))
                for c, a, f, q in zip(completions, answer, forget, questions)]
    return asru_reward


def grpo_args(cfg) -> dict:
    """``trl.GRPOConfig`` keyword arguments that match our ``rl.GRPOConfig``."""
    return dict(num_generations=cfg.group_size, temperature=cfg.temperature, top_p=cfg.top_p,
                max_completion_length=cfg.max_new_tokens, beta=cfg.beta, epsilon=cfg.epsilon,
                epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type, num_iterations=cfg.num_iterations,
                learning_rate=cfg.lr, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
                per_device_train_batch_size=cfg.prompts_per_step * cfg.group_size, lr_scheduler_type="constant",
                seed=cfg.seed)


def train_trl(lens, boundary: list, cfg, reward: Reward | None = None, progress: bool = True) -> dict:
    """ASRU's stage 2 through TRL's ``GRPOTrainer``: ``boundary`` (``boundary.boundary_set``), ``reward`` (ASRU's by
    default) and ``cfg`` (an ``rl.GRPOConfig``, mapped by ``grpo_args``; ``cfg.steps`` steps). The model in
    ``lens`` is trained in place, on the parameters ``cfg.trainable`` names (``core.training.trainable``). Under
    torchrun or accelerate launch each of the N processes samples 1/N of every step's rollouts, so a step sees
    the same global batch as in one process. KL: TRL's own reference, a frozen copy of the starting model (with
    LoRA, the adapters switched off). Returns the per-step log (reward, kl), and with several processes the
    digest of each one's final weights (``ranks``)."""
    from trl import GRPOConfig as TRLConfig  # the optional TRL extra
    from trl import GRPOTrainer

    rank, world = launched()
    per_step = cfg.prompts_per_step * cfg.group_size
    if per_step % (world * cfg.group_size):
        raise ValueError(f"{cfg.prompts_per_step} prompts per step cannot be shared by {world} processes; use a "
                         f"multiple of {world} (--set asru.prompts_per_step=...).")
    log = {"engine": "trl", "processes": world}
    with tempfile.TemporaryDirectory(prefix="asru_lens_trl_") as tmp, \
            trainable(lens, cfg.trainable, checkpointing=cfg.gradient_checkpointing) as (policy, params):
        args = TRLConfig(output_dir=tmp, max_steps=cfg.steps, use_cpu=not torch.cuda.is_available(),
                         report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=not progress,
                         gradient_checkpointing=cfg.gradient_checkpointing,
                         **{**grpo_args(cfg), "per_device_train_batch_size": per_step // world})
        trainer = GRPOTrainer(model=policy, processing_class=lens.processor, reward_funcs=reward_func(reward),
                              train_dataset=dataset(boundary), args=args)
        start = weights_digest(params)
        with contextlib.redirect_stdout(sys.stderr):     # the Trainer prints its logs: keep stdout for --json
            trainer.train()
        log["changed"] = weights_digest(params) != start
        steps = [h for h in trainer.state.log_history if "reward" in h]
        log.update(reward=[round(float(h["reward"]), 5) for h in steps],
                   kl=[round(float(h.get("kl", 0.0)), 5) for h in steps])
        if world > 1:
            from accelerate.utils import gather_object  # the optional TRL extra
            log["ranks"] = gather_object([{"rank": rank, "weights": weights_digest(params), "changed": log["changed"]}])
    return log
