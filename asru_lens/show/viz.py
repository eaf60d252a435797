"""Plotly figures for the probe (and, later, steering and evaluation).

Each ``fig_*`` function takes plain arrays or a ``ProbeResult`` and returns a
``plotly.graph_objects.Figure``; ``save`` writes it under ``figures/`` as HTML
(always) and PNG (when kaleido finds a Chrome or Chromium): that plumbing, and
``setup_notebook``, live in ``show/render.py``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from asru_lens import methods
from asru_lens.interpret.probe import cosine, cosine_matrix
from asru_lens.measure.residue import columns
from asru_lens.show.render import chromium, save, setup_notebook  # noqa: F401  (viz.save, viz.setup_notebook)

SET_COLOURS = {"forget": "#d62728", "retain": "#2ca02c", "celebrity": "#17becf", "unknown": "#1f77b4",
               "harmful": "#ff7f0e", "harmless": "#9467bd"}
TEXT_ONLY_SETS = ("harmful", "harmless")
TEMPLATE = "plotly_white"


def _layout(fig: go.Figure, title: str, **kw) -> go.Figure:
    fig.update_layout(title=title, template=TEMPLATE, margin=dict(l=60, r=30, t=60, b=50), **kw)
    return fig


def fig_direction_norms(result) -> go.Figure:
    """Norm of the ASRU and harmful directions per layer, one line per post-instruction position."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("ASRU: refusal - forget", "Arditi: harmful - harmless"))
    layers = list(range(result.n_layers))
    for col, dirs in ((1, result.directions), (2, result.harmful_directions)):
        if dirs is None:  # the world or model gave no harmful/harmless contrast
            continue
        norms = dirs.norm(dim=-1).numpy()
        for p, tok in enumerate(result.tokens):
            fig.add_trace(go.Scatter(x=layers, y=norms[:, p], mode="lines+markers", name=f"{p}: {tok!r}",
                                     legendgroup=str(p), showlegend=col == 1,
                                     line=dict(width=3 if p == result.selection.position else 1.5)), 1, col)
    fig.update_xaxes(title="layer (resid_pre)", dtick=1)
    fig.update_yaxes(title="||direction||", col=1)
    return _layout(fig, "Direction norm per layer and position", legend_title="position")


def fig_cosine(result) -> go.Figure:
    """Cosine similarity between layers' ASRU directions, and between ASRU and harmful directions."""
    pos = result.selection.position
    a = result.directions[:, pos]
    within = cosine_matrix(a).numpy()
    h = result.harmful_directions[:, pos] if result.harmful_directions is not None else None
    across = cosine(a[:, None], h[None]).numpy() if h is not None else np.full_like(within, np.nan)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("ASRU layer i vs ASRU layer j",
                                                        "ASRU layer i vs harmful layer j"))
    for col, m in ((1, within), (2, across)):
        fig.add_trace(go.Heatmap(z=m, zmin=-1, zmax=1, colorscale="RdBu", reversescale=True,
                                 text=np.round(m, 2), texttemplate="%{text}", showscale=col == 2), 1, col)
    fig.update_xaxes(title="layer j", dtick=1)
    fig.update_yaxes(title="layer i", dtick=1, autorange="reversed")
    return _layout(fig, f"Cosine similarity of directions at position {pos} ({result.tokens[pos]!r})")


def fig_auroc(result) -> go.Figure:
    """Held-out AUROC of the projection on each layer's direction: unknown faces vs answered forget prompts."""
    layers = list(range(result.n_layers))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=layers, y=result.auroc, mode="lines+markers", name="ASRU direction"))
    fig.add_trace(go.Scatter(x=layers, y=result.auroc_harmful, mode="lines+markers", name="harmful direction",
                             line=dict(dash="dot")))
    fig.add_hline(y=0.95, line=dict(color="grey", dash="dash"), annotation_text="0.95")
    fig.add_vline(x=result.selection.layer, line=dict(color="black", dash="dot"), annotation_text="chosen")
    fig.update_xaxes(title="layer (resid_pre)", dtick=1)
    fig.update_yaxes(title="AUROC (held out)", range=[0, 1.02])
    return _layout(fig, "Separability of refusal vs answered, per layer")


