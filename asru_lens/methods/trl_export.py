"""Stage 2 at scale: the boundary set and ASRU's reward in the form TRL's ``GRPOTrainer`` takes.

Our loop (``asru_lens.methods.rl``) is for reading and for one CPU or GPU. With several GPUs, hand the same data and
reward to TRL and run it under accelerate / DeepSpeed with vLLM rollouts (README, "Stage 2 on several GPUs")::

    from trl import GRPOConfig, GRPOTrainer
    trainer = GRPOTrainer(model=lens.model, processing_class=lens.processor,
                          reward_funcs=trl_export.reward_func(), train_dataset=trl_export.dataset(boundary),
                          args=GRPOConfig(**trl_export.grpo_args(cfg), output_dir="runs/stage2"))
"""
from __future__ import annotations

from asru_lens.core.data import QA
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
    from datasets import Dataset
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
