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
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from asru_lens import methods as registry
from asru_lens.measure import evaluate
from asru_lens.measure import residue as residue_mod
from asru_lens.measure.table import measure, residue_inputs  # noqa: F401  (one row of the table)
from asru_lens.methods.budget import LR_GRID, RunConfig  # noqa: F401  (the run's budget)
from asru_lens.methods.context import Context, fit, plan, restore, saved_model

__all__ = ["LR_GRID", "RunConfig", "RunResult", "run", "measure", "residue_inputs", "claims", "summary", "write_report"]

# set by `asru-lens run`'s Ctrl-C handler: the run also stops before its next task, should the KeyboardInterrupt
# have been caught inside a library on the way up. Why a flag at this depth: nnsight's Interleaver.cancel
# (nnsight/intervention/interleaver.py) catches BaseException from an intervention block while it unwinds it and
# turns it into a warning, so a Ctrl-C that lands there never reaches us; that is nnsight's code, not ours to patch
STOP = threading.Event()
PROTOCOL_TEXT = {"mllmu": "the paper's: one-shot A-D answered with one letter, the authors' generation and cloze "
                          "instructions", "organism": "the organism's trained prompt format"}
HEADLINE = ("forget_cls_acc", "forget_rougeL", "forget_cloze_acc", "test_cls_acc", "retain_cls_acc",
            "retain_rougeL", "celebrity_cls_acc", "contextual_refusal", "leakage", "naturalness")
RESIDUE = residue_mod.COLUMNS


def __getattr__(name):
    if name == "METHODS":               # every registered method, in order (plugins included, once loaded)
        return registry.names()
    if name == "PAPER_METHODS":         # what the paper compares (``register(paper=True)``)
        return registry.names(paper=True)
    raise AttributeError(name)


@dataclass
class RunResult:
    methods: dict = field(default_factory=dict)      # name -> metrics
    residue: dict = field(default_factory=dict)      # name -> residue (relearning attack, probes)
    answers: dict = field(default_factory=dict)      # name -> set -> list of judged answers
    tuning: dict = field(default_factory=dict)       # method -> {"grid": {lr: validation score}, "lr": best}
    extra: dict = field(default_factory=dict)        # probe summary, steering point, timings


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
    import shutil

    from asru_lens.core.atomic import atomic_write_text
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
    from asru_lens.core.atomic import atomic_write_bytes, atomic_write_text
    if weights is not None:
        from safetensors.torch import save
        atomic_write_bytes(folder / f"{name}.safetensors", save({k: v.contiguous() for k, v in weights.items()}))
    atomic_write_text(folder / f"{name}.json", json.dumps(record))


def load_weights(folder: Path, name: str) -> dict:
    from safetensors.torch import load_file
    return load_file(str(folder / f"{name}.safetensors"))


