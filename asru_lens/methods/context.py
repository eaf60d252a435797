"""What a method is given (``Context``), and ``fit``: the one way a registered method is trained.

``fit(ctx, name)`` trains method ``name`` on ``ctx.lens`` and leaves the model at its result:

1. the methods it ``needs`` are fitted first: with ``tune``, those it ``uses`` (their chosen learning rates go
   into ``ctx.lrs``), and always the one it starts ``after`` (its weights are the start; else the vanilla
   weights). ``plan`` orders a list of methods by the same rule, for the Ray pool;
2. with ``tune``, its ``train`` runs from the start at every learning rate of ``ctx.budget.lr_grid`` and the one
   with the best ``validation_score`` is kept (the run's rule, the same for every method); without, it trains
   once at ``ctx.lrs.get(name)`` (None: its config's own, from the model's presets);
3. its ``finish`` (if any) runs on the chosen weights.

``asru-lens run`` fits every row with ``tune=True``; ``asru-lens unlearn --method NAME`` fits one, with ``--tune``
or at ``--lr``. Both call the same function with the same settings.
"""
from __future__ import annotations

import contextlib
import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from asru_lens.methods.registry import REGISTRY, MethodError, get

# The data, sets, probe, facts and evaluation modules are imported inside the methods that use them: the CLI
# imports this module to check a method's arguments, and refuses a bad one before those load.


def validation_score(lens, val_forget: list, val_retain: list, facts) -> float:
    """(1 - forget leak + retain utility) / 2 on greedy answers, asked as evaluation asks them (the protocol's
    prompt and answer budget, ``facts.fact_leak``): the shares of forget and of retain answers that state their
    fact (``facts.stated``: the ground truth or half its key words, so a reworded correct answer counts)."""
    from asru_lens.measure.facts import fact_leak
    return float((1 - fact_leak(lens, val_forget, facts) + fact_leak(lens, val_retain, facts)) / 2)


def restore(lens, weights) -> None:
    lens.model.load_state_dict(weights)   # the same module object, so lens.nn still wraps it


def snapshot(lens) -> dict:
    return {k: v.detach().clone() for k, v in lens.model.state_dict().items()}


def settings_from(cls, presets: dict, base: dict | None = None, budget: dict | None = None,
                  overrides: dict | None = None, lr: float | None = None):
    """``cls`` built from, in order of precedence: ``lr``, the user's ``overrides``, the run's ``budget``, the
    model's ``presets`` for the method, the method's ``base``. Unknown keys are one clear error."""
    values = {**(base or {}), **(presets or {}), **(budget or {}), **(overrides or {})}
    if lr is not None:
        values["lr"] = lr
    known = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(values) - known)
    if bad:
        raise MethodError(f"{cls.__name__} has no setting {', '.join(bad)}; its settings are {', '.join(sorted(known))}.")
    return cls(**values)


