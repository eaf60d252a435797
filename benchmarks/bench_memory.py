"""Peak memory of each stage on random-weight Qwen3-VL models at the released 2B, 4B and 8B widths.

For each size, a model is built at its real widths (vocabulary 151,936 included, the full vision tower) with
its text layers cut to ``--layers`` (two depths, e.g. 2 and 4), in bf16, and each stage runs once on it:

==========  ====================================================================================================
probe       greedy replies (24 tokens) and resid_pre of every layer for a batch of ``--batch`` prompts
stage1      ASRU's redirect: one epoch on one forget and ``--batch`` retain prompts, batch 2 (one down_proj)
stage2      one GRPO step: ``--prompts`` questions x group 8, 24 sampled tokens, LoRA r=16, gradient checkpointing
finetune    one step of the authors' recipe: LoRA r=16 on every linear layer of the language model, batch 4,
            gradient checkpointing
==========  ====================================================================================================

Each prompt carries one 448x448 photo (196 visual tokens). The peak of each stage (CUDA: ``max_memory_allocated``;
CPU: the weights plus the process's resident memory above what it held before the stage, sampled every 5 ms)
is extrapolated
by layer to full depth: ``peak(L) = a + b * L``, fitted on the two cut depths. With ``--full`` (GPU) the full
depth is also measured, to check the extrapolation. Prints JSON (``--json``) or a table, in GB.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import threading
import time
import warnings

import torch


class CPUPeak:
    """Peak resident memory of this process above its level at ``start``, sampled in a thread."""

    def __init__(self):
        import psutil
        self.proc, self.peak, self.base, self._run = psutil.Process(os.getpid()), 0, 0, False

    def start(self):
        gc.collect()
        self.base = self.peak = self.proc.memory_info().rss
        self._run = True
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()

    def _sample(self):
        while self._run:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def stop(self) -> int:
        self._run = False
        self._t.join()
        return max(self.peak, self.proc.memory_info().rss) - self.base


def measure(fn, device: str) -> tuple[float, float]:
    """(peak GB, seconds) of ``fn()``; on CUDA the peak includes the weights already there."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 1e9, time.perf_counter() - t
    meter = CPUPeak()
    meter.start()
    t = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t
    return meter.stop() / 1e9, seconds


