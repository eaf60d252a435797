"""``asru-lens run --workers N``: the main job's trainings as Ray tasks, on this machine or a Ray cluster.

The unit of work is one training: a method at one learning rate of the grid. Every such task starts from the
weights the driver sends (vanilla, or the chosen weights of the method it comes ``after``), trains, and returns
its validation score, its log and its weights. When a method's grid is in, the driver picks the learning rate by
the same rule as the serial run (the first best score, in grid order), and one more task scores that point
(``measure.table.measure``: the evaluation and the residue) from the weights already in Ray's object store. A method that
starts after another (ASRU's stage 2 after stage 1) or reads its learning rate (the rewrite reads ASRU's) waits
for that choice only; everything else runs side by side.

Each task is seeded by the method itself, as in the serial run, so the table is the serial run's at the same
seed. A task asks for one GPU where the cluster has GPUs; on CPUs, ``N`` tasks run side by side with the cores
shared between them. The workers open the model and the world from a ``Recipe`` (how the CLI opened them), then
load the driver's vanilla weights, so a model changed in memory before the run is the one they train.

Ray is an extra (``pip install 'asru_lens[ray]'``); without it ``asru-lens run`` stays serial and says so.
"""
from __future__ import annotations

import copy
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from asru_lens import methods, open_world
from asru_lens.core.load import load
from asru_lens.measure.table import measure as measure_row
from asru_lens.methods import get
from asru_lens.methods.context import (Context, best_lr, finished, needed_as_start, needs, plan, restore, saved_model,
                                       snapshot, train_once)

RAY_HINT = "pip install 'asru_lens[ray]' (or pip install ray)"


@dataclass(frozen=True)
class Recipe:
    """How a worker opens the run's model and world: ``asru_lens.load`` and ``asru_lens.open_world``'s
    arguments, and the plugin files or modules whose methods it needs."""
    model: str | None = None
    dtype: str | None = None
    device_map: str | None = None
    batch_size: int | None = None
    data: str | None = None
    unseen_faces: str | None = None
    refusal_prompts: str | None = None
    holdout: str | None = None
    plugins: tuple = ()

    def open(self):
        for plugin in self.plugins:
            methods.load_plugin(plugin)
        world = open_world(self.data, unseen_faces=self.unseen_faces, refusal_prompts=self.refusal_prompts,
                           holdout=self.holdout)
        return load(self.model, dtype=self.dtype, device_map=self.device_map, batch_size=self.batch_size), world


def available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def choose(workers: int, address: str | None, say=None) -> tuple[int, str | None]:
    """``(workers, address)`` as the run will use them: ``(1, None)``, serial, when Ray is not installed (and
    ``say`` is told how to get it)."""
    if (workers > 1 or address) and not available():
        if say:
            say(f"asru-lens run: Ray is not installed, so the run is serial; {RAY_HINT} for --workers/--ray-address")
        return 1, None
    return workers, address


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """One clear error, within seconds, when the Ray head at ``address`` (``ray://host:port`` or ``host:port``)
    does not answer; ray.init itself waits minutes on a wrong one. ``auto``, ``local`` and None pass."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--ray-address {address!r} is not ray://HOST:PORT, HOST:PORT or auto; give the head "
                         f"node's address as `ray start --head` printed it.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ValueError(f"--ray-address {address!r}: nothing answers at {host}:{port} ({e.strerror or e}). Start the "
                         f"head with `ray start --head` (Ray Client listens on port 10001), or run without "
                         f"--ray-address.") from None


def connect(workers: int, address: str | None = None):
    """``ray``, initialised: a local instance with ``workers`` CPUs (and this machine's GPUs), or the cluster at
    ``address``. The workers get this process's ``ASRU_LENS_*`` and ``HF_*`` variables."""
    import ray  # the optional Ray extra
    if ray.is_initialized():
        return ray
    env = {k: v for k, v in os.environ.items() if k.startswith(("ASRU_LENS_", "HF_", "TRANSFORMERS_"))}
    kw = dict(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env}, logging_level="ERROR")
    if address:
        ray.init(address=address, **kw)
    else:
        ray.init(num_cpus=workers, num_gpus=torch.cuda.device_count(), **kw)
    return ray


# -- in the worker --------------------------------------------------------------------------------------------
_OPENED: dict = {}      # this worker process's model and world, for the run it last served