@dataclass
class Context:
    """What a method's training function is given. The data it may need is made on first use and shared
    between the methods of one run."""
    lens: object
    world: object
    budget: object                       # asru_lens.run.RunConfig: forget split, seed, grid, steps per method
    lrs: dict = field(default_factory=dict)        # learning rates given or chosen, by method
    overrides: dict = field(default_factory=dict)  # --set: {method: {setting: value}}
    reference: object = None             # the frozen vanilla model (KL reference), or None
    probe_result: object = None          # a ProbeResult or a saved direction (asru_lens.interpret.probe.load)
    filter_refusals: bool = True
    checkpoint_dir: str | None = None    # stage 2's checkpoints (asru-lens unlearn --checkpoint-dir)
    oracle: dict | None = None           # the oracle's weights (core.oracle.oracle_weights), or None
    progress: bool = False
    cache: dict = field(default_factory=dict)
    fitted: dict = field(default_factory=dict)     # name -> {"lr", "grid", "log", "weights"?}
    method: object = None                # the method being trained (set by fit)
    lr: float | None = None              # its learning rate (None: its config's own)

    @property
    def seed(self) -> int:
        return self.budget.seed

    @property
    def forget_split(self) -> int:
        return self.budget.forget

    def settings(self, cls, base: dict | None = None, budget: dict | None = None, method: str | None = None):
        """A method's config (default: the current one's): ``settings_from`` with the model's presets for it, its
        ``--set`` overrides and its learning rate (``ctx.lr`` for the current method, else ``ctx.lrs``)."""
        m = get(method) if method else self.method
        lr = self.lr if m is self.method else self.lrs.get(m.name)
        cfg = settings_from(cls, self.lens.presets.get(m.presets, {}), base, budget, self.overrides.get(m.name, {}), lr)
        self.cache.setdefault("settings", {})[m.name] = dataclasses.asdict(cfg)    # what it last trained with
        return cfg

    def _once(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    @property
    def facts(self):
        """What states a fact in this world (``measure.facts.of_world``): every leak and utility share."""
        from asru_lens.measure.facts import of_world
        return self._once("facts", lambda: of_world(self.world, self.forget_split))

    @property
    def rows(self) -> dict:
        return self._once("rows", lambda: self.world.rows(self.forget_split))

    @property
    def forget(self) -> list:
        """The forget split's Generation_Task questions with their Full_Set photos."""
        from asru_lens.core import data
        return self._once("forget", lambda: data.generation_items(self.rows["forget"]))

    @property
    def retain(self) -> list:
        """The retain split's Generation_Task questions with their Full_Set photos."""
        from asru_lens.core import data
        return self._once("retain", lambda: data.generation_items(self.rows["retain"]))

    @property
    def boundary_retain(self) -> list:
        """Stage 2's retain half: the retain people in all their photos (``sets.retain_items``)."""
        from asru_lens.core.sets import retain_items
        return self._once("boundary_retain", lambda: retain_items(self.world, self.forget_split, True))

    @property
    def probe(self):
        """The refusal direction at every layer (``probe.probe`` on the starting model, or the one given)."""
        if self.probe_result is None:
            from asru_lens.core.sets import probe_sets
            from asru_lens.interpret import probe
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # a selection fallback is reported in the probe's own summary
                self.probe_result = probe.probe(self.lens, probe_sets(self.world, self.lens.protocol,
                                                                      forget=self.forget_split),
                                                progress=False, filter_refusals=self.filter_refusals)
        return self.probe_result

    @property
    def eval_items(self) -> dict:
        from asru_lens.measure import evaluate
        b = self.budget
        return self._once("eval_items", lambda: evaluate.eval_items(self.world, b.forget, b.n_eval, b.seed))

    @property
    def vanilla_weights(self) -> dict:
        """The weights every method starts from (the reference's, when there is one: it never trains)."""
        return self._once("vanilla_weights", lambda: self.reference.state_dict() if self.reference is not None
                          else snapshot(self.lens))

    def validation(self) -> float:
        """The run's validation rule on the current weights (``validation_score``)."""
        from asru_lens.core.sets import _sample

        def sets():
            eval_qs = {(q.question, q.id) for q in self.eval_items["retain"]["gen"]}
            b = self.budget
            val_retain = _sample([q for q in self.retain if (q.question, q.id) not in eval_qs], b.n_val, b.seed + 7)
            return _sample(self.forget, b.n_val, b.seed + 7), val_retain
        val_forget, val_retain = self._once("validation_sets", sets)
        return validation_score(self.lens, val_forget, val_retain, self.facts)


# -- the dependency rules: fit follows them one method at a time, the Ray pool (parallel.py) all at once ----------
def needs(name: str, tune: bool = True) -> list[str]:
    """The methods ``name`` needs fitted first: those whose chosen learning rate it reads (``uses``; only when
    learning rates are tuned, else the given one or the preset is read) and the one it starts ``after``."""
    m = get(name)
    return [*(m.uses if tune else ()), *([m.after] if m.after else [])]


def plan(names, tune: bool = True) -> list[str]:
    """``names`` with every method they need (``needs``), each before the methods that need it."""
    order: list[str] = []

    def add(n):
        if n not in order:
            for dep in needs(n, tune):
                add(dep)
            order.append(n)
    for n in names:
        add(n)
    return order


def needed_as_start(name: str) -> bool:
    """Whether another registered method starts ``after`` this one (then its weights are kept once fitted)."""
    return any(m.after == name for m in REGISTRY.values())


def train_once(ctx: Context, m, start, lr):
    """Method ``m`` trained once at ``lr`` from the weights ``start`` (None: as the model is); its log."""
    if start is not None:
        restore(ctx.lens, start)
    ctx.method, ctx.lr = m, lr
    return m.train(ctx)


def best_lr(grid: dict) -> float:
    """The run's pick on a learning-rate grid ``{lr: validation score}``: the first best score, in grid order."""
    return max(grid, key=grid.get)


def finished(ctx: Context, m, log) -> dict:
    """The method's log once its ``finish`` (if any) has run on the chosen weights in ``ctx.lens``."""
    if m.finish is not None:
        log = {"train": log, "finish": m.finish(ctx)}
    return log if isinstance(log, dict) else {}


def fit(ctx: Context, name: str, tune: bool = False) -> dict:
    """Train method ``name`` (see the module docstring); returns ``{"lr", "grid", "log"}`` and leaves
    ``ctx.lens`` at its weights. A method fitted before in the same context is restored, not trained again."""
    m = get(name)
    if name in ctx.fitted:
        done = ctx.fitted[name]
        if "weights" in done:
            restore(ctx.lens, done["weights"])
            return done
    for dep in needs(name, tune):
        if dep not in ctx.fitted and dep != m.after:     # m.after is fitted just below, for its weights
            fit(ctx, dep, tune)
    # the start: the method it comes after, else vanilla (no copy needed when nothing has trained yet)
    start = fit(ctx, m.after, tune)["weights"] if m.after else (
        ctx.vanilla_weights if (tune and m.tuned) or ctx.fitted or "vanilla_weights" in ctx.cache else None)
    ctx.method = m
    grid = None
    if tune and m.tuned:
        grid, best = {}, None
        for lr in tqdm(ctx.budget.lr_grid, desc=f"lr grid {name}", leave=False, disable=not ctx.progress):
            log = train_once(ctx, m, start, lr)
            grid[lr] = ctx.validation()
            if best_lr(grid) == lr:              # the best so far: only its weights are kept
                best = (snapshot(ctx.lens), log)
        lr = best_lr(grid)
        weights, log = best
        restore(ctx.lens, weights)
    else:
        lr = ctx.lrs.get(name)
        log = train_once(ctx, m, start, lr)
    ctx.lrs[name] = lr
    ctx.method, ctx.lr = m, lr
    out = {"lr": lr, "grid": grid, "log": finished(ctx, m, log)}
    if needed_as_start(name):
        out["weights"] = snapshot(ctx.lens)
    ctx.fitted[name] = out
    return out


@contextlib.contextmanager
def inference(lens, log: dict):
    """Inside the block the model runs as the method left it: with its steering on, for a method that steers at
    inference (its log holds ``"steering"``), else as it is."""
    spec = (log or {}).get("steering")
    if spec is None:
        yield
        return
    from asru_lens.interpret.steer import steering
    with steering(lens, spec):
        yield


def saved_model(lens, log: dict, path) -> Path:
    """``lens.save(path)``, with the method's steering (if any) kept in the folder, so ``asru_lens.load`` reopens
    the model as the method left it."""
    spec = (log or {}).get("steering")
    before = lens.steering
    lens.steering = spec if spec is not None else before
    try:
        return lens.save(path)
    finally:
        lens.steering = before


from asru_lens.core.training import frozen_copy as reference_copy  # noqa: E402,F401  (the KL reference)