def fig_selection(selection, tokens: list[str]) -> go.Figure:
    """Induce, bypass and KL scores over layer x position; the chosen candidate is circled."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("induce (higher refuses more)",
                                                        "bypass (lower removes refusal)", "KL on retain"))
    ticks = [f"{i}: {t!r}" for i, t in enumerate(tokens)]
    for col, (grid, scale) in enumerate(((selection.induce, "Reds"), (selection.bypass, "Blues_r"),
                                         (selection.kl, "Greys")), start=1):
        fig.add_trace(go.Heatmap(z=grid, x=ticks, y=list(range(grid.shape[0])), colorscale=scale,
                                 text=np.round(grid, 2), texttemplate="%{text}", showscale=False), 1, col)
        fig.add_trace(go.Scatter(x=[ticks[selection.position]], y=[selection.layer], mode="markers",
                                 marker=dict(size=28, symbol="circle-open", color="black", line=dict(width=3)),
                                 showlegend=False), 1, col)
    fig.update_yaxes(dtick=1)
    fig.update_yaxes(title="layer", col=1)
    fig.update_xaxes(tickangle=45)
    return _layout(fig, f"Selection scores; chosen: layer {selection.layer}, position {selection.position}")


def _pca2(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def fig_pca(acts: dict, n_layers: int, chosen_layer: int = 0) -> go.Figure:
    """PCA of activations at one position, one frame per layer (slider). Colour = set, symbol = modality."""
    names = list(acts)
    sizes = [len(acts[k]) for k in names]
    fig = go.Figure()
    for layer in range(n_layers):
        xy = _pca2(np.concatenate([acts[k][:, layer].double().numpy() for k in names]))
        start = 0
        for k, n in zip(names, sizes):
            base = k.split(" (")[0]
            text_only = k.endswith("(text)") or base in TEXT_ONLY_SETS
            fig.add_trace(go.Scatter(x=xy[start:start + n, 0], y=xy[start:start + n, 1], mode="markers",
                                     name=f"{base} ({'text' if text_only else 'image'})",
                                     marker=dict(color=SET_COLOURS.get(base, "black"), size=7, opacity=0.75,
                                                 symbol="x" if text_only else "circle"),
                                     visible=layer == chosen_layer))
            start += n
    per = len(names)
    steps = [dict(method="update", label=str(layer),
                  args=[{"visible": [i // per == layer for i in range(per * n_layers)]},
                        {"title": f"PCA of resid_pre at layer {layer}"}]) for layer in range(n_layers)]
    fig.update_layout(sliders=[dict(active=chosen_layer, currentvalue=dict(prefix="layer "), steps=steps)])
    fig.update_xaxes(title="PC 1")
    fig.update_yaxes(title="PC 2")
    return _layout(fig, f"PCA of resid_pre at layer {chosen_layer}", legend_title="set (modality)")


def fig_modality(result) -> go.Figure:
    """Cosine per layer between the direction from image prompts and the one from text-only prompts."""
    fig = go.Figure()
    cos = result.modality.get("cosine")
    if cos is not None:
        fig.add_trace(go.Scatter(x=list(range(len(cos))), y=cos, mode="lines+markers", name="image vs text"))
    fig.update_xaxes(title="layer (resid_pre)", dtick=1)
    fig.update_yaxes(title="cosine", range=[-1, 1])
    return _layout(fig, "Modality split: image+text vs text-only refusal directions"
                   if cos is not None else "Modality split: no text-only refusals to build a direction from")


def probe_figures(result) -> dict[str, go.Figure]:
    """Every probe figure, by the file name ``save_probe_figures`` gives it."""
    return {"probe_direction_norms": fig_direction_norms(result), "probe_cosine": fig_cosine(result),
            "probe_auroc": fig_auroc(result), "probe_selection": fig_selection(result.selection, result.tokens),
            "probe_pca": fig_pca(result.acts, result.n_layers, result.selection.layer),
            "probe_modality": fig_modality(result)}


def save_probe_figures(result, folder: str | os.PathLike = "figures") -> list[Path]:
    return [p for name, fig in probe_figures(result).items() for p in save(fig, name, folder)]


def fig_tradeoff(points: list[dict]) -> go.Figure:
    """Forget refusal against retain utility (answers that state their fact), one curve per layer, points labelled by alpha."""
    fig = go.Figure()
    base = [p for p in points if p.get("layer") is None]
    for layer in sorted({p["layer"] for p in points if p.get("layer") is not None}):
        pts = sorted((p for p in points if p.get("layer") == layer), key=lambda p: p["alpha"])
        fig.add_trace(go.Scatter(x=[p["retain_utility"] for p in pts], y=[p["forget_refusal"] for p in pts],
                                 mode="lines+markers+text", text=[f"α={p['alpha']:g}" for p in pts],
                                 textposition="top right", name=f"layer {layer}",
                                 customdata=[[p["forget_leak"], p["broken_rate"]] for p in pts],
                                 hovertemplate="retain %{x:.2f}, refusal %{y:.2f}<br>leak %{customdata[0]:.2f}, "
                                               "broken %{customdata[1]:.2f}"))
    for p in base:
        fig.add_trace(go.Scatter(x=[p["retain_utility"]], y=[p["forget_refusal"]], mode="markers+text",
                                 text=["no steering"], textposition="bottom left", name="no steering",
                                 marker=dict(size=12, symbol="star", color="black")))
    fig.update_xaxes(title="retain utility (answers stating their fact)", range=[-0.02, 1.02])
    fig.update_yaxes(title="forget refusal rate", range=[-0.02, 1.02])
    return _layout(fig, "Steering trade-off: forgetting by refusal vs keeping the retain set")


# -- unlearning (notebook 03) ---------------------------------------------------------------------------------------
def fig_stage_projections(acts: dict, direction) -> go.Figure:
    """Box plots of each set's projection on the unit refusal direction, per stage.
    ``acts``: stage -> set -> (n, d) activations (resid_pre at the redirected layer, last prompt token)."""
    unit = (direction / direction.norm()).double()
    fig = go.Figure()
    sets = list(next(iter(acts.values())))
    for name in sets:
        xs, ys = [], []
        for stage, by_set in acts.items():
            p = (by_set[name].double() @ unit).tolist()
            xs += [stage] * len(p)
            ys += p
        fig.add_trace(go.Box(x=xs, y=ys, name=name, marker_color=SET_COLOURS.get(name.split(" ")[0], "grey")))
    fig.update_layout(boxmode="group")
    fig.update_yaxes(title="projection on the refusal direction")
    return _layout(fig, "Where each set sits along the refusal direction, stage by stage", legend_title="set")


def fig_stage_pca(acts: dict) -> go.Figure:
    """PCA of the activations, one basis fitted on the first stage, a slider over stages."""
    stages = list(acts)
    names = list(acts[stages[0]])
    first = np.concatenate([acts[stages[0]][k].double().numpy() for k in names])
    mean = first.mean(0)
    _, _, vt = np.linalg.svd(first - mean, full_matrices=False)
    fig = go.Figure()
    for i, stage in enumerate(stages):
        for k in names:
            xy = (acts[stage][k].double().numpy() - mean) @ vt[:2].T
            fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=k, visible=i == 0,
                                     marker=dict(color=SET_COLOURS.get(k.split(" ")[0], "grey"), size=7,
                                                 opacity=0.75)))
    per = len(names)
    steps = [dict(method="update", label=s, args=[{"visible": [j // per == i for j in range(per * len(stages))]},
                                                  {"title": f"PCA of the redirected layer's input: {s}"}])
             for i, s in enumerate(stages)]
    fig.update_layout(sliders=[dict(active=0, currentvalue=dict(prefix="stage "), steps=steps)])
    fig.update_xaxes(title="PC 1 (fitted on the first stage)")
    fig.update_yaxes(title="PC 2")
    return _layout(fig, f"PCA of the redirected layer's input: {stages[0]}", legend_title="set")


def fig_rewards(log: dict, window: int = 5) -> go.Figure:
    """Stage 2 curves: mean reward overall and per set, forget refusal rate, KL to the reference (moving
    average over ``window`` steps)."""
    smooth = lambda xs: np.convolve(xs, np.ones(window) / window, mode="valid") if len(xs) >= window else xs  # noqa
    fig = make_subplots(rows=1, cols=2, subplot_titles=("reward", "KL to the reference"))
    for key, colour in (("reward", "black"), ("reward_forget", SET_COLOURS["forget"]),
                        ("reward_retain", SET_COLOURS["retain"]), ("refusal_forget", "#9467bd")):
        y = smooth(np.asarray(log[key]))
        fig.add_trace(go.Scatter(y=y, x=np.arange(len(y)) + window, name=key, line=dict(color=colour)), 1, 1)
    y = smooth(np.asarray(log["kl"]))
    fig.add_trace(go.Scatter(y=y, x=np.arange(len(y)) + window, name="kl", line=dict(color="grey")), 1, 2)
    fig.update_xaxes(title="GRPO step")
    return _layout(fig, "Stage 2 (GRPO): rewards on the boundary set's rollouts")


def fig_methods(methods: dict) -> go.Figure:
    """Forget efficacy (1 - forget ROUGE-L) against utility (retain A-D accuracy), marker size = naturalness."""
    fig = go.Figure()
    for name, m in methods.items():
        fig.add_trace(go.Scatter(x=[m["retain_cls_acc"]], y=[1 - m["forget_rougeL"]], mode="markers+text",
                                 text=[name], textposition="top center", name=name,
                                 marker=dict(size=6 + 6 * m["naturalness"], opacity=0.7, color=method_colour(name)),
                                 hovertemplate=f"{name}<br>utility %{{x:.2f}}, efficacy %{{y:.2f}}<br>"
                                               f"naturalness {m['naturalness']:.2f}, leakage {m['leakage']:.2f}"))
    fig.update_xaxes(title="utility: retain A-D accuracy")
    fig.update_yaxes(title="forget efficacy: 1 - forget ROUGE-L")
    return _layout(fig, "Forgetting vs utility (marker size: naturalness)", showlegend=False)


def fig_residue(residue: dict) -> go.Figure:
    """What each method still knows, every attack at once. Left: recovery of the held-out facts against
    relearning steps (question folds). Right, one bar per method and attack: the forget leak after 30 relearning
    steps, asked by name, with a direction ablated, after benign fine-tuning, and the A-D and value probes' best
    layer (a missing bar: the attack did not run, e.g. no value probe without an attribute column).
    ``residue``: method -> ``residue.residue`` dict."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65],
                        subplot_titles=("relearning attack: recovery of held-out facts", "every attack's leak"))
    bars = {"relearn leak (30)": "relearn_leak_30", "by name": "by_name_leak", "direction ablated": "ablation_leak",
            "benign fine-tune (30)": "benign_leak", "A-D probe": "ad_probe_max", "value probe": "probe_acc_max"}
    for name, r in residue.items():
        colour = method_colour(name)
        rel = r["relearn"].get("question") or next(iter(r["relearn"].values()))
        y = rel["recovery"] if any(v is not None for v in rel["recovery"]) else None
        if y is not None:
            fig.add_trace(go.Scatter(x=[0] + rel["steps"], y=[0.0] + [v if v is not None else float("nan") for v in y],
                                     mode="lines+markers", name=name, legendgroup=name, line=dict(color=colour),
                                     showlegend=False), 1, 1)
        col = columns(r)
        fig.add_trace(go.Bar(x=list(bars), y=[col.get(k) for k in bars.values()], name=name, legendgroup=name,
                             marker_color=colour), 1, 2)
    fig.add_hline(y=0.3, line=dict(color="grey", dash="dot"), row=1, col=1)
    fig.add_hline(y=0.25, line=dict(color="grey", dash="dash"), annotation_text="A-D chance", row=1, col=2)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="relearning steps", row=1, col=1)
    fig.update_yaxes(title="recovery (1 = as vanilla)", row=1, col=1)
    fig.update_yaxes(title="share of forget facts / probe accuracy", range=[0, 1.02], row=1, col=2)
    return _layout(fig, "Forgotten or hidden? What each method still knows")