def _opened(base: dict):
    """This worker's model (at the run's vanilla weights), world and frozen reference, opened once per run."""
    if base["threads"]:
        torch.set_num_threads(base["threads"])
    if base["run"] not in _OPENED:
        _OPENED.clear()                  # one run's model per worker
        lens, world = base["recipe"].open()
        restore(lens, base["vanilla"])
        _OPENED[base["run"]] = lens, world, copy.deepcopy(lens.model).eval()
    return _OPENED[base["run"]]


def warm(base: dict) -> int:
    """Open the model and the world ahead of the first task (while the driver probes)."""
    _opened(base)
    return os.getpid()


def _context(shared: tuple, lrs: dict):
    """The worker's ``methods.Context`` for this run: the model at vanilla, the frozen reference, the driver's
    probe and steering sweep, the chosen learning rates so far."""
    base, extra = shared
    lens, world, reference = _opened(base)
    ctx = Context(lens, world, base["budget"], lrs=dict(lrs), overrides=base["overrides"], reference=reference,
                  probe_result=extra["probe"], filter_refusals=base["filter_refusals"], oracle=base["oracle"])
    ctx.cache.update(extra["cache"])
    return ctx


def train_point(base: dict, extra: dict, name: str, lr, start, lrs: dict):
    """One grid point: ``name`` trained at ``lr`` from ``start`` (None: vanilla); (validation score, log,
    weights, seconds)."""
    t = time.time()
    ctx = _context((base, extra), lrs)
    log = train_once(ctx, get(name), start if start is not None else base["vanilla"], lr)
    return ctx.validation(), log, snapshot(ctx.lens), time.time() - t


def score_point(base: dict, extra: dict, name: str, lr, weights, log, lrs: dict, measure: bool, keep: bool):
    """A method at its chosen point: trained here if it is not tuned, its ``finish`` run, then measured
    (``measure.table.measure``) when ``measure``; (row or None, weights if ``keep`` or None, log, seconds)."""
    t = time.time()
    ctx = _context((base, extra), lrs)
    m = get(name)
    start = weights if weights is not None else base["vanilla"]
    if m.tuned:
        restore(ctx.lens, start)
        ctx.method, ctx.lr = m, lr
    else:
        log = train_once(ctx, m, start, lr)
    log = finished(ctx, m, log)
    if measure and base["save_models"]:
        saved_model(ctx.lens, log, Path(base["save_models"]) / name)
    row = measure_row(ctx, name, log, base["judge"], extra["residue"], extra["privacy"]) if measure else None
    return row, snapshot(ctx.lens) if keep else None, log, time.time() - t


