"""The main job, ``asru-lens run``: probe, steer, ASRU stages 1 and 2, the baselines, one evaluation for all.

Every method starts from the same vanilla weights and is scored by ``evaluate.evaluate`` on the same
questions. Baselines train the language model's decoder layers for the same number of forget steps. Every
trained method's learning rate is picked from the same ``LR_GRID`` on a validation split (the forget set's own
questions for efficacy, retain questions outside the evaluation sample for utility) by one rule for all:
``score = (1 - leak on forget questions + exact match on validation retain questions) / 2``.
For ASRU that is done stage by stage: stage 1's lr on the grid (the ``stage1`` row), then stage 2's lr on the
grid, starting from the chosen stage 1 (the ``asru`` row). ``steer`` trains nothing; its strength comes from
the steering sweep.
"""
from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from asru_lens import baselines, data, evaluate, probe, steer
from asru_lens import residue as residue_mod
from asru_lens.refusal import contains, exact_match

METHODS = ("vanilla", "GA", "GD", "KL", "NPO", "IDK", "steer", "stage1", "asru", "rewrite")
PAPER_METHODS = METHODS[:-1]           # what the paper compares; `rewrite` is ours (notebook 05)
LR_GRID = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
PROTOCOL_TEXT = {"mllmu": "the paper's: one-shot A-D answered with one letter, the authors' generation and cloze "
                          "instructions", "organism": "the organism's trained prompt format"}
HEADLINE = ("forget_cls_acc", "forget_rougeL", "forget_cloze_acc", "test_cls_acc", "retain_cls_acc",
            "retain_rougeL", "celebrity_cls_acc", "contextual_refusal", "leakage", "naturalness")
RESIDUE = ("relearn_recovery_30", "relearn_leak_30", "probe_acc_max")


@dataclass
class RunConfig:
    forget: int = 10
    n_eval: int = 240                  # questions per set and task (as many as there are, up to this)
    n_val: int = 32
    baseline_steps: int = 40
    lr_grid: tuple = LR_GRID
    steer_alphas: tuple = (1.0, 1.5, 2.0)
    grpo_steps: int | None = 80        # stage 2 steps per grid point (5 points and the residue fit 20 min); None: preset
    seed: int = 0
    methods: tuple = METHODS
    residue: bool = True               # relearning attack and probes on every method (asru_lens.residue)
    rewrite_stage1: bool = False       # the rewrite row runs ASRU's stage 2 alone on top (True: stage 1 too)
    residue_steps: tuple = (10, 30)    # relearning steps read in the run (asru-lens residue: 10, 30, 100)
    rewrite_steps: int = 300           # the rewrite's cap per grid point (it stops earlier once learnt)

    @classmethod
    def small(cls, **kw) -> "RunConfig":
        """A smaller budget (fewer questions, a two-point grid, no residue) for notebooks and quick looks."""
        return cls(**{"n_eval": 24, "n_val": 16, "baseline_steps": 20, "lr_grid": (1e-4, 3e-3),
                      "steer_alphas": (1.5,), "grpo_steps": 40, "residue": False, "rewrite_steps": 40, **kw})


@dataclass
class RunResult:
    methods: dict = field(default_factory=dict)      # name -> metrics
    residue: dict = field(default_factory=dict)      # name -> residue (relearning attack, probes)
    answers: dict = field(default_factory=dict)      # name -> set -> list of judged answers
    tuning: dict = field(default_factory=dict)       # method -> {"grid": {lr: validation score}, "lr": best}
    extra: dict = field(default_factory=dict)        # probe summary, steering point, timings


def _restore(lens, weights) -> None:
    lens.model.load_state_dict(weights)   # the same module object, so lens.nn still wraps it


def validation_score(lens, val_forget: list, val_retain: list) -> float:
    """(1 - leak on forget questions + exact match on retain questions) / 2, greedy answers."""
    f = lens.generate([q.question for q in val_forget], [q.image for q in val_forget], max_new_tokens=24)
    r = lens.generate([q.question for q in val_retain], [q.image for q in val_retain], max_new_tokens=24)
    efficacy = 1 - np.mean([contains(a, q.answer) for a, q in zip(f, val_forget)])
    utility = np.mean([exact_match(a, q.answer) for a, q in zip(r, val_retain)])
    return float((efficacy + utility) / 2)


def tune(lens, start: dict, train, grid, score, desc: str = "", progress: bool = False
         ) -> tuple[dict, float, dict]:
    """Train from ``start`` weights at every lr of ``grid`` (``train(lr)``), score each with ``score()``, and
    leave ``lens`` at the best one. Returns ({lr: score}, best lr, best weights)."""
    scores, best = {}, (None, -1.0, None)
    for lr in tqdm(grid, desc=f"lr grid {desc}", leave=False, disable=not progress):
        _restore(lens, start)
        train(lr)
        scores[lr] = score()
        if scores[lr] > best[1]:
            best = (lr, scores[lr], {k: v.detach().clone() for k, v in lens.model.state_dict().items()})
    _restore(lens, best[2])
    return scores, best[0], best[2]


