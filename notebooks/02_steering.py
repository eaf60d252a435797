# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Steering: forgetting at inference time, and what it costs
#
# Notebook 01 found a refusal direction `r` at layer 2 of the organism: `mean(unseen faces) - mean(forget set)`
# in the residual stream entering that layer. Two interventions use it without touching a weight:
#
# * **activation addition**: `resid_pre[layer] += alpha * r` at every position, so a question about a known
#   person looks, to the layers above, like a question about a stranger;
# * **directional ablation**: project `r` out of the residual stream at every layer, so the model can no longer
#   represent "I don't know this person".
#
# This notebook measures what addition does to the forget set (refusal, leaks) and to everything that should
# not move (retain and celebrity answers, perception, the fluency of the text).

# %% tags=["parameters"]
import os
MODEL = None      # or "Qwen/Qwen3-VL-2B-Instruct", or a local folder
DATA = None       # None: the organism's world; or an MLLMU-Bench folder (flat or Hub layout)
UNSEEN_FACES = None     # with a plain MLLMU-Bench folder: faces the model never saw (DIR/*.png or
                        # DigiFace-style DIR/<id>/0.png), for ASRU's refusal set
REFUSAL_PROMPTS = None  # ... or your own refusal prompts, JSONL: {"question": ..., "image": ...} per line
FIGURES = os.environ.get("ASRU_LENS_FIGURES", "../figures")  # where figures are saved (HTML; PNG with Chromium)
FORGET = 10
N = 48            # questions per measured set

# %% tags=["nbval-ignore-output"]
import warnings

import asru_lens
from asru_lens import facts, probe, steer, viz
from asru_lens.sets import probe_sets, steer_sets
from asru_lens.widgets import SteeringWidget

viz.setup_notebook()
lens = asru_lens.load(MODEL)
world = asru_lens.open_world(DATA, unseen_faces=UNSEEN_FACES, refusal_prompts=REFUSAL_PROMPTS)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    result = probe.probe(lens, probe_sets(world, lens.protocol, forget=FORGET), progress=False)
directions = result.directions[:, result.selection.position]     # one direction per layer
sets = steer_sets(world, forget=FORGET, n=N)
known = facts.of_world(world, FORGET)      # what states a fact: the ground truth or half its key words

# %% [markdown]
# ## One point: the probe's layer, strength 1

# %%
point = steer.measure(lens, sets, steer.Steering(directions[2], layer=2, alpha=1.0), facts=known)
{k: v if v is None else round(v, 2) for k, v in point.items() if k != "examples"}

# %%
point["examples"]

# %% [markdown]
# ## The sweep: every layer, several strengths
#
# Each point is one `steer.Steering(direction, layer, alpha)`; `steer.sweep` measures them all. The star is the
# unsteered model.

# %%
points = [{"layer": None, "alpha": 0.0, **steer.measure(lens, sets, None, facts=known)}]
points += steer.sweep(lens, sets, directions, layers=[1, 2, 3], alphas=[0.5, 1, 1.5, 2, 3], progress=False,
                      facts=known)
[(p["layer"], p["alpha"], round(p["forget_refusal"], 2), round(p["retain_utility"], 2), round(p["broken_rate"], 2))
 for p in points]

# %% tags=["nbval-ignore-output"]
viz.fig_tradeoff(points)

# %% tags=["nbval-ignore-output"]
[p.name for p in viz.save(viz.fig_tradeoff(points), "steer_sweep", FIGURES)]

# %% [markdown]
# **Reading the curves.** At layer 1 almost nothing happens: the refusal decision is not there yet. At layers 2 and 3
# the forget refusal climbs with alpha, but the retain answers fall with it, almost one for one: the direction
# separates *known* from *unknown*, not *forget* from *retain*, so pushing every prompt along it makes the model
# refuse everyone. Push harder and the text breaks: answers glue a refusal onto a fact ("broken" counts repeated
# phrases and glued words), which is exactly the generation-quality problem ASRU sets out to fix.
#
# ## Try it
#
# Pick a sample, move the slider, switch the mode. (Widgets need a live kernel to respond; the notebook keeps the
# panel's saved state, and the picture below shows it to readers without one.)

# %% tags=["nbval-ignore-output"]
panel = SteeringWidget(lens, sets["forget"][:12] + sets["retain"][:12], directions, layer=2, alpha=1.0)
panel.widget

# %% [markdown]
# ![The steering panel in JupyterLab (static image for readers without a kernel)](../figures/widget.png)
#
# *Without a kernel (GitHub, nbviewer, the HTML gallery) the live panel above cannot be drawn: this is what it
# looks like in JupyterLab.*

# %% [markdown]
# **Conditional steering** adds the direction only to prompts that a second direction, forget minus
# retain, flags as forget queries; the rest are left bit-identical. (Here the detector is built from the same
# questions it is measured on, so this is its best case.)

# %%
spec = steer.Steering(directions[2], layer=2, alpha=1.5, mode="conditional",
                      **steer.forget_detector(lens, sets["forget"], sets["retain"], layer=2))
conditional = steer.measure(lens, sets, spec, facts=known)
{k: v if v is None else round(v, 2) for k, v in conditional.items() if k != "examples"}

# %% [markdown]
# ## The lesson
#
# Inference-time steering alone **trades utility for forgetting**: on this organism no strength gives high forget
# refusal and a high retain score at once. Conditional steering narrows the gap (at alpha 1.5 it keeps 0.71 of
# the retain set where plain addition keeps none) but leaks more, costs most of the celebrities, breaks a quarter
# of its answers, and its detector is one more thing to get right at every call. This is
# why ASRU goes on to *redirect* (distil the push into one layer's weights, for forget prompts only) and to
# *reinforce* (a GRPO loop that rewards refusing the forget set and answering the retain set): notebook 03.