# -- in the driver --------------------------------------------------------------------------------------------
class Pool:
    """The run's Ray side: ``Pool(...)`` starts (or joins) Ray and opens the model in every worker, so that this
    happens while the driver probes; ``run_methods`` then trains and measures the methods."""

    def __init__(self, ctx, *, recipe: Recipe, workers: int, address: str | None, judge, save_models):
        self.ray = ray = connect(workers, address)
        self.ctx, self.workers = ctx, workers
        self.gpus = ray.cluster_resources().get("GPU", 0) >= 1
        threads = None if address or self.gpus else max(1, (os.cpu_count() or 1) // workers)
        self.base = ray.put({"run": uuid.uuid4().hex, "recipe": recipe, "vanilla": ctx.vanilla_weights,
                             "budget": ctx.budget, "overrides": ctx.overrides, "filter_refusals": ctx.filter_refusals,
                             "oracle": ctx.oracle,
                             "judge": judge, "save_models": save_models, "threads": threads})
        self.opts = dict(num_gpus=1, num_cpus=1) if self.gpus else dict(num_cpus=1)
        self.warming = [ray.remote(**self.opts)(warm).remote(self.base) for _ in range(workers)]

    def run_methods(self, names, done: dict, *, residue_in, privacy_in=None, on_row, stop,
                    progress: bool = True) -> dict:
        """Train and measure ``names``; ``on_row(name, row, fitted, seconds, weights)`` is called in the driver as
        each row comes in (the run keeps it at once). ``done``: methods finished before (a resumed run),
        ``{name: {"lr", "grid", "weights"?}}``. Returns ``{name: {"lr", "grid", "log"}}`` of every method fitted."""
        ray, ctx = self.ray, self.ctx
        extra = ray.put({"probe": ctx.probe, "residue": residue_in, "privacy": privacy_in,
                         "cache": {k: ctx.cache[k] for k in ("steer_sweep",) if k in ctx.cache}})
        return _schedule(ray, ctx, self.base, extra,
                         self.opts, self.workers, names, done, on_row, stop, progress)


def _schedule(ray, ctx, base, extra, opts, workers, names, done, on_row, stop, progress) -> dict:
    need_score = {n for n in names if n not in done}
    train = ray.remote(**opts)(train_point).options(num_returns=4)
    score = ray.remote(**opts)(score_point).options(num_returns=4)
    order = plan(names)
    fitted = {}        # name -> {"lr", "grid", "log"}
    start_of = {}      # name -> ref of the weights a method after it starts from
    for n, d in done.items():
        fitted[n] = {"lr": d["lr"], "grid": d["grid"], "log": {}}
        if d.get("weights") is not None:
            start_of[n] = ray.put(d["weights"])
    complete, submitted = {n for n in order if n in done}, set(done)
    lrs = {n: f["lr"] for n, f in fitted.items()}
    points, scoring, seconds, waiting = {}, {}, {}, {}     # waiting: ref -> ("point" | "row", name)
    todo = [n for n in order if n not in done]
    bar = tqdm(total=sum(len(ctx.budget.lr_grid) if get(n).tuned else 0 for n in todo) + len(todo),
               desc=f"asru-lens run ({workers} workers)", disable=not progress, leave=False)

    def ready(n):         # what it needs is fitted, and the weights it starts from are on their way
        return all(d in fitted for d in needs(n)) and (not get(n).after or get(n).after in start_of)

    def submit_score(n, lr, weights, log):
        m = get(n)
        keep = needed_as_start(n) and (m.finish is not None or not m.tuned)
        scoring[n] = score.remote(base, extra, n, lr, weights, log, dict(lrs), n in need_score, keep)
        waiting[scoring[n][0]] = ("row", n)

    def below(n):         # how many trainings wait on n's choice: the critical path is sent first
        return sum(1 + below(x) for x in order if n in needs(x))
    first = sorted(order, key=lambda n: (-below(n), order.index(n)))
    try:
        while len(complete) < len(order):
            for n in first:
                if n in submitted or not ready(n):
                    continue
                submitted.add(n)
                m = get(n)
                start = start_of.get(m.after) if m.after else None
                if m.tuned:
                    points[n] = {lr: train.remote(base, extra, n, lr, start, dict(lrs)) for lr in ctx.budget.lr_grid}
                    for refs in points[n].values():
                        waiting[refs[0]] = ("point", n)
                else:
                    fitted[n] = {"lr": lrs.get(n), "grid": None, "log": {}}
                    submit_score(n, lrs.get(n), start, None)
                    if needed_as_start(n):
                        start_of[n] = scoring[n][1]
            if stop.is_set():
                raise KeyboardInterrupt
            if not waiting:
                raise RuntimeError(f"asru-lens run --workers: nothing left to run, but "
                                   f"{', '.join(n for n in order if n not in complete)} did not finish")
            finished, _ = ray.wait(list(waiting), num_returns=1, timeout=1.0)
            for ref in finished:
                kind, n = waiting.pop(ref)
                bar.update(1)
                m = get(n)
                if kind == "point":
                    if any(r[0] in waiting for r in points[n].values()):
                        continue
                    grid = {x: ray.get(points[n][x][0]) for x in ctx.budget.lr_grid}
                    best = best_lr(grid)                     # the serial run's rule
                    seconds[n] = sum(ray.get(points[n][x][3]) for x in ctx.budget.lr_grid)
                    _, log_ref, weights_ref, _ = points[n][best]
                    points[n] = {}                           # only the chosen point's weights stay referenced
                    lrs[n] = best
                    fitted[n] = {"lr": best, "grid": grid, "log": {}}
                    if needed_as_start(n) and m.finish is None:
                        start_of[n] = weights_ref
                    if n in need_score or m.finish is not None:
                        submit_score(n, best, weights_ref, log_ref)
                        if needed_as_start(n) and m.finish is not None:
                            start_of[n] = scoring[n][1]
                    else:
                        fitted[n]["log"] = ray.get(log_ref)
                        complete.add(n)
                        bar.update(1)
                else:
                    row, _, log, took = ray.get(list(scoring[n]))
                    fitted[n]["log"] = log
                    seconds[n] = round(seconds.get(n, 0) + took, 1)
                    complete.add(n)
                    if row is not None:
                        on_row(n, row, fitted[n], seconds[n], ray.get(start_of[n]) if n in start_of else None)
    except KeyboardInterrupt:
        for ref in list(waiting):
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
    return fitted
