"""One stage 2 step: our GRPO loop (asru_lens.methods.rl) vs TRL's GRPOTrainer, same model, prompts and budget.

Both runs start from the organism, sample ``--group`` answers for each of ``--prompts`` boundary questions with
exactly ``--tokens`` new tokens (EOS held off), score them with ASRU's reward, compute the reference log-probs
(beta 0.1) and take one AdamW step. Each run does ``--steps`` steps; a step's time is the run's wall clock
divided by ``--steps`` (setup included for both: our reference copy, TRL's trainer and reference model).
Prints JSON ``{"ratio": ours / TRL, ...}``. Goal: ratio <= 1.0.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=8, help="boundary questions per step (half forget)")
    ap.add_argument("--group", type=int, default=8, help="rollouts per question")
    ap.add_argument("--tokens", type=int, default=24, help="new tokens per rollout")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import asru_lens
    from asru_lens.core import data
    from asru_lens.methods import rl, trl_export
    from asru_lens.methods.boundary import boundary_set
    from asru_lens.organism.mllmu import world_dir
    from trl import GRPOConfig, GRPOTrainer
    from transformers.utils import logging
    logging.set_verbosity_error()

    folder = world_dir()
    boundary = boundary_set(data.generation_items(data.load_split(folder, "forget_10")),
                               data.generation_items(data.load_split(folder, "retain_90")), 40)
    cfg = rl.GRPOConfig(steps=args.steps, prompts_per_step=args.prompts, group_size=args.group,
                        max_new_tokens=args.tokens, min_new_tokens=args.tokens, lr=1e-5)

    lens = asru_lens.load()
    t = time.perf_counter()
    rl.train_grpo(lens, boundary, cfg=cfg, progress=False)
    ours = (time.perf_counter() - t) / args.steps

    lens = asru_lens.load()
    trl_args = GRPOConfig(output_dir=tempfile.mkdtemp(), max_steps=args.steps, use_cpu=True, report_to="none",
                          save_strategy="no", logging_steps=1, disable_tqdm=True,
                          generation_kwargs={"min_new_tokens": args.tokens}, **trl_export.grpo_args(cfg))
    t = time.perf_counter()
    trainer = GRPOTrainer(model=lens.model, processing_class=lens.processor, reward_funcs=trl_export.reward_func(),
                          train_dataset=trl_export.dataset(boundary), args=trl_args)
    trainer.train()
    theirs = (time.perf_counter() - t) / args.steps
    steps = [h["step_time"] for h in trainer.state.log_history if "step_time" in h]

    print(json.dumps({"ratio": round(ours / theirs, 3), "ours_s_per_step": round(ours, 3),
                      "trl_s_per_step": round(theirs, 3), "trl_logged_step_time": [round(s, 3) for s in steps],
                      "prompts": args.prompts, "group": args.group, "tokens": args.tokens, "steps": args.steps,
                      "device": "cpu", "threads": torch.get_num_threads(), "machine": platform.processor() or
                      platform.machine()}))


if __name__ == "__main__":
    main()
