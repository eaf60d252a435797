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
# # 06 · How close to never having known?
#
# Every unlearning method aims at one target: the model that was never trained on the forget people. TOFU, MUSE
# and CLEAR measure against such a model, and so can we, exactly: the organism is trained by our own code, so we
# trained it again from its seed *without* the forget_10 people (`asru-lens organism build --exclude forget_10`).
# That **oracle** ships beside the organism; `asru_lens.load("oracle")` opens it. For a real model the field's
# recipe is the vanilla fine-tune on the retain split only (`asru-lens finetune --split retain_90`).
#
# Against it, `asru_lens.measure.privacy` reads, with TOFU's, open-unlearning's and MUSE's definitions:
#
# * the **truth ratio** of each forget A-D question, P(wrong) / P(right) (each the length-normalised likelihood of
#   a whole answer; the three distractors are the wrong ones), summarised as `mean(min(r, 1/r))`;
# * **forget quality**, the KS test's p-value between a model's forget truth ratios and the oracle's;
# * **membership inference** (LOSS, ZLib, Min-K%, Min-K%++): can the forget people's answers be told from those of
#   *holdout* people nobody trained on? `mia_auc` is Min-K%++'s AUC, 0.5 when they cannot;
# * **PrivLeak** = (AUC - AUC_oracle) / AUC_oracle x 100: 0 for a model that gives away no more than the oracle.

# %% [markdown]
# **Parameters.** `ORACLE`: the model trained without the forget set (None: the one the model folder names; the
# organism's ships with it). `DATA` and `HOLDOUT`: a world and a folder of people the model never trained on (the
# organism's world brings its own holdout). `GA_STEPS`: a gradient-ascent baseline, trained here in seconds, as a
# third model to place between the two.

# %% tags=["parameters"]
import os
MODEL = None      # or a local Qwen3-VL folder / Hub id
ORACLE = None     # None: the oracle the model folder names (the organism's: the shipped "oracle")
DATA = None       # None: the organism's world; or an MLLMU-Bench folder
HOLDOUT = None    # None: the world's own holdout people; or an MLLMU folder of people never trained on
FIGURES = os.environ.get("ASRU_LENS_FIGURES", "../figures")
FORGET = 10
GA_STEPS = 20

# %%
import asru_lens
from asru_lens.measure import privacy
from asru_lens.show import viz
viz.setup_notebook()

lens = asru_lens.load(MODEL)
world = asru_lens.open_world(DATA, holdout=HOLDOUT)
oracle = asru_lens.load(ORACLE or lens.oracle)
print(f"model: {lens.name}; oracle: {oracle.name}; {len(world.holdout_items())} holdout answers")

# %% [markdown]
# ## The oracle is what it should be
#
# It never saw the forget people: asked about one from a photo, it refuses, as it refuses any stranger, and on
# their A-D questions it is near chance. On everyone else it answers as the organism does.

# %%
from asru_lens.measure import evaluate

table = {name: evaluate.evaluate(m, world, FORGET, n=48, sets=("forget", "retain", "celebrity"),
                                 progress=False)["metrics"] for name, m in (("vanilla", lens), ("oracle", oracle))}
{name: {k: round(t[k], 3) for k in ("forget_cls_acc", "retain_cls_acc", "celebrity_cls_acc")} for name, t in table.items()}

# %% [markdown]
# ## Each model's read against the oracle's
#
# A third model to place between them: gradient ascent on the forget answers, the field's first baseline.

# %%
from asru_lens.methods import Context, fit
from asru_lens.methods.budget import RunConfig

ctx = Context(lens, world, RunConfig.small(baseline_steps=GA_STEPS, forget=FORGET))
vanilla_weights = ctx.vanilla_weights
reads = {"vanilla": privacy.read(lens, world, FORGET), "oracle": privacy.read(oracle, world, FORGET)}
fit(ctx, "GA")
reads["GA"] = privacy.read(lens, world, FORGET)
lens.model.load_state_dict(vanilla_weights)
{name: {k: (round(v, 4) if v is not None else None) for k, v in privacy.columns(r, reads["oracle"]).items()}
 for name, r in reads.items()}

# %% tags=["nbval-ignore-output"]
fig = viz.fig_privacy(reads)
viz.save(fig, "privacy", FIGURES)
fig

# %% [markdown]
# **Reading it.** Vanilla's truth ratios sit far left of 1 (it is sure of the right option) and its ROC curve
# hugs the top-left corner: its forget answers are told from strangers' at once. The oracle's ratios gather near
# 1 and its curve lies on the diagonal: the forget people are strangers to it. Forget quality asks whether a
# model's truth ratios could be the oracle's; a method that only learns to refuse leaves them where vanilla's
# were. `asru-lens run` adds the four columns and an `oracle` row to the main job, for every method
# (docs/oracle.md has the measured table).