def roc(members, nonmembers) -> tuple[list[float], list[float]]:
    """(false-positive rates, true-positive rates) of calling a member every answer scored at or below each
    threshold (membership scores: lower is likelier a member); the area under it is ``privacy.auc``."""
    m, n = np.asarray(members, float), np.asarray(nonmembers, float)
    cuts = np.unique(np.concatenate([m, n]))
    return [0.0] + [float((n <= c).mean()) for c in cuts], [0.0] + [float((m <= c).mean()) for c in cuts]


def fig_privacy(reads: dict, attack: str = "min_k++") -> go.Figure:
    """How close to never having known? Left: each model's forget truth ratios (P(wrong) / P(right), log scale)
    over the oracle's, TOFU's picture (a model that never knew sits near 1, one that knows far below). Right: the
    ROC curve of telling the forget people's answers from the holdout people's by ``attack`` (the diagonal: no
    better than chance, as for the oracle). ``reads``: name -> ``privacy.read``."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("forget truth ratios (log10)", f"membership inference ({attack})"))
    for name, r in reads.items():
        colour = method_colour(name)
        tr = np.log10(np.clip(np.asarray(r["truth_ratios"], float), 1e-6, 1e6))
        fig.add_trace(go.Histogram(x=tr, name=name, legendgroup=name, marker_color=colour, opacity=0.45 if name !=
                                   "oracle" else 0.8, nbinsx=30, histnorm="probability"), 1, 1)
        if "scores" in r:
            fpr, tpr = roc(r["scores"]["members"][attack], r["scores"]["nonmembers"][attack])
            fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=name, legendgroup=name, showlegend=False,
                                     line=dict(color=colour, width=3 if name == "oracle" else 1.5)), 1, 2)
    fig.add_vline(x=0, line=dict(color="grey", dash="dot"), row=1, col=1)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="grey", dash="dash"),
                             showlegend=False, hoverinfo="skip"), 1, 2)
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title="log10 truth ratio (0: right and wrong alike)", row=1, col=1)
    fig.update_yaxes(title="share of forget questions", row=1, col=1)
    fig.update_xaxes(title="false-positive rate (holdout called member)", range=[0, 1], row=1, col=2)
    fig.update_yaxes(title="true-positive rate (forget answer called member)", range=[0, 1.02], row=1, col=2)
    return _layout(fig, "How close to never having known? Each model against the oracle")


def method_colour(name: str) -> str:
    """A method's colour in every figure: the registry's (``asru_lens.methods.colour``)."""
    return methods.colour(name)
