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
# # 01 · Where does the model refuse? Refusal directions, layer by layer
#
# A **refusal direction** is a single vector in the residual stream whose presence makes a model refuse.
# Arditi et al. (2024) found one in chat models with a *difference in means*: average the residual stream
# over prompts the model refuses, subtract the average over prompts it answers, and the difference, added
# back, induces refusal; projected out, it removes it.
#
# **ASRU** (arXiv 2605.15687) builds the same kind of direction for *unlearning*: the refusal side is
# privacy questions about **faces the model has never seen** (it refuses those by itself, in context:
# *"I don't recognize this person, so I can't tell you where they were born"*), and the answered side is the
# **forget set**, questions about the people we want it to forget. The direction therefore points from
# "I know this person" towards "I don't know this person", which is exactly the behaviour we want on the
# forget set, in the model's own words. The classic harmful-vs-harmless direction is kept for comparison.
#
# This notebook finds these directions at every decoder layer of the model organism (a tiny but real
# `Qwen3VLForConditionalGeneration`), picks one, and checks how well it separates held-out prompts.

# %% [markdown]
# **Parameters.** `MODEL = None` is the shipped organism; a local folder or a Hub id such as `"Qwen/Qwen3-VL-2B-Instruct"` loads a real Qwen3-VL. `DATA` is an MLLMU-Bench folder (`None`: the organism's world); with a plain MLLMU-Bench download, `UNSEEN_FACES` is a folder of faces the model never saw (ASRU's refusal set; `asru-lens organism export` writes one), or `REFUSAL_PROMPTS` a JSONL file of your own prompts.

# %% tags=["parameters"]
import os
MODEL = None      # or "Qwen/Qwen3-VL-2B-Instruct", or a local folder
DATA = None       # None: the organism's world; or an MLLMU-Bench folder (flat or Hub layout)
UNSEEN_FACES = None     # with a plain MLLMU-Bench folder: faces the model never saw (DIR/*.png or
                        # DigiFace-style DIR/<id>/0.png), for ASRU's refusal set
REFUSAL_PROMPTS = None  # ... or your own refusal prompts, JSONL: {"question": ..., "image": ...} per line
FIGURES = os.environ.get("ASRU_LENS_FIGURES", "../figures")  # where figures are saved (HTML; PNG with Chromium)
FORGET = 10       # forget split: 5, 10 or 15 percent
N = 96            # prompts per set

# %% tags=["nbval-ignore-output"]
import warnings

import asru_lens
from asru_lens import probe, viz
from asru_lens.sets import probe_sets

viz.setup_notebook()                      # figures as plotly JSON plus a static PNG, progress bars off
world = asru_lens.open_world(DATA, unseen_faces=UNSEEN_FACES, refusal_prompts=REFUSAL_PROMPTS)
lens = asru_lens.load(MODEL)
sets = probe_sets(world, lens.protocol, forget=FORGET, n=N)

# %%
print(lens.name, "|", lens.n_layers, "decoder layers | post-instruction tokens:", lens.post_instruction_tokens())
{name: (len(s.direction), len(s.val), len(s.test)) for name, s in sets.items()}

# %% [markdown]
# ## 1. Let the model decide who is in which set
#
# ASRU keeps a refusal prompt only if the model really refuses it, and a forget prompt only if the model
# really answers it. Here is what the model says to a few prompts of each kind:

# %%
sample = sets["refusal"].direction[:3] + sets["forget"].direction[:3]
for q, a in zip(sample, probe.answers(lens, sample)):
    print(f"{q.question!r:45} -> {a!r}")

# %% [markdown]
# ## 2-5. Directions, selection and separability
#
# `probe.probe` runs the whole row of steps (each one a small function in `asru_lens/probe.py`):
#
# 1. `keep_refusals` / `keep_answered` on the model's greedy replies;
# 2. `mean_activations`: the residual stream **entering** each decoder layer (`resid_pre`, TransformerLens's
#    `blocks.{i}.hook_in`) at the five post-instruction positions, averaged in float64. Layer inputs, not
#    outputs, because Qwen3-VL's DeepStack adds visual features *between* the first layers;
# 3. `diff_in_means`: one candidate direction per (layer, position);
# 4. `select_direction`: for each candidate, the **induce** score (refusal log-odds on forget prompts with
#    the direction added), the **bypass** score (on refusal prompts with it ablated everywhere) and the **KL**
#    on retain prompts; layers at or beyond 80% of the depth are dropped, and the lowest bypass wins;
# 5. `auroc_by_layer`: on **held-out** prompts (unseen faces not used above, and the forget people in new
#    photos with paraphrased questions), how well the projection on the direction separates refusal from
#    answer.

