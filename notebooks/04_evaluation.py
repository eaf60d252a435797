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
# # 04 · Evaluation: ASRU against the standard unlearning methods
#
# Did ASRU forget better than the usual methods, without hurting utility, and with better answers? This notebook
# runs the main job (`asru_lens.run`, what `asru-lens run` does) on a small budget and reads the result:
#
# * **methods**: the paper's comparison, from the method registry (`asru_lens.methods`, `register(paper=True)`):
#   the vanilla model; gradient ascent (GA), gradient difference (GD), KL minimisation (KL), NPO and "I don't
#   know" fine-tuning (IDK), each on the decoder layers with the same forget-step budget; MMUnlearner (gradient
#   ascent through a Fisher saliency mask, the paper's multimodal baseline); and three points of ASRU: steering
#   only, stage 1 only, and the full pipeline. Every trained method's learning rate is picked from the same grid
#   by the same validation rule (ASRU's stage by stage: stage 1's, then stage 2's); no judge or metric is tuned
#   toward any method;
# * **metrics** (MLLMU-Bench style, `asru_lens.evaluate`): A-D accuracy, ROUGE/BLEU, cloze accuracy on the
#   forget, test (new photos), retain and celebrity sets, and three generation-quality rubrics from a local,
#   rule-based judge (`asru_lens.judge`).

# %% tags=["parameters"]
MODEL = None      # or a local Qwen3-VL folder / Hub id
DATA = None       # None: the organism's world; or an MLLMU-Bench folder (flat or Hub layout)
UNSEEN_FACES = None     # with a plain MLLMU-Bench folder: faces the model never saw (DIR/*.png or
                        # DigiFace-style DIR/<id>/0.png), for ASRU's refusal set
REFUSAL_PROMPTS = None  # ... or your own refusal prompts, JSONL: {"question": ..., "image": ...} per line
FORGET = 10
METHODS = None    # None: the paper's comparison (methods.names(paper=True)); e.g. ("vanilla", "asru") for a look
RESIDUE = False   # True: also the relearning attack and probes per method (notebook 05 tells that story,
                  # with the `rewrite` row; `asru-lens run` measures both)

# %% tags=["nbval-ignore-output"]
import pandas as pd
import torch

import asru_lens
from asru_lens import methods, run, viz

viz.setup_notebook()
torch.manual_seed(0)
world = asru_lens.open_world(DATA, unseen_faces=UNSEEN_FACES, refusal_prompts=REFUSAL_PROMPTS)
lens = asru_lens.load(MODEL)
config = run.RunConfig.small(forget=FORGET, methods=METHODS or methods.names(paper=True), residue=RESIDUE)
result = run.run(lens, world, config, figures=None)

# %% [markdown]
# ## The table
#
# Forget-set columns should go *down* for a method that forgets (accuracy, ROUGE, cloze), retain and celebrity
# columns should stay near vanilla. The three rubrics are on the forget set's generation answers:
# `contextual_refusal` (0-5, 5 = a refusal that names what was asked, no leak), `leakage` (0-5, 5 = nothing leaked)
# and `naturalness` (1-5).

# %% tags=["nbval-ignore-output"]
table = pd.DataFrame(run.summary(result)["methods"]).T[list(run.HEADLINE)]
table.round(2)

# %% [markdown]
# The vanilla row comes from greedy decoding of the untouched organism, so it is the same on every machine; this
# notebook's CI run checks it (the trained methods can move in the last digit between CPUs).

# %%
table.loc["vanilla"].round(3)

# %% tags=["nbval-ignore-output"]
viz.fig_methods(run.summary(result)["methods"])

# %% [markdown]
# ## Learning rates and the paper's claim
#
# The validation score of every grid point (`(1 - forget leak + retain utility) / 2`, each the share of answers
# that state their fact, by its key words), and the paper's claim checked line by line on this table (`run.claims`). On a small budget
# these move with the budget; `asru-lens run` writes the same table for the full budget into
# `reports/report.md`, with what the run shows where a claim does not hold.

# %% tags=["nbval-ignore-output"]
pd.DataFrame({m: {**{f"lr {k:g}": v for k, v in t["grid"].items()}, "chosen": t["lr"]}
              for m, t in result.tuning.items()}).T

