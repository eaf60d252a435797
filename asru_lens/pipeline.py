"""``asru-lens unlearn``: one registered method (default ASRU), measured the same way before and after each stage.

The measurement (``behaviour``) is greedy generation on the forget, test (forget people in new photos), retain,
celebrity and perception sets:

=================  ===============================================================
forget_refusal     share of forget answers that refuse (``refusal.is_refusal``)
forget_leak        share of forget answers that state their fact (``facts.Facts.stated``: the ground truth or
                   half its key words, so a reworded correct answer counts)
test_refusal       the same refusal share on the forget people's Test_Set photos
test_leak          the same leak share there
retain_utility     share of retain answers that state their fact
celebrity_utility  the same on the celebrities (never forgotten)
perception_acc     the same on questions answered from pixels (None: the world has no such set)
broken_rate        share of all answers that repeat or glue words (``refusal.is_broken``)
=================  ===============================================================

The method is trained by ``methods.fit``, the function ``asru-lens run`` trains its rows with: a method that
starts after another (ASRU's stage 2 after stage 1) is measured after each. Settings: the method's own, then the
model's presets (``lens.presets``, from its folder's ``asru_lens.json``: the organism brings larger learning
rates for its 3.6M parameters), then the budget (``methods.budget.RunConfig``; ``preset``: stage 2 at the
presets' steps), then ``overrides`` and the learning rates.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from asru_lens import methods
from asru_lens.core.oracle import oracle_weights, resolve
from asru_lens.core.sets import eval_sets  # noqa: F401  (the sets it measures on)
from asru_lens.core.training import default_trainable
from asru_lens.core.world import World
from asru_lens.interpret import steer
from asru_lens.interpret.steer import attach
from asru_lens.measure import facts as measure_facts
from asru_lens.measure.refusal import is_refusal
from asru_lens.methods import chain
from asru_lens.methods.budget import RunConfig
from asru_lens.methods.context import Context, fit, inference, reference_copy, saved_model

STAGE_NAMES = {"stage1": "stage1", "asru": "stage2"}     # ASRU's two stages, as the paper names them


def behaviour(lens, sets: dict, facts=None, max_new_tokens: int | None = None) -> dict:
    """The table in the module docstring, plus two example answers per set. ``facts``: the world's
    (``facts.of_world``), which says what states a fact (see ``steer.measure``)."""
    facts = facts or measure_facts.of_sets(sets)
    out = steer.measure(lens, {k: v for k, v in sets.items() if k != "test"}, None, max_new_tokens, facts)
    test = steer.generate(lens, sets["test"], None, max_new_tokens)
    out["test_refusal"] = sum(map(is_refusal, test)) / len(test)
    out["test_leak"] = facts.share(test, sets["test"])
    out["examples"]["test"] = test[:2]
    return out


@dataclass
class UnlearnResult:
    method: str
    stages: dict                                      # "vanilla", then one entry per fitted stage -> behaviour
    layer: int | None = None
    lrs: dict = field(default_factory=dict)
    tuning: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def __getattr__(self, name):                      # res.vanilla, res.stage1, res.stage2, ...
        stages = self.__dict__.get("stages", {})
        if name in stages:
            return stages[name]
        raise AttributeError(name)

    def summary(self) -> dict:
        strip = lambda m: {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}  # noqa: E731
        return {**{k: strip(v) for k, v in self.stages.items()}, "method": self.method, "stages": list(self.stages),
                "layer": self.layer, "lrs": self.lrs, "tuning": self.tuning, "seconds": self.seconds,
                "config": self.config}


def unlearn(lens, world: World, method: str = "asru", budget=None, lrs: dict | None = None, tune: bool = False,
            overrides: dict | None = None, n_eval: int = 240, progress: bool = True, out: str | None = None,
            checkpoint_dir=None, direction=None, filter_refusals: bool = True, oracle="auto") -> UnlearnResult:
    """Train ``lens.model`` in place with the registered ``method`` (``methods.fit``), measuring ``behaviour``
    before and after each stage. ``budget``: a ``RunConfig`` (default ``RunConfig.preset()``); ``lrs``:
    {method: lr} (the others: their presets); ``tune``: pick each learning rate as ``asru-lens run`` does;
    ``overrides``: {method: {setting: value}}; ``out``: save the final model there (``Lens.save``, atomic)."""
    budget = budget or RunConfig.preset()
    stages = chain(method)
    for name in stages:
        methods.get(name)
    say = (lambda m: tqdm.write(m, file=sys.stderr)) if progress else (lambda m: None)  # noqa: E731
    for why in world.missing().values():
        say(f"note: {why}")
    seconds, t = {}, time.time()
    sets = eval_sets(world, budget.forget, n_eval, budget.seed)
    facts = measure_facts.of_world(world, budget.forget)
    measured = {"vanilla": behaviour(lens, sets, facts)}
    seconds["eval_vanilla"] = round(time.time() - t, 1)
    say(f"vanilla: forget refusal {measured['vanilla']['forget_refusal']:.2f}, retain utility "
        f"{measured['vanilla']['retain_utility']:.2f}")
    # the KL reference is the vanilla model: a copy when layers train; with LoRA adapters, the same model with its
    # adapters off (and stage 1's one down_proj swapped back): no second copy of a 2-8B model
    reference = reference_copy(lens) if default_trainable(lens) != "lora" else None
    oracle = resolve(lens, oracle, say) if "oracle" in stages else None
    ctx = Context(lens, world, budget, lrs=dict(lrs or {}), overrides=dict(overrides or {}), reference=reference,
                  probe_result=direction, filter_refusals=filter_refusals, checkpoint_dir=checkpoint_dir,
                  progress=progress, oracle=oracle_weights(lens, oracle) if isinstance(oracle, str) else oracle)
    logs = {}
    for name in stages:
        t = time.time()
        done = fit(ctx, name, tune)
        logs[name] = done["log"]
        seconds[name] = round(time.time() - t, 1)
        label = STAGE_NAMES.get(name, name) if method in STAGE_NAMES else ("after" if name == method else name)
        with inference(lens, done["log"]):
            measured[label] = behaviour(lens, sets, facts)
        say(f"{name}: forget refusal {measured[label]['forget_refusal']:.2f}, retain utility "
            f"{measured[label]['retain_utility']:.2f}")
    used = learning_rates(lens, stages, ctx, lrs or {}, tune)
    for name, u in used.items():
        say(f"{name}: learning rate {u['lr']:g} ({u['from']})")
    if out:
        saved_model(lens, logs[method], out)
    if logs[method].get("steering") is not None:
        attach(lens, logs[method]["steering"])       # the lens is left as the method made it
    layer = ctx.probe_result.selection.layer if ctx.probe_result is not None else None
    config = {"forget": budget.forget, "n_eval": n_eval, "seed": budget.seed, "budget": {
        k: getattr(budget, k) for k in ("baseline_steps", "grpo_steps", "rewrite_steps", "lr_grid")},
        "overrides": ctx.overrides, "settings": ctx.cache.get("settings", {}), "protocol": lens.protocol.name,
        "world": world.kind,
        "notes": list(world.missing().values())}
    config["learning_rates"] = used
    return UnlearnResult(method, measured, layer, dict(ctx.lrs),
                         {n: {"grid": f["grid"], "lr": f["lr"]} for n, f in ctx.fitted.items() if f["grid"]},
                         {k: _loggable(v) for k, v in logs.items()}, seconds, config)


def learning_rates(lens, stages: list, ctx, given: dict, tune: bool) -> dict:
    """``{stage: {"lr", "from"}}``: the learning rate each stage trained at, and where it came from: ``--lr``,
    ``--tune`` (the run's grid and validation rule), the model's preset (its ``asru_lens.json``) or the method's
    own default."""
    out = {}
    for name in dict.fromkeys(stages + [u for n in stages for u in methods.get(n).uses]):
        m = methods.get(name)
        lr = ctx.cache.get("settings", {}).get(name, {}).get("lr")
        if tune and m.tuned and name in ctx.lrs:
            lr = ctx.lrs[name]                        # the chosen one, not the grid's last point
        if lr is None:
            continue                                  # trains nothing (vanilla, steer)
        source = ("--lr" if name in given else "--tune: the run's grid and validation rule" if tune and m.tuned
                  else f"preset: {m.presets} in the model's asru_lens.json"
                  if "lr" in lens.presets.get(m.presets, {}) else "the method's default")
        out[name] = {"lr": lr, "from": source}
    return out


def _loggable(log) -> dict:
    """A method's log without what JSON cannot hold (tensors, steering specs)."""
    out = {}
    for k, v in (log or {}).items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = _loggable(v) if isinstance(v, dict) else repr(v)[:80]
    return out