# %%
with warnings.catch_warnings():   # a selection fallback is reported in the summary below instead
    warnings.simplefilter("ignore")
    result = probe.probe(lens, sets, progress=False)
summary = result.summary()
{k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()
 if k in ("layer", "position", "token", "n_layers", "auroc_chosen", "induce_refusal", "induce_score",
          "bypass_score", "kl", "fallback")}

# %% [markdown]
# Added at its layer with strength 1, the chosen direction turns some held-out forget questions into
# refusals and leaves others answered:

# %%
for question, answer in result.induce_examples:
    print(f"{question!r:50} -> {answer!r}")

# %% [markdown]
# ## What the figures show
#
# **Direction norm per layer.** How far apart the two means are. It grows with depth as the model
# works out whether it knows the person; at layer 0 the post-instruction tokens are the same embedding in
# every prompt, so the difference is exactly zero there.

# %% tags=["nbval-ignore-output"]
viz.fig_direction_norms(result)

# %% [markdown]
# **Selection scores** over layer × position. Left: adding the direction raises the refusal log-odds on
# forget prompts (induce). Middle: ablating it lowers them on unseen faces (bypass). Right: the KL cost of the
# ablation on retain prompts. The circle marks the chosen candidate.

# %% tags=["nbval-ignore-output"]
viz.fig_selection(result.selection, result.tokens)

# %% [markdown]
# **Held-out AUROC per layer.** 1.0 means the projection alone tells every refused unseen face from
# every answered forget question.

# %%
[None if a is None else round(a, 3) for a in summary["auroc"]]

# %% tags=["nbval-ignore-output"]
viz.fig_auroc(result)

# %% [markdown]
# **Cosine similarity.** Left: how the ASRU direction turns from layer to layer. Right: ASRU's
# privacy-refusal direction against Arditi's harmful-request direction. They are built from disjoint prompts
# (faces versus text requests); how much they share is a question nobody has published on.

# %% tags=["nbval-ignore-output"]
viz.fig_cosine(result)

# %% [markdown]
# **Modality split.** The same contrast asked by name, without an image (names that belong to nobody
# versus the forget people's names): is refusal about an unknown *face* the same direction as refusal about an
# unknown *name*?

# %%
{k: v for k, v in result.modality.items() if k.startswith("n_")}, \
    None if summary["modality_cosine"] is None else [round(c, 2) for c in summary["modality_cosine"]]

# %% tags=["nbval-ignore-output"]
viz.fig_modality(result)

# %% [markdown]
# **Activation geometry.** PCA of `resid_pre` at the chosen position, one frame per layer (use the
# slider). Colour is the set, the symbol the modality (circle: image + text, cross: text only).

# %% tags=["nbval-ignore-output"]
viz.fig_pca(result.acts, result.n_layers, result.selection.layer)

# %% [markdown]
# Every figure is also saved under `figures/` (HTML, and PNG where a Chromium is installed):

# %% tags=["nbval-ignore-output"]
[p.name for p in viz.save_probe_figures(result, FIGURES)]

# %% [markdown]
# ## What to conclude on the organism
#
# * **Where.** The refusal decision is readable from layer 2 on: at layer 1 the projection separates nothing
#   (AUROC about 0.33, worse than chance), at layer 2, the input of the third of four layers, held-out unseen faces
#   and answered forget questions are separated with an AUROC of about 0.99. Selection picks layer 2 (layer 3 is
#   at or beyond 80% of the depth), at the `assistant` token of the chat template.
# * **Causal, both ways.** Ablating the direction everywhere takes the refusal log-odds on unseen faces from about
#   +1.4 to about -4.9 (the model stops refusing strangers), at a KL cost of about 0.1 on retain prompts. Adding it
#   at strength 1 raises the log-odds on forget prompts from about -8 to about +0.9 and turns seven in ten
#   held-out forget questions into refusals, so the chosen candidate passes all of Arditi et al.'s filters (no
#   `fallback`). Pushing harder breaks the text: notebook 02 shows this trade-off.
# * **Privacy versus harm.** The harmful-request direction, built from text-only requests, also separates the
#   held-out face prompts at layer 2 (AUROC about 0.97): in this organism refusing a stranger and refusing a
#   harmful request share much of one direction.
# * **Modality.** Asked by name instead of by photo, the organism seldom refuses (it invents facts about names
#   that belong to nobody): of 48 such questions it refused 8, so the text-only direction rests on few prompts
#   and its cosine with the image direction (about 0.15 at layer 2) is anecdotal. A real Qwen3-VL, which does
#   refuse by name, gives this comparison its meaning.
# * Next: `asru-lens probe --json` prints the same numbers; notebook 02 steers with this direction.