# %% tags=["nbval-ignore-output"]
pd.DataFrame(run.summary(result)["claims"])

# %% [markdown]
# Which claim lines hold on this small budget (what this notebook's CI run compares):

# %%
{c["claim"]: c["holds"] for c in run.summary(result)["claims"]}

# %% [markdown]
# For comparison, the full budget (`asru-lens run`: 40 forget steps per baseline, the five-point grid
# 3e-5 ... 3e-3, 80 stage 2 steps per grid point, up to 240 questions per set; README, "Quickstart") measured:
#
# | method | forget cls | forget ROUGE-L | forget cloze | test cls | retain cls | retain ROUGE-L | celebrity cls | contextual refusal (0-5) | leakage (0-5, 5 = none) | naturalness (1-5) |
# |---|---|---|---|---|---|---|---|---|---|---|
# | vanilla | 0.912 | 1.000 | 0.500 | 0.700 | 0.963 | 0.989 | 0.979 | 0.00 | 0.00 | 5.00 |
# | GA | 0.875 | 0.494 | 0.500 | 0.675 | 0.954 | 0.929 | 0.979 | 2.02 | 2.74 | 5.00 |
# | GD | 0.762 | 0.324 | 0.600 | 0.550 | 0.933 | 0.881 | 0.971 | 2.71 | 3.64 | 4.99 |
# | KL | 0.762 | 0.300 | 0.600 | 0.550 | 0.942 | 0.875 | 0.971 | 2.83 | 3.70 | 5.00 |
# | NPO | 0.875 | 0.535 | 0.500 | 0.662 | 0.954 | 0.942 | 0.979 | 1.89 | 2.71 | 4.97 |
# | IDK | 0.900 | 0.013 | 0.467 | 0.662 | 0.942 | 0.990 | 0.975 | 2.96 | 4.94 | 4.03 |
# | MMUnlearner | 0.750 | 0.581 | 0.467 | 0.575 | 0.917 | 0.930 | 0.946 | 1.71 | 2.79 | 4.99 |
# | steer | 0.800 | 0.297 | 0.433 | 0.537 | 0.821 | 0.264 | 0.871 | 2.81 | 3.75 | 5.00 |
# | stage1 | 0.925 | 0.717 | 0.467 | 0.688 | 0.963 | 0.974 | 0.971 | 1.05 | 1.50 | 5.00 |
# | **asru** | 0.912 | 0.062 | 0.533 | 0.650 | 0.967 | 0.993 | 0.967 | **3.61** | **5.00** | 5.00 |
#
# There every claim line holds: ASRU has the best contextual refusal (3.61, next IDK 2.96), leaks nothing,
# writes answers as natural as any method's (5.00, a tie with several), and keeps retain and celebrity accuracy
# within 0.4 and 1.2 points of vanilla. MMUnlearner, the paper's multimodal baseline, lowers forget A-D the
# most of the baselines (0.750) but answers rather than refuses (contextual refusal 1.71). Its forget A-D accuracy does not move: it refuses to *say* the facts,
# but the multiple-choice probe still finds them.

# %% [markdown]
# ## The same questions, every method

# %% tags=["nbval-ignore-output"]
pd.set_option("display.max_colwidth", 80)
pd.DataFrame({m: {f"{s} {i}": result.answers[m][s][i]["answer"] for s in ("forget", "retain") for i in range(2)}
              for m in result.answers}).T

# %% [markdown]
# ## What the rubric scores mean
#
# The judge is a rule, not a model, so every score can be traced back to the text (see `asru_lens/judge.py`):
# a leaking answer scores contextual refusal 0 and leakage 0; a generic "Sorry, I can't help" scores 3 and 5;
# a refusal that names what was asked ("I don't recognize this person, so I can't tell you where this person was
# born.") scores 5 and 5; text that repeats itself or glues words together loses naturalness points. To use an
# LLM judge instead, pass `judge=asru_lens.judge.make_judge("openai:gpt-4o-mini")` to `run.run` (as the authors; key from `OPENAI_API_KEY`, scores cached on disk).
