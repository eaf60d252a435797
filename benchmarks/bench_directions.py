"""Directions extraction over all layers vs one plain HF forward with output_hidden_states=True.

Both run on the same processor batch, in the same process, interleaved, best of ``--repeats``. Extraction is
``probe.mean_activations`` (nnsight trace per batch, resid_pre of every layer at the post-instruction positions,
float64 means); the baseline is ``model(**batch, output_hidden_states=True)``. Prints JSON:
``{"ratio": extraction / forward, "by_n": [{n, extract_s, forward_s, ratio}, ...], ...}``. Goal: ratio <= 1.25.
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
    ap.add_argument("--sizes", default="64,256,1024", help="numbers of prompts (one batch each)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print JSON (the only output format; kept for symmetry)")
    args = ap.parse_args()

    import asru_lens
    from asru_lens.core import data
    from asru_lens.interpret import probe
    from asru_lens.organism.mllmu import world_dir

    torch.set_grad_enabled(False)
    lens = asru_lens.load(args.model)
    items = data.generation_items(data.load_split(world_dir(), "Full_Set"), image_index=None)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        batch = (items * (n // len(items) + 1))[:n]
        enc = lens.encode([q.question for q in batch], [q.image for q in batch])
        positions = lens.post_instruction_positions()
        extract = lambda: probe.resid_pre(lens, enc, positions).double().sum(0) / n  # noqa: E731
        forward = lambda: lens.model(**enc, output_hidden_states=True)  # noqa: E731
        extract(), forward()  # warm-up: nnsight compiles its trace on first use
        t_extract, t_forward = best(extract, args.repeats), best(forward, args.repeats)
        rows.append({"n": n, "extract_s": round(t_extract, 4), "forward_s": round(t_forward, 4),
                     "ratio": round(t_extract / t_forward, 3)})
    out = {"ratio": max(r["ratio"] for r in rows), "goal": 1.25, "by_n": rows, "layers": lens.n_layers,
           "model": lens.name, "device": str(lens.device), "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
