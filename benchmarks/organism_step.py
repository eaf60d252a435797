"""How much faster is an organism training step with bf16 autocast than in fp32, on this machine?

Prints one JSON object: seconds per step for each precision and the ratio. The organism's build
budget (10 minutes on 2 cores) relies on bf16 matmuls, which need AVX512-BF16 or AMX to pay off.

    python benchmarks/organism_step.py [--steps 6] [--threads 2]
"""
import argparse
import json
import platform
import time

import numpy as np
import torch

from asru_lens.organism import model as M
from asru_lens.organism import train as T
from asru_lens.organism import world as W


def seconds_per_step(model, enc, batches, pixels, bf16: bool) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i, examples in enumerate(batches):
        batch = enc.batch(examples, pixels)
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = T.answer_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms up kernels
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    world = W.build_world()
    processor = M.make_processor(M.train_tokenizer(T.corpus(world)))
    cfg = T.OrganismConfig()
    model = M.make_model(M.make_config(processor.tokenizer, cfg.hidden, cfg.layers))
    examples, enc = T.Examples(world), T.Encoder(processor)
    pixels = torch.randn(len(examples.bank), (M.SIZE // 16) ** 2, 1536)
    rng = np.random.default_rng(0)
    batches = [examples.sample_batch(rng, cfg.batch_size) for _ in range(args.steps + 1)]
    fp32 = seconds_per_step(model, enc, batches, pixels, bf16=False)
    bf16 = seconds_per_step(model, enc, batches, pixels, bf16=True)
    print(json.dumps({"benchmark": "organism_train_step", "batch_size": cfg.batch_size, "threads": args.threads,
                      "cpu": platform.processor() or platform.machine(), "fp32_s": round(fp32, 4),
                      "bf16_s": round(bf16, 4), "speedup_bf16_over_fp32": round(fp32 / bf16, 2)}))


if __name__ == "__main__":
    main()
