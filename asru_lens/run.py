"""The main job, ``asru-lens run``: probe, steer, every registered unlearning method, one evaluation for all.

The rows are the registered methods (``asru_lens.methods``: the paper's comparison, then ours and any plugin's).
Every method starts from the same vanilla weights (or, for ASRU's stage 2, from stage 1's chosen ones) and is
scored by ``evaluate.evaluate`` on the same questions. Each is trained by ``methods.fit`` with ``tune=True``: its
learning rate picked from the same ``LR_GRID`` on a validation split (the forget set's own questions for
efficacy, retain questions outside the evaluation sample for utility) by one rule for all,
``score = (1 - forget leak + retain utility) / 2``, each the share of greedy answers that state their fact
(``measure.facts.Facts.stated``: the ground truth or half its key words). ``steer`` and
``vanilla`` train nothing; steering's strength comes from the steering sweep.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from asru_lens import methods as registry
from asru_lens import parallel
from asru_lens.core.atomic import atomic_write_bytes, atomic_write_text
from asru_lens.measure import evaluate
from asru_lens.core.oracle import oracle_weights, resolve
from asru_lens.measure.table import measure, privacy_inputs, residue_inputs  # noqa: F401  (one row of the table)
from asru_lens.methods import steering
from asru_lens.methods.budget import LR_GRID, RunConfig  # noqa: F401  (the run's budget)
from asru_lens.methods.context import Context, fit, plan, restore, saved_model
from asru_lens.report import HEADLINE, RunResult, claims, summary, write_report

# HEADLINE, RunResult, claims, summary and write_report are the report's (asru_lens/report.py), kept here for reading a run
__all__ = ["LR_GRID", "RunConfig", "RunResult", "run", "measure", "residue_inputs", "HEADLINE", "claims", "summary",
           "write_report"]

# set by `asru-lens run`'s Ctrl-C handler: the run also stops before its next task, should the KeyboardInterrupt
# have been caught inside a library on the way up. Why a flag at this depth: nnsight's Interleaver.cancel
# (nnsight/intervention/interleaver.py) catches BaseException from an intervention block while it unwinds it and
# turns it into a warning, so a Ctrl-C that lands there never reaches us; that is nnsight's code, not ours to patch
STOP = threading.Event()
def __getattr__(name):
    if name == "METHODS":               # every registered method, in order (plugins included, once loaded)
        return registry.names()
    if name == "PAPER_METHODS":         # what the paper compares (``register(paper=True)``)
        return registry.names(paper=True)
    raise AttributeError(name)


def check_methods(names) -> tuple:
    """``names`` as a tuple of registered methods, or a ValueError naming the unknown ones and the known ones."""
    return registry.check(names)


# -- finished tasks: one method's result (and the weights a later method starts from), kept as soon as it is done --
def task_config(cfg: RunConfig, lens, world) -> dict:
    """What a resumed run must share with the interrupted one."""
    return {"budget": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "model": lens.name, "world": str(getattr(world, "folder", ""))}


def start_tasks(folder: Path, config: dict, resume: bool) -> dict[str, dict]:
    """The finished tasks in ``folder`` (``{}`` unless ``resume``), after checking they belong to this run; a new
    run clears what an older one left."""
    saved = folder / "config.json"
    if resume:
        if not saved.is_file():
            raise ValueError(f"--resume: {folder} holds no interrupted run (no config.json); run without --resume, "
                             f"or pass the run folder with --out.")
        before = json.loads(saved.read_text())
        if before != json.loads(json.dumps(config)):
            diff = sorted(k for k in set(before["budget"]) | set(config["budget"])
                          if before["budget"].get(k) != config["budget"].get(k))
            raise ValueError(f"--resume: the run in {folder} was started with other settings ({', '.join(diff) or 'model or data'}"
                             f"); resume it with the same command, or start a new run with another --out.")
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.name != "config.json"}
    shutil.rmtree(folder, ignore_errors=True)
    atomic_write_text(saved, json.dumps(config, indent=1))
    return {}


def save_task(folder: Path, name: str, record: dict, weights: dict | None) -> None:
    """``folder/NAME.json`` (and ``NAME.safetensors`` when a later method starts from it), each written atomically,
    the weights first: a task whose JSON exists is finished."""
    if weights is not None:
        atomic_write_bytes(folder / f"{name}.safetensors", save({k: v.contiguous() for k, v in weights.items()}))
    atomic_write_text(folder / f"{name}.json", json.dumps(record))


def load_weights(folder: Path, name: str) -> dict:
    return load_file(str(folder / f"{name}.safetensors"))


def run(lens, world, cfg: RunConfig | None = None, progress: bool = True, figures: str | None = None,
        judge=None, save_models: str | None = None, direction=None, tasks: str | os.PathLike | None = None,
        resume: bool = False, workers: int = 1, ray_address: str | None = None, recipe=None,
        oracle="auto") -> RunResult:
    """Run every method in ``cfg.methods`` on ``lens`` (restored to vanilla between methods) in ``world``
    (``asru_lens.open_world``). ``judge``: generation quality (default the rule-based judge). ``figures``: write
    the run's figures there. ``save_models``: keep each method's chosen model in ``save_models/NAME``.
    ``direction``: a saved probe (``probe.load``) instead of probing again. ``tasks``: a folder where each
    method's result is kept as soon as it finishes; with ``resume``, the methods finished there are read back
    instead of trained again (``res.extra["resumed"]`` names them). ``workers`` > 1 or ``ray_address``: the
    trainings run as Ray tasks (``asru_lens.parallel``; ``recipe``, a ``parallel.Recipe``, says how a worker opens
    the model and the world), with the same table. ``oracle``: the model trained without the forget set (a
    folder or shipped name, or its weights), for the ``oracle`` row and every row's forget quality and PrivLeak;
    "auto": the one the model folder names (the organism's ships with it); None: no oracle (its row is left out
    and those two columns are None)."""
    cfg = cfg or RunConfig()
    check_methods(cfg.methods)
    if (workers > 1 or ray_address) and recipe is None:
        raise ValueError("run(workers=...): pass recipe=asru_lens.parallel.Recipe(model=..., data=...), how each "
                         "worker opens the model and the world.")
    say = (lambda m: tqdm.write(m, file=sys.stderr)) if progress else (lambda m: None)  # noqa: E731
    oracle = resolve(lens, oracle, say)
    oracle = oracle_weights(lens, oracle) if isinstance(oracle, str) else oracle
    if oracle is None and "oracle" in cfg.methods:
        say("note: no oracle (--oracle DIR): the oracle row is left out, forget_quality and privleak are null")
        cfg = dataclasses.replace(cfg, methods=tuple(m for m in cfg.methods if m != "oracle"))
    tasks = Path(tasks) if tasks is not None else None
    done = start_tasks(tasks, task_config(cfg, lens, world), resume) if tasks is not None else {}
    judge = judge or evaluate.rule_judge
    res, t0 = RunResult(), time.time()
    res.extra.update(protocol=lens.protocol.name, judge=getattr(judge, "name", "rule"), world=world.kind,
                     notes=list(world.missing().values()), seed=cfg.seed)
    reference = copy.deepcopy(lens.model).eval()          # never trained: the perplexity and KL reference
    ctx = Context(lens, world, cfg, reference=reference, probe_result=direction, oracle=oracle)
    vanilla_weights = ctx.vanilla_weights                  # the weights every method starts from
    # closed however the run ends, so that an interrupt's message is the last line on the terminal
    with tqdm(total=len(cfg.methods) + 1, desc="asru-lens run", disable=not progress) as stages:
        workers, ray_address = parallel.choose(workers, ray_address, lambda m: tqdm.write(m, file=sys.stderr))
        # Ray starts and every worker opens the model while this process probes
        pool = parallel.Pool(ctx, recipe=recipe, workers=workers, address=ray_address, judge=judge,
                             save_models=save_models) if workers > 1 or ray_address else None

        residue_in = residue_inputs(ctx) if cfg.residue else None
        privacy_in = privacy_inputs(ctx)

        def record(name, r, fitted, seconds, weights):
            res.methods[name] = r["metrics"]
            res.answers[name] = r["answers"]
            res.privacy[name] = r["privacy"]
            if r["residue"] is not None:
                res.residue[name] = r["residue"]
            res.extra.setdefault("seconds", {})[name] = seconds
            stages.update(1)
            say(f"{name}: leakage {r['metrics']['leakage']:.2f}, contextual refusal "
                f"{r['metrics']['contextual_refusal']:.2f}, retain cls {r['metrics']['retain_cls_acc']:.2f}")
            if tasks is not None:
                save_task(tasks, name, {"metrics": r["metrics"], "answers": r["answers"], "residue": r["residue"],
                                        "privacy": r["privacy"], "seconds": seconds, "lr": fitted["lr"],
                                        "grid": fitted["grid"]}, weights)

        # the probe and the steering sweep, on the vanilla model (what stage 1 and the steer row use)
        pres = ctx.probe
        res.extra["probe"] = pres.summary()
        points, point = steering.sweep(ctx)
        res.extra["steer"] = {k: v for k, v in point.items() if k != "examples"}
        if figures:
            from asru_lens.show import viz          # plotly and kaleido load only when figures are written
            if hasattr(pres, "acts"):
                viz.save_probe_figures(pres, figures)
            viz.save(viz.fig_tradeoff(points), "run_steer_sweep", figures)
        stages.update(1)

        res.extra["resumed"] = [n for n in cfg.methods if n in done]
        if res.extra["resumed"]:
            left = len(cfg.methods) - len(res.extra["resumed"])
            tqdm.write(f"resuming: {len(res.extra['resumed'])} of {len(cfg.methods)} tasks already finished "
                       f"({', '.join(res.extra['resumed'])}); running the other {left}", file=sys.stderr)
        for name in cfg.methods:                     # finished before the interrupt: their results, as they were kept
            if name in done:
                task = done[name]
                grid = None if task["grid"] is None else {float(k): v for k, v in task["grid"].items()}
                ctx.fitted[name] = {"lr": task["lr"], "grid": grid, "log": {}}
                if (tasks / f"{name}.safetensors").is_file():
                    ctx.fitted[name]["weights"] = load_weights(tasks, name)
                ctx.lrs[name] = task["lr"]
                res.methods[name], res.answers[name] = task["metrics"], task["answers"]
                res.privacy[name] = task.get("privacy")
                if task.get("residue") is not None:
                    res.residue[name] = task["residue"]
                res.extra.setdefault("seconds", {})[name] = task["seconds"]
                stages.update(1)
        todo = [n for n in cfg.methods if n not in done]
        if pool is not None:
            fitted = pool.run_methods(todo, {n: ctx.fitted[n] for n in done}, residue_in=residue_in,
                                      privacy_in=privacy_in, on_row=record, stop=STOP, progress=progress)
            ctx.fitted.update({n: f for n, f in fitted.items() if n not in ctx.fitted})
        for name in todo if pool is None else ():
            if STOP.is_set():                        # a Ctrl-C that a library swallowed still ends the run here
                raise KeyboardInterrupt
            t = time.time()
            out = fit(ctx, name, tune=True)
            if save_models:
                saved_model(lens, out["log"], Path(save_models) / name)
            row = measure(ctx, name, out["log"], judge, residue_in, privacy_in)
            record(name, row, out, round(time.time() - t, 1), out.get("weights"))
        if STOP.is_set():
            raise KeyboardInterrupt
        res.methods = {n: res.methods[n] for n in cfg.methods}       # the table in the run's order, however it ran
        res.answers = {n: res.answers[n] for n in cfg.methods}
        res.privacy = {n: res.privacy[n] for n in cfg.methods if res.privacy.get(n) is not None}
        res.tuning = {n: {"grid": ctx.fitted[n]["grid"], "lr": ctx.fitted[n]["lr"]} for n in plan(cfg.methods)
                      if n in ctx.fitted and ctx.fitted[n]["grid"] is not None}
        restore(lens, vanilla_weights)
        res.extra["seconds"]["total"] = round(time.time() - t0, 1)
        return res