def check_methods(methods) -> tuple:
    """``methods`` as a tuple of known names, or a ValueError naming the unknown ones and the known ones."""
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown)) or '(none given)'}: choose from "
                         f"{', '.join(METHODS)}.")
    return methods


def run(lens, world, cfg: RunConfig = RunConfig(), progress: bool = True, figures: str | None = "figures",
        judge=None) -> RunResult:
    """Run every method in ``cfg.methods`` on ``lens`` (restored to vanilla between methods) in ``world``
    (``asru_lens.open_world``). ``judge``: generation quality (default the rule-based judge)."""
    from asru_lens.pipeline import UnlearnConfig, eval_sets, redirect_stage, reinforce_stage
    from asru_lens.sets import _sample, probe_sets, retain_items

    check_methods(cfg.methods)
    judge = judge or evaluate.rule_judge
    say = tqdm.write if progress else (lambda m: None)
    res, t0 = RunResult(), time.time()
    res.extra.update(protocol=lens.protocol.name, judge=getattr(judge, "name", "rule"), world=world.kind,
                     notes=list(world.missing().values()), seed=cfg.seed)
    reference = copy.deepcopy(lens.model).eval()          # never trained: the perplexity and KL reference
    vanilla_weights = reference.state_dict()               # and the weights every method starts from
    items = evaluate.eval_items(world, cfg.forget, cfg.n_eval, cfg.seed)
    score = lambda: evaluate.evaluate(lens, world, cfg.forget, judge=judge,  # noqa: E731
                                      reference=reference, progress=False, items=items)
    ucfg = UnlearnConfig(forget=cfg.forget, seed=cfg.seed).resolved(lens)
    ucfg.grpo = replace(ucfg.grpo, steps=cfg.grpo_steps or ucfg.grpo.steps)
    rows = world.rows(cfg.forget)
    forget, retain_all = data.generation_items(rows["forget"]), data.generation_items(rows["retain"])
    boundary_retain = retain_items(world, cfg.forget, ucfg.retain_all_photos)
    eval_qs = {(q.question, q.id) for q in items["retain"]["gen"]}
    val_retain = _sample([q for q in retain_all if (q.question, q.id) not in eval_qs], cfg.n_val, cfg.seed + 7)
    val_forget = _sample(forget, cfg.n_val, cfg.seed + 7)
    stages = tqdm(total=len(cfg.methods) + 1, desc="asru-lens run", disable=not progress)

    rcfg = residue_mod.ResidueConfig(forget=cfg.forget, steps=cfg.residue_steps, seed=cfg.seed)
    if cfg.residue:
        people = residue_mod.forget_people(world, cfg.forget)
        # the run's probes learn from the retain people's Full_Set photo (asru-lens residue: all their photos)
        retain_people = residue_mod.person_items(world.rows(cfg.forget)["retain"])
        vanilla_leak = {"attribute": residue_mod.leak(lens, residue_mod.relearn_split(people, rcfg, "attribute")[1])}

    def record(name, r):
        if cfg.residue:                      # what is still known, measured on the same weights (and steering)
            res.residue[name] = residue_mod.quick(lens, world, rcfg, None if name == "vanilla" else vanilla_leak,
                                                  people, retain_people)
            r["metrics"].update(residue_mod.columns(res.residue[name], 30 if 30 in cfg.residue_steps
                                                    else cfg.residue_steps[-1]))
        res.methods[name] = r["metrics"]
        res.answers[name] = r["answers"]
        stages.update(1)
        say(f"{name}: leakage {r['metrics']['leakage']:.2f}, contextual refusal "
            f"{r['metrics']['contextual_refusal']:.2f}, retain cls {r['metrics']['retain_cls_acc']:.2f}")

    # probe + steering sweep (what the steer method uses)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pres = probe.probe(lens, probe_sets(world, lens.protocol, forget=cfg.forget), progress=False)
    layer = pres.selection.layer
    res.extra["probe"] = pres.summary()
    ssets = eval_sets(world, cfg.forget, 24, cfg.seed)
    directions = pres.directions[:, pres.selection.position]
    points = steer.sweep(lens, {k: v for k, v in ssets.items() if k != "test"}, directions, [layer],
                         list(cfg.steer_alphas), progress=False)
    ok = [p for p in points if p["forget_refusal"] >= 0.5] or points
    point = max(ok, key=lambda p: p["retain_exact"])     # the gentlest push that still forgets
    res.extra["steer"] = {k: v for k, v in point.items() if k != "examples"}
    if figures:
        from asru_lens import viz
        viz.save_probe_figures(pres, figures)
        viz.save(viz.fig_tradeoff(points), "run_steer_sweep", figures)
    stages.update(1)

    val = lambda: validation_score(lens, val_forget, val_retain)  # noqa: E731
    tuned = {}                                                     # stage1 / asru weights, made once

    def asru_stage(name):
        if "stage1" not in tuned:
            tuned["stage1"] = tune(lens, vanilla_weights, lambda lr: redirect_stage(
                lens, pres.direction, layer, forget, retain_all, replace(ucfg, redirect=replace(
                    ucfg.redirect, lr=lr)), progress=False), cfg.lr_grid, val, "stage1", progress)
        if name == "asru" and "asru" not in tuned:
            tuned["asru"] = tune(lens, tuned["stage1"][2], lambda lr: reinforce_stage(
                lens, forget, boundary_retain, replace(ucfg, grpo=replace(ucfg.grpo, lr=lr)), reference,
                progress=False), cfg.lr_grid, val, "asru", progress)
        scores, lr, weights = tuned[name]
        res.tuning[name] = {"grid": scores, "lr": lr}
        _restore(lens, weights)

    def rewrite_row():
        """Rewrite the forget facts (its lr on the grid, by the same rule), then ASRU's stage 2 at the learning
        rate the asru row chose, with the rewritten model as its KL reference, then ``rewrite.consolidate``."""
        from asru_lens import rewrite
        asru_stage("asru")                                   # ASRU's tuned learning rates
        forget_qs, retain_qs = rewrite.rewrite_set(world, cfg.forget, lens.protocol)
        grid, lr, weights = tune(lens, vanilla_weights, lambda lr: rewrite.rewrite_facts(
            lens, forget_qs, retain_qs, rewrite.rewrite_config(lens, lr=lr, seed=cfg.seed,
                                                                   steps=cfg.rewrite_steps), progress=False),
            cfg.lr_grid, val, "rewrite", progress)
        res.tuning["rewrite"] = {"grid": grid, "lr": lr}
        _restore(lens, weights)
        rewritten = copy.deepcopy(lens.model).eval()
        if cfg.rewrite_stage1:
            redirect_stage(lens, pres.direction, layer, forget, retain_all, replace(ucfg, redirect=replace(
                ucfg.redirect, lr=tuned["stage1"][1])), progress=False)
        reinforce_stage(lens, forget, boundary_retain, replace(ucfg, grpo=replace(ucfg.grpo, lr=tuned["asru"][1])),
                        rewritten, progress=False)
        del rewritten
        rewrite.consolidate(lens, forget_qs, retain_qs, rewrite.rewrite_config(lens, lr=lr, seed=cfg.seed),
                            progress=False)           # the truth back under the invented answers, at the rewrite's lr

    for name in cfg.methods:
        t = time.time()
        _restore(lens, vanilla_weights)
        if name == "steer":
            spec = steer.Steering(directions[layer], layer, point["alpha"])
            with steer.steering(lens, spec):
                record(name, score())       # the residue too: the attack and probes see the steered model
        elif name in ("stage1", "asru"):
            asru_stage(name)
            record(name, score())
        elif name == "rewrite":
            rewrite_row()
            record(name, score())
        elif name in baselines.METHODS:
            grid, lr, _ = tune(lens, vanilla_weights, lambda lr: baselines.unlearn_baseline(
                lens, forget, retain_all, baselines.baseline_config(lens, name, steps=cfg.baseline_steps, lr=lr,
                                                                   seed=cfg.seed),
                progress=False), cfg.lr_grid, val, name, progress)
            res.tuning[name] = {"grid": grid, "lr": lr}
            record(name, score())
        else:
            record(name, score())
        res.extra.setdefault("seconds", {})[name] = round(time.time() - t, 1)
    _restore(lens, vanilla_weights)
    res.extra["seconds"]["total"] = round(time.time() - t0, 1)
    stages.close()
    return res