def run(lens, world, cfg: RunConfig | None = None, progress: bool = True, figures: str | None = None,
        judge=None, save_models: str | None = None, direction=None, tasks: str | os.PathLike | None = None,
        resume: bool = False, workers: int = 1, ray_address: str | None = None, recipe=None) -> RunResult:
    """Run every method in ``cfg.methods`` on ``lens`` (restored to vanilla between methods) in ``world``
    (``asru_lens.open_world``). ``judge``: generation quality (default the rule-based judge). ``figures``: write
    the run's figures there. ``save_models``: keep each method's chosen model in ``save_models/NAME``.
    ``direction``: a saved probe (``probe.load``) instead of probing again. ``tasks``: a folder where each
    method's result is kept as soon as it finishes; with ``resume``, the methods finished there are read back
    instead of trained again (``res.extra["resumed"]`` names them). ``workers`` > 1 or ``ray_address``: the
    trainings run as Ray tasks (``asru_lens.parallel``; ``recipe``, a ``parallel.Recipe``, says how a worker opens
    the model and the world), with the same table."""
    cfg = cfg or RunConfig()
    check_methods(cfg.methods)
    if (workers > 1 or ray_address) and recipe is None:
        raise ValueError("run(workers=...): pass recipe=asru_lens.parallel.Recipe(model=..., data=...), how each "
                         "worker opens the model and the world.")
    tasks = Path(tasks) if tasks is not None else None
    done = start_tasks(tasks, task_config(cfg, lens, world), resume) if tasks is not None else {}
    judge = judge or evaluate.rule_judge
    say = (lambda m: tqdm.write(m, file=sys.stderr)) if progress else (lambda m: None)  # noqa: E731
    res, t0 = RunResult(), time.time()
    res.extra.update(protocol=lens.protocol.name, judge=getattr(judge, "name", "rule"), world=world.kind,
                     notes=list(world.missing().values()), seed=cfg.seed)
    reference = copy.deepcopy(lens.model).eval()          # never trained: the perplexity and KL reference
    ctx = Context(lens, world, cfg, reference=reference, probe_result=direction)
    vanilla_weights = ctx.vanilla_weights                  # the weights every method starts from
    # closed however the run ends, so that an interrupt's message is the last line on the terminal
    with tqdm(total=len(cfg.methods) + 1, desc="asru-lens run", disable=not progress) as stages:
        from asru_lens import parallel
        workers, ray_address = parallel.choose(workers, ray_address, lambda m: tqdm.write(m, file=sys.stderr))
        # Ray starts and every worker opens the model while this process probes
        pool = parallel.Pool(ctx, recipe=recipe, workers=workers, address=ray_address, judge=judge,
                             save_models=save_models) if workers > 1 or ray_address else None

        residue_in = residue_inputs(ctx) if cfg.residue else None

        def record(name, r, fitted, seconds, weights):
            res.methods[name] = r["metrics"]
            res.answers[name] = r["answers"]
            if r["residue"] is not None:
                res.residue[name] = r["residue"]
            res.extra.setdefault("seconds", {})[name] = seconds
            stages.update(1)
            say(f"{name}: leakage {r['metrics']['leakage']:.2f}, contextual refusal "
                f"{r['metrics']['contextual_refusal']:.2f}, retain cls {r['metrics']['retain_cls_acc']:.2f}")
            if tasks is not None:
                save_task(tasks, name, {"metrics": r["metrics"], "answers": r["answers"], "residue": r["residue"],
                                        "seconds": seconds, "lr": fitted["lr"], "grid": fitted["grid"]}, weights)

        # the probe and the steering sweep, on the vanilla model (what stage 1 and the steer row use)
        from asru_lens.methods import steering
        pres = ctx.probe
        res.extra["probe"] = pres.summary()
        points, point = steering.sweep(ctx)
        res.extra["steer"] = {k: v for k, v in point.items() if k != "examples"}
        if figures:
            from asru_lens import viz
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
                if task.get("residue") is not None:
                    res.residue[name] = task["residue"]
                res.extra.setdefault("seconds", {})[name] = task["seconds"]
                stages.update(1)
        todo = [n for n in cfg.methods if n not in done]
        if pool is not None:
            fitted = pool.run_methods(todo, {n: ctx.fitted[n] for n in done}, residue_in=residue_in, on_row=record,
                                      stop=STOP, progress=progress)
            ctx.fitted.update({n: f for n, f in fitted.items() if n not in ctx.fitted})
        for name in todo if pool is None else ():
            if STOP.is_set():                        # a Ctrl-C that a library swallowed still ends the run here
                raise KeyboardInterrupt
            t = time.time()
            out = fit(ctx, name, tune=True)
            if save_models:
                saved_model(lens, out["log"], Path(save_models) / name)
            row = measure(ctx, name, out["log"], judge, residue_in)
            record(name, row, out, round(time.time() - t, 1), out.get("weights"))
        if STOP.is_set():
            raise KeyboardInterrupt
        res.methods = {n: res.methods[n] for n in cfg.methods}       # the table in the run's order, however it ran
        res.answers = {n: res.answers[n] for n in cfg.methods}
        res.tuning = {n: {"grid": ctx.fitted[n]["grid"], "lr": ctx.fitted[n]["lr"]} for n in plan(cfg.methods)
                      if n in ctx.fitted and ctx.fitted[n]["grid"] is not None}
        restore(lens, vanilla_weights)
        res.extra["seconds"]["total"] = round(time.time() - t0, 1)
        return res