def stages(lens, photo, args) -> dict:
    from asru_lens.interpret import activations, probe
    from asru_lens.core import finetune
    from asru_lens.methods import redirect, rl
    from asru_lens.methods.boundary import boundary_set
    from asru_lens.core.data import QA
    from asru_lens.methods.asru import grpo_config

    qa = lambda i, f=False: QA(f"Where was this person born? ({i})", f"This person was born in Town {i}.",  # noqa
                               photo, str(i), "Image_Textual", meta={"forget": f})
    items = [qa(i) for i in range(args.batch)]
    d = lens.model.config.text_config.hidden_size
    out = {}

    def run_probe():
        probe.answers(lens, items, max_new_tokens=24, batch_size=args.batch)
        activations.activations(lens, items, batch_size=args.batch)

    def run_stage1():
        redirect.redirect(lens, torch.randn(d), max(1, lens.n_layers - 1), items[:1], items, redirect.RedirectConfig(
            epochs=1, batch_size=2), progress=False)

    def run_stage2():
        boundary = boundary_set([qa(i, True) for i in range(4)], [qa(i) for i in range(4, 8)], 4, augment=False)
        cfg = grpo_config(lens, steps=1, prompts_per_step=args.prompts, group_size=8, max_new_tokens=24,
                          min_new_tokens=24, lr=1e-5)
        rl.train_grpo(lens, boundary, cfg=cfg, progress=False)

    def run_finetune():
        cfg = finetune.finetune_config(lens, max_steps=1, batch_size=4, gradient_checkpointing=True)
        finetune.finetune(lens, items[:4], cfg, progress=False)

    weights_gb = sum(p.numel() * p.element_size() for p in lens.model.parameters()) / 1e9
    for name, fn in (("probe", run_probe), ("stage1", run_stage1), ("stage2", run_stage2), ("finetune", run_finetune)):
        if name in args.stages:
            peak, seconds = measure(fn, args.device)
            if args.device != "cuda":        # resident memory above the start: add the weights already there
                peak += weights_gb
            out[name] = {"peak_gb": round(peak, 3), "seconds": round(seconds, 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2B,4B,8B")
    ap.add_argument("--layers", default="2,4", help="two cut depths to fit the per-layer slope on")
    ap.add_argument("--stages", default="probe,stage1,stage2,finetune")
    ap.add_argument("--batch", type=int, default=8, help="prompts per probe batch (default 8)")
    ap.add_argument("--prompts", type=int, default=8, help="stage-2 questions per step (x group 8; default 8)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--full", action="store_true", help="also measure the full depth (GPU)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    args.stages = args.stages.split(",")
    warnings.filterwarnings("ignore")
    from PIL import Image
    from transformers.utils import logging
    logging.set_verbosity_error()

    from asru_lens.core import qwen3vl
    from asru_lens.core.load import Lens
    photo = Image.new("RGB", (448, 448), (120, 110, 100))
    processor = qwen3vl.real_processor()
    depths = [int(x) for x in args.layers.split(",")]
    result = {"device": args.device, "card": torch.cuda.get_device_name() if args.device == "cuda" else
              platform.processor() or platform.machine(), "dtype": "bfloat16", "photo": "448x448 (196 tokens)",
              "torch": torch.__version__, "sizes": {}}
    for size in args.sizes.split(","):
        full_depth = qwen3vl.CONFIGS[size]["text"]["num_hidden_layers"]
        measured = {}
        for layers in depths + ([full_depth] if args.full else []):
            model, _ = qwen3vl.random_model(size, layers, processor=processor, vocab_size=qwen3vl.QWEN_VOCAB,
                                            dtype=torch.bfloat16, device=args.device)
            lens = Lens(model, processor, f"random Qwen3-VL-{size}")
            weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9
            measured[layers] = {"weights_gb": round(weights_gb, 3), **stages(lens, photo, args)}
            del lens, model
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
        lo, hi = depths
        per_stage = {}
        for stage in args.stages + ["weights_gb"]:
            get = (lambda m: m[stage]["peak_gb"]) if stage != "weights_gb" else (lambda m: m["weights_gb"])  # noqa
            slope = (get(measured[hi]) - get(measured[lo])) / (hi - lo)
            est = get(measured[lo]) + slope * (full_depth - lo)
            per_stage[stage] = {"per_layer_gb": round(slope, 4), "full_depth_gb": round(est, 2)}
            if args.full:
                per_stage[stage]["measured_full_gb"] = round(get(measured[full_depth]), 2)
            if stage != "weights_gb":
                per_stage[stage]["seconds_at_cut"] = measured[hi][stage]["seconds"]
                if args.full:
                    per_stage[stage]["seconds_full"] = measured[full_depth][stage]["seconds"]
        result["sizes"][size] = {"layers": full_depth, "estimate": per_stage,
                                 "measured": {str(k): v for k, v in measured.items()}}
    if args.json:
        print(json.dumps(result))
        return
    print(f"device: {result['device']} ({result['card']}), bf16, one 448x448 photo per prompt")
    print(f"{'size':5} {'stage':9} {'GB/layer':>9} {'full depth GB':>14}")
    for size, r in result["sizes"].items():
        for stage, e in r["estimate"].items():
            print(f"{size:5} {stage:9} {e['per_layer_gb']:9.3f} {e['full_depth_gb']:14.2f}"
                  + (f"  measured {e['measured_full_gb']:.2f}" if "measured_full_gb" in e else ""))


if __name__ == "__main__":
    main()
