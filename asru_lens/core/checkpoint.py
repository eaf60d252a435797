"""Resumable training checkpoints, written atomically: the trainable weights (safetensors), the optimiser,
scheduler and RNG state (``torch.save``, read back with ``weights_only=True``) and the progress (JSON).

``save`` writes ``folder/step-000040`` through a temp folder and drops older step folders; ``latest`` finds the
newest; ``load`` restores everything so that a resumed run ends on the same weights as an uninterrupted one.
Stage 2 (``rl.train_grpo``) and ``finetune`` use them.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from asru_lens.core.atomic import atomic_dir


def save(folder, step: int, params: dict, opt, sampler, log: dict, cfg, scheduler=None) -> Path:
    """Write ``folder/step-{step}`` atomically and drop older step folders."""
    folder = Path(folder)
    final = folder / f"step-{step:06d}"
    with atomic_dir(final) as tmp:
        save_file({k: p.detach().contiguous() for k, p in params.items()}, str(tmp / "trainable.safetensors"))
        state = {"optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()}
        if scheduler is not None:
            state["scheduler"] = scheduler.state_dict()
        torch.save(state, tmp / "state.pt")
        (tmp / "progress.json").write_text(json.dumps({"step": step, "sampler": sampler.bit_generator.state,
                                                       "log": log,
                                                       "config": asdict(cfg) if is_dataclass(cfg) else cfg}))
    for old in folder.glob("step-*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(folder) -> Path | None:
    steps = sorted(Path(folder).glob("step-*/progress.json")) if folder and Path(folder).is_dir() else []
    return steps[-1].parent if steps else None


def load(path: Path, params: dict, opt, sampler, scheduler=None) -> tuple[int, dict]:
    """Restore ``params``, ``opt``, ``scheduler`` and the RNGs from ``path``; returns (step, log)."""
    weights = load_file(str(path / "trainable.safetensors"))
    missing = set(params) - set(weights)
    if missing:
        raise ValueError(f"checkpoint {path} lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]}); "
                         f"it was written with other trainable parameters. Resume with the same config, or "
                         f"start over without resume.")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(weights[k])
    state = torch.load(path / "state.pt", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    progress = json.loads((path / "progress.json").read_text())
    sampler.bit_generator.state = progress["sampler"]
    return progress["step"], progress["log"]