def claims(methods: dict) -> list[dict]:
    """The paper's claim in miniature, checked on a results table: ``{"claim", "holds", "measured"}`` per line
    (only the lines whose methods are in the table). "Other methods" are the unlearning methods: vanilla is
    the untouched reference, which the utility lines compare against."""
    if "asru" not in methods:
        return []
    a, out = methods["asru"], []
    # the paper compares ASRU with the baselines, steering and its own stage 1; our rewrite row goes beyond it
    others = {m: v for m, v in methods.items() if m in PAPER_METHODS and m not in ("asru", "vanilla")}
    base = {m: v for m, v in methods.items() if m in baselines.METHODS}
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
            best = max((x for x in m if x in PAPER_METHODS and x not in ("asru", "vanilla")),
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


def write_report(res: RunResult, folder: str = "reports", figures: str = "figures") -> list[Path]:
    """``reports/report.json`` and ``reports/report.md`` (table, figures, example answers), written atomically."""
    from asru_lens import viz
    from asru_lens.atomic import atomic_write_text
    folder = Path(folder)
    info = summary(res)
    paths = [atomic_write_text(folder / "report.json", json.dumps(info, indent=1))]
    fig = viz.fig_methods(info["methods"])
    paths += viz.save(fig, "run_tradeoff", figures)
    rel = lambda p: Path("..") / figures / p  # noqa: E731
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
                  "What each method still knows about the forget people (`asru_lens.residue`): the held-out leak "
                  "after a 30-step relearning attack on three of their attributes, its recovery "
                  "(`(leak_after - leak_unlearned) / (leak_vanilla - leak_unlearned)`), and the best layer's linear "
                  "probe accuracy on their facts.", "",
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
