"""The main job's result and how it is read: ``RunResult``, the paper's claim checked on its table (``claims``),
what ``asru-lens run --json`` prints (``summary``) and the markdown report with its figures (``write_report``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from asru_lens import methods as registry
from asru_lens.core.atomic import atomic_write_text
from asru_lens.measure.privacy import COLUMNS as PRIVACY
from asru_lens.measure.residue import COLUMNS as RESIDUE
from asru_lens.show import viz

__all__ = ["HEADLINE", "NAME_RECOGNITION", "RunResult", "cell", "claims", "headline", "summary", "write_report"]

PROTOCOL_TEXT = {"mllmu": "the paper's: one-shot A-D answered with one letter, the authors' generation and cloze "
                          "instructions", "organism": "the organism's trained prompt format"}
HEADLINE = ("forget_cls_acc", "forget_rougeL", "forget_cloze_acc", "test_cls_acc", "retain_cls_acc",
            "retain_rougeL", "celebrity_cls_acc", "contextual_refusal", "leakage", "naturalness")
# CLEAR's name recognition by likelihood (``measure.evaluate.name_recognition``): columns only where measured
NAME_RECOGNITION = ("forget_name_acc", "test_name_acc", "retain_name_acc", "celebrity_name_acc")


def headline(rows) -> tuple:
    """The table's columns for these metric rows: ``HEADLINE``, then the name-recognition columns where the world
    scores them (CLEAR)."""
    rows = list(rows)
    return HEADLINE + tuple(k for k in NAME_RECOGNITION if any(r.get(k) is not None for r in rows))


def choice_metric(methods: dict) -> str:
    """Which A-D accuracy the claims read: ``name_acc`` where the world scores name recognition (CLEAR, where the
    names are what a model knows), else MLLMU's ``cls_acc``."""
    return "name_acc" if any(r.get("forget_name_acc") is not None for r in methods.values()) else "cls_acc"


def cell(v, fmt: str = ".3f") -> str:
    """A table cell: the number, or "n/a" where the metric was not measured (the world has no such questions, or
    the run had no oracle or holdout; the report's notes say which), never a zero."""
    return "n/a" if v is None else format(v, fmt)


def md_table(methods: dict, columns: tuple, header: tuple | None = None, fmt: str = ".3f") -> list[str]:
    """A markdown table, one row per method: ``columns`` of its metrics (``cell``), under ``header``."""
    header = header or columns
    return (["| method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"] +
            [f"| {m} | " + " | ".join(cell(mets.get(k), fmt) for k in columns) + " |" for m, mets in methods.items()])


@dataclass
class RunResult:
    """What ``run.run`` returns: one row of metrics per method, and what the report shows beside the table."""
    methods: dict = field(default_factory=dict)      # name -> metrics
    residue: dict = field(default_factory=dict)      # name -> residue (relearning attack, probes)
    answers: dict = field(default_factory=dict)      # name -> set -> list of judged answers
    tuning: dict = field(default_factory=dict)       # method -> {"grid": {lr: validation score}, "lr": best}
    privacy: dict = field(default_factory=dict)      # name -> its privacy read (measure.privacy.read)
    extra: dict = field(default_factory=dict)        # probe summary, steering point, timings


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
        ad = choice_metric(methods)
        for k in (f"retain_{ad}", f"celebrity_{ad}"):
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
            "privacy": {m: {k: p.get(k) for k in ("mia_auc", "mia_auc_interval")} for m, p in res.privacy.items()},
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
            key = "retain" if "retain_" in c["claim"] else "celebrity"
            wrong = [a for a in res.answers.get("asru", {}).get(key, []) if a.get("contextual_refusal", 0) > 0]
            sample = "; ".join(f"\"{a['question']}\" -> \"{a['answer']}\"" for a in wrong[:3])
            lines.append(f"* **{key} A-D accuracy**: {c['measured']}. The generation answers asru gets wrong on "
                         f"this set ({len(wrong)} of {len(res.answers.get('asru', {}).get(key, []))}): {sample}.")
    return lines


def write_report(res: RunResult, folder: str | os.PathLike, figures: str | os.PathLike | None = None) -> list[Path]:
    """``folder/report.json`` and ``folder/report.md`` (table, figures, example answers), written atomically; the
    figures go to ``figures`` (default ``folder/figures``), linked from the report by a relative path."""
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
    lines += md_table(info["methods"], headline(info["methods"].values()))
    if info["claims"]:
        lines += ["", "## The paper's claim, in miniature", "", "| claim | holds | measured |", "|---|---|---|"]
        lines += [f"| {c['claim']} | {'yes' if c['holds'] else '**no**'} | {c['measured']} |" for c in info["claims"]]
        why = _why(info, res)
        m = info["methods"]
        ad = f"forget_{choice_metric(m)}"
        if "vanilla" in m and m["asru"][ad] >= m["vanilla"][ad] - 0.05:
            lines += ["", f"Outside the claim: asru refuses to *say* the forget facts, but still picks them in A-D "
                      f"questions ({ad} {m['asru'][ad]:.3f}, vanilla {m['vanilla'][ad]:.3f}). Refusing is not "
                      f"removing: the knowledge is still in the weights, and the multiple-choice probe finds it."]
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
                  "0.25) and of the value probe.", ""]
        lines += md_table(info["methods"], RESIDUE + ("probe_acc_chance", "forget_cls_acc"),
                          RESIDUE + ("probe chance", "forget_cls_acc"))
        lines += ["", f"![residue]({rel('run_residue.png')})"]
    if res.privacy:
        paths += viz.save(viz.fig_privacy(res.privacy), "run_privacy", figures)
        lines += ["", "## How close to never having known?", "",
                  "Each method against the oracle, the model trained without the forget people "
                  "(`asru_lens.measure.privacy`): forget quality, the KS test's p-value between its forget truth "
                  "ratios and the oracle's (TOFU: 1 = indistinguishable); truth ratio, mean(min(r, 1/r)) of P(wrong) "
                  "/ P(right) on the forget A-D questions (1: right and wrong alike); mia_auc, Min-K%++'s AUC of "
                  "telling the forget answers from people never trained on (0.5: no better than chance); privleak, "
                  "(AUC - AUC_oracle) / AUC_oracle x 100 (MUSE; 0: as the oracle).", ""]
        lines += md_table(info["methods"], PRIVACY, fmt=".3g")
        lines += ["", f"![privacy]({rel('run_privacy.png')})"]
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