def claims(methods: dict) -> list[dict]:
    """The paper's claim in miniature, checked on a results table: ``{"claim", "holds", "measured"}`` per line
    (only the lines whose methods are in the table). "Other methods" are the unlearning methods: vanilla is
    the untouched reference, which the utility lines compare against."""
    if "asru" not in methods:
        return []
    a, out = methods["asru"], []
    # the paper compares ASRU with the baselines, steering and its own stage 1; our rewrite row goes beyond it
    paper = registry.names(paper=True)
    others = {m: v for m, v in methods.items() if m in paper and m not in ("asru", "vanilla")}
    base = {m: v for m, v in methods.items() if m in registry.REGISTRY and registry.REGISTRY[m].baseline}
    for k in ("contextual_refusal", "naturalness"):
        best = max(others, key=lambda m: others[m][k]) if others else None
        if best:
            out.append({"claim": f"asru has the highest {k} of the unlearning methods",
                        "holds": a[k] >= others[best][k],
                        "measured": f"asru {a[k]:.2f}, best other {best} {others[best][k]:.2f}"})
    if base:
        best = max(base, key=lambda m: base[m]["leakage"])
        out.append({"claim": "asru leaks at most as much as the best baseline (leakage: 5 = none)",
                    "holds": a["leakage"] >= base[best]["leakage"],
                    "measured": f"asru {a['leakage']:.2f}, best baseline {best} {base[best]['leakage']:.2f}"})
    if "vanilla" in methods:
        for k in ("retain_cls_acc", "celebrity_cls_acc"):
            gap = a[k] - methods["vanilla"][k]
            out.append({"claim": f"asru {k} within 5 points of vanilla", "holds": gap >= -0.05,
                        "measured": f"asru {a[k]:.3f}, vanilla {methods['vanilla'][k]:.3f} ({100 * gap:+.1f})"})
    return out


def summary(res: RunResult) -> dict:
    """What ``asru-lens run --json`` prints: ``{"methods": {NAME: {metric: value}}, ...}``."""
    r = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    methods = {m: {k: r(v) for k, v in mets.items()} for m, mets in res.methods.items()}
    return {"methods": methods, "claims": claims(methods), "tuning": res.tuning, "steer": res.extra.get("steer"),
            "residue": res.residue,
            "seconds": res.extra.get("seconds"), "protocol": res.extra.get("protocol"),
            "judge": res.extra.get("judge"), "world": res.extra.get("world"), "seed": res.extra.get("seed"),
            "notes": res.extra.get("notes", [])}


def _why(info: dict, res: RunResult) -> list[str]:
    """What the measured run shows about each claim that does not hold (facts from the same run)."""
    lines, m = [], info["methods"]
    for c in info["claims"]:
        if c["holds"]:
            continue
        if "naturalness" in c["claim"]:
            best = max((x for x in m if x in registry.names(paper=True) and x not in ("asru", "vanilla")),
                       key=lambda x: m[x]["naturalness"])
            lines.append(f"* **naturalness**: {best} writes the more fluent text, but it is fluent *answering*: its "
                         f"contextual refusal is {m[best]['contextual_refusal']:.2f} and its leakage score "
                         f"{m[best]['leakage']:.2f} (asru: {m['asru']['contextual_refusal']:.2f}, "
                         f"{m['asru']['leakage']:.2f}). The rubric scores form, not whether the answer should "
                         f"have been given, so a method that forgets little loses little fluency.")
        elif "contextual_refusal" in c["claim"] or "leaks" in c["claim"]:
            lines.append(f"* **{c['claim']}**: {c['measured']}.")
        else:
            key = "retain" if "retain" in c["claim"] else "celebrity"
            wrong = [a for a in res.answers.get("asru", {}).get(key, []) if a.get("contextual_refusal", 0) > 0]
            sample = "; ".join(f"\"{a['question']}\" -> \"{a['answer']}\"" for a in wrong[:3])
            lines.append(f"* **{key} A-D accuracy**: {c['measured']}. The generation answers asru gets wrong on "
                         f"this set ({len(wrong)} of {len(res.answers.get('asru', {}).get(key, []))}): {sample}.")
    return lines


