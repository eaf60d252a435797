"""Steered generation (nnsight, activation addition at every step) vs plain HF ``generate``.

Same batch, same number of new tokens (EOS held off with min_new_tokens), same process, best of ``--repeats``.
Prints JSON ``{"ratio": nnsight-steered / plain, "hooks_ratio": hook-steered (steer.steering) / plain, ...}``.
Goal: ratio <= 1.3.
"""
from __future__ import annotations

import argparse
import json
import platform

import torch
from timing import best  # benchmarks/timing.py (scripts run from this folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", help="model folder or Hub id (default: the organism)")
    ap.add_argument("--n", type=int, default=64, help="prompts in the batch")
    ap.add_argument("--tokens", type=int, default=24, help="new tokens per prompt")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    args = ap.parse_args()

    import asru_lens
    from asru_lens.core import data
    from asru_lens.interpret import steer
    from asru_lens.organism.mllmu import world_dir

    torch.set_grad_enabled(False)
    lens = asru_lens.load(args.model)
    items = data.generation_items(data.load_split(world_dir(), "Full_Set"))[:args.n]
    d = lens.model.config.text_config.hidden_size
    spec = steer.Steering(torch.randn(d, generator=torch.Generator().manual_seed(0)), lens.n_layers // 2, 1.0)
    kw = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, batch_size=args.n)
    steered = lambda: steer.generate(lens, items, spec, **kw)  # noqa: E731
    plain = lambda: steer.generate(lens, items, None, **kw)  # noqa: E731
    def hooked():
        with steer.steering(lens, spec):
            return steer.generate(lens, items, None, **kw)

    steered(), plain(), hooked()  # warm-up
    t_steered, t_plain, t_hooked = best(steered, args.repeats), best(plain, args.repeats), best(hooked, args.repeats)
    print(json.dumps({"ratio": round(t_steered / t_plain, 3), "goal": 1.3, "steered_s": round(t_steered, 4),
                      "plain_s": round(t_plain, 4), "hooks_s": round(t_hooked, 4),
                      "hooks_ratio": round(t_hooked / t_plain, 3), "n": args.n, "new_tokens": args.tokens,
                      "model": lens.name,
                      "device": str(lens.device), "threads": torch.get_num_threads(),
                      "cpu": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