def write_report(res: RunResult, folder: str | os.PathLike, figures: str | os.PathLike | None = None) -> list[Path]:
    """``folder/report.json`` and ``folder/report.md`` (table, figures, example answers), written atomically; the
    figures go to ``figures`` (default ``folder/figures``), linked from the report by a relative path."""
    from asru_lens.show import viz
    from asru_lens.core.atomic import atomic_write_text
    folder = Path(folder)
    figures = Path(figures) if figures is not None else folder / "figures"
    info = summary(res)
    paths = [atomic_write_text(folder / "report.json", json.dumps(info, indent=1))]
    fig = viz.fig_methods(info["methods"])
    paths += viz.save(fig, "run_tradeoff", figures)
    rel = lambda p: Path(os.path.relpath(figures / p, folder)).as_posix()  # noqa: E731
    about = PROTOCOL_TEXT.get(info["protocol"], "from the model folder")
    lines = ["# asru-lens run", "",
             f"Evaluation protocol: **{info['protocol']}** ({about}). Judge: **{info['judge']}**. "
             f"World: {info['world']}. Seed: {info['seed']}.", ""]
    lines += [f"* Note: {n}." for n in info["notes"]] + ([""] if info["notes"] else [])
    lines += ["| method | " + " | ".join(HEADLINE) + " |", "|---" * (len(HEADLINE) + 1) + "|"]
    for m, mets in info["methods"].items():
        lines.append(f"| {m} | " + " | ".join(f"{mets.get(k):.3f}" if mets.get(k) is not None else "-"
                                              for k in HEADLINE) + " |")
    if info["claims"]:
        lines += ["", "## The paper's claim, in miniature", "", "| claim | holds | measured |", "|---|---|---|"]
        lines += [f"| {c['claim']} | {'yes' if c['holds'] else '**no**'} | {c['measured']} |" for c in info["claims"]]
        why = _why(info, res)
        m = info["methods"]
        if "vanilla" in m and m["asru"]["forget_cls_acc"] >= m["vanilla"]["forget_cls_acc"] - 0.05:
            lines += ["", f"Outside the claim: asru refuses to *say* the forget facts, but still picks them in A-D "
                      f"questions (forget cls {m['asru']['forget_cls_acc']:.3f}, vanilla "
                      f"{m['vanilla']['forget_cls_acc']:.3f}). Refusing is not removing: the knowledge is still "
                      f"in the weights, and the multiple-choice probe finds it."]
        if why:
            lines += ["", "Where a claim does not hold, every method was still tuned alike (the learning rate "
                      "grid below, one validation rule); the table is published as measured. What the same run "
                      "shows:", ""] + why
    if info["residue"]:
        paths += viz.save(viz.fig_residue(info["residue"]), "run_residue", figures)
        lines += ["", "## Forgotten or hidden?", "",
                  "What each method still knows about the forget people (`asru_lens.measure.residue`): the held-out "
                  "leak after a 30-step relearning attack on the other half of each person's facts and its recovery "
                  "(`(leak_after - leak_unlearned) / (leak_vanilla - leak_unlearned)`); the leak asked by name with "
                  "no photo, and its refusals; the leak with a direction ablated from every layer; the leak after "
                  "30 steps of fine-tuning on the retain people only; the best layer of the A-D probe (chance "
                  "0.25) and of the value probe.", "",
                  "| method | " + " | ".join(RESIDUE) + " | probe chance | forget_cls_acc |", "|---" * (len(RESIDUE) + 3) + "|"]
        for m, mets in info["methods"].items():
            cells = [mets.get(k) for k in RESIDUE] + [mets.get("probe_acc_chance"), mets.get("forget_cls_acc")]
            lines.append(f"| {m} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in cells) + " |")
        lines += ["", f"![residue]({rel('run_residue.png')})"]
    lines += ["", f"![trade-off]({rel('run_tradeoff.png')})", "",
              "Learning rates chosen on the validation split: " + ", ".join(
                  f"{k} {v['lr']:g}" for k, v in info["tuning"].items())]
    edge = [k for k, v in info["tuning"].items() if len(v["grid"]) > 2 and float(v["lr"]) in (
        min(map(float, v["grid"])), max(map(float, v["grid"])))]
    if edge:
        lines += ["", f"At the edge of the grid (a wider grid might do better): {', '.join(edge)}."]
    lines += ["", "## Example answers", ""]
    for name in ("forget", "retain"):
        lines += [f"### {name}", "", "| method | question | answer |", "|---|---|---|"]
        for i in range(2):
            for m in res.answers:
                a = res.answers[m][name][i]
                lines.append(f"| {m} | {a['question']} | {a['answer'].replace('|', '/')} |")
        lines.append("")
    paths.append(atomic_write_text(folder / "report.md", "\n".join(lines)))
    return paths
