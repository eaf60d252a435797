"""The ``asru-lens`` command. Every command that prints a table also takes ``--json``."""
from __future__ import annotations

import argparse
import json
import sys
import time

# Each command imports the library inside itself, after its arguments are checked: `--help` and a bad argument
# answer in seconds, before torch, transformers and the models load (tests/test_world_providers.py times them).


def _table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))


def emit(args, info, text) -> int:
    """The one output path of every command: ``info`` as JSON with ``--json``, else ``text(info)``'s lines."""
    if getattr(args, "json", False):
        print(json.dumps(info))
    else:
        out = text(info)
        print(out if isinstance(out, str) else "\n".join(out))
    return 0


# -- argument types: a bad value is refused by argparse, before anything is imported or loaded ---------------------
def whole_number(lowest: int, what: str):
    """An argparse type: a whole number of at least ``lowest`` (``what`` names the bound in the error)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < lowest:
            raise argparse.ArgumentTypeError(f"{v} must be {what}")
        return v
    return parse


positive_int = whole_number(1, "positive (1 or more)")
nonneg_int = whole_number(0, "0 or more")


def finite_float(text: str) -> float:
    import math
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def finite_floats(text: str) -> list[float]:
    return [finite_float(t) for t in text.split(",") if t.strip()]


def _world(args):
    """The world (``asru_lens.open_world``) from --data / --unseen-faces / --refusal-prompts: every file is
    checked here, before the model is loaded."""
    from asru_lens import open_world
    world = open_world(args.data, unseen_faces=getattr(args, "unseen_faces", None),
                       refusal_prompts=getattr(args, "refusal_prompts", None), holdout=getattr(args, "holdout", None))
    if getattr(args, "forget", None) is not None:
        try:
            world.check_forget(args.forget)
        except ValueError as e:
            raise ValueError(f"--forget {args.forget}: {e}") from None
    return world


def _oracle(args):
    """--oracle as run() takes it, checked against --model now (two config files, no weights): a folder or
    shipped name, None for "none", or "auto" (the one the model folder names)."""
    if args.oracle is None:
        return "auto"
    if args.oracle == "none":
        return None
    from asru_lens.core.oracle import check_oracle
    check_oracle(args.model or "organism", args.oracle)
    return args.oracle


def _check_layer(args, layer) -> None:
    """A --layer against the model's config (read without loading weights)."""
    if layer is None:
        return
    from asru_lens.core.load import text_layers
    n = text_layers(args.model)
    if not 0 <= layer < n:
        raise ValueError(f"--layer {layer} is out of range: this model has {n} decoder layers, so pass 0..{n - 1}.")


def _load(args):
    from asru_lens.core.load import load
    return load(args.model, dtype=args.dtype, device_map=args.device_map, batch_size=args.batch_size)


def cmd_organism_build(args) -> int:
    from asru_lens.core.load import ORGANISM_DIR
    from asru_lens.organism.train import OrganismConfig, save_organism, train_organism

    exclude = int(args.exclude.removeprefix("forget_")) if args.exclude else None
    cfg = OrganismConfig(seed=args.seed, exclude=exclude, bf16=not args.fp32, threads=args.threads,
                         **({} if args.steps is None else {"steps": args.steps}))
    t0 = time.time()
    model, processor, world, log = train_organism(cfg, progress=True)
    tail = log["loss"][-50:]
    meta = {"config": log["config"], "train_seconds": round(log["seconds"], 1),
            "final_loss": round(sum(tail) / len(tail), 4)}
    if exclude:
        meta["excluded_ids"] = world.forget_ids[exclude]
    default = ORGANISM_DIR if exclude is None else ORGANISM_DIR.parent / f"oracle_forget_{exclude}"
    # the shipped oracle is this recipe's at seed 42: a model built the same way names it as its own
    same = exclude is None and args.seed == 42 and args.steps is None
    out = save_organism(model, processor, args.out or default, meta, oracle="oracle" if same else None)
    from asru_lens.organism.mllmu import world_dir
    world = world_dir(args.seed)
    info = {"out": str(out), "seconds": round(time.time() - t0, 1), "steps": cfg.steps,
            "final_loss": meta["final_loss"], "world_seed": args.seed, "world": str(world),
            "use_with": f"--model {out} --data {world}"}
    return emit(args, info, lambda i: _table(list(i.items()), ("key", "value")))


def _record(model: str | None, res: dict) -> None:
    """Store ``res`` as the "eval" entry of the model folder's organism.json (written atomically)."""
    from pathlib import Path

    from asru_lens.core.atomic import atomic_write_text
    from asru_lens.core.load import ORGANISM_DIR

    folder = Path(model) if model else Path(ORGANISM_DIR)
    if not folder.is_dir():
        raise ValueError(f"--record needs a local model folder; {folder} is not one")
    meta_path = folder / "organism.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta["eval"] = res
    atomic_write_text(meta_path, json.dumps(meta, indent=1))


def cmd_organism_eval(args) -> int:
    from asru_lens.core.data import split_path
    from asru_lens.organism.evaluate import THRESHOLDS, check, evaluate_organism
    from asru_lens.organism.mllmu import world_dir

    folder = args.data or world_dir()
    split_path(folder, "Full_Set")          # a wrong folder is named before the model loads
    lens = _load(args)
    res = evaluate_organism(lens, folder, progress=True)
    ok = check(res)
    if args.record:
        _record(args.model, res)
    emit(args, res, lambda r: _table([(k, _fmt(r[k]), f"{op} {b:,}" if isinstance(b, int) else f"{op} {b}",
                                        "ok" if ok[k] else "FAIL", meaning)
                                       for k, (op, b, meaning) in THRESHOLDS.items()],
                                      ("key", "value", "target", "", "meaning")))
    return 0 if all(ok.values()) or not args.strict else 1


def cmd_organism_portraits(args) -> int:
    from asru_lens.core.atomic import atomic_write_bytes
    from asru_lens.organism import mllmu
    from asru_lens.organism.portraits import contact_sheet
    from asru_lens.organism.world import build_world

    world = build_world(args.seed)
    rows = [[mllmu.photo(world, p.face, p.id, k) for k in range(args.photos)] for p in world.people[:args.people]]
    buf = __import__("io").BytesIO()
    contact_sheet(rows).save(buf, format="PNG")
    atomic_write_bytes(args.out, buf.getvalue())
    names = [p.name for p in world.people[:args.people]]
    return emit(args, {"out": args.out, "people": names}, lambda i: f"wrote {i['out']}: {', '.join(i['people'])}")


def cmd_organism_export(args) -> int:
    from asru_lens.organism.mllmu import world_dir
    from asru_lens.organism.provider import OrganismWorld, export, write_faces
    if args.format == "clear":
        if args.style != "template" or args.holdout:
            raise ValueError("organism export --format clear writes CLEAR's configs only: drop --style and "
                             "--holdout (they shape the MLLMU-Bench export).")
        from asru_lens.organism.clear import export_clear
        counts = export_clear(args.out, world_dir(args.seed))
        counts["unseen_faces"] = write_faces(args.faces, OrganismWorld(world_dir(args.seed)))
    else:
        counts = export(args.out, args.faces, style=args.style, seed=args.seed, holdout=args.holdout)
    info = {"out": args.out, "faces": args.faces, "holdout": args.holdout, "format": args.format,
            "style": args.style, "seed": args.seed, "world": str(world_dir(args.seed)), "rows": counts}
    hold = f" --holdout {args.holdout}" if args.holdout else ""
    layout = "CLEAR's Hub layout" if args.format == "clear" else f"MLLMU-Bench's Hub layout, {args.style} style"
    return emit(args, info, lambda i: [
        _table(list(counts.items()), ("subset", "rows")),
        f"wrote {args.out} ({layout}, world seed {args.seed}) and {args.faces} "
        f"({counts['unseen_faces']} unseen faces, <id>/0.png)"
        + (f" and {args.holdout} ({counts['holdout']} people never trained on, Full_Set)" if args.holdout else "")
        + f". Use them with --data {args.out} --unseen-faces {args.faces}{hold}."])


def cmd_probe(args) -> int:
    from asru_lens.interpret.probe import probe
    from asru_lens.core.sets import probe_sets

    world = _world(args)
    lens = _load(args)
    sets = probe_sets(world, lens.protocol, forget=args.forget, n=args.n)
    res = probe(lens, sets, progress=True, filter_refusals=not args.no_refusal_filter)
    info = res.summary()
    info["notes"] = info["counts"].pop("notes", []) + list(world.missing().values())
    info["protocol"] = lens.protocol.name
    if args.figures:
        from asru_lens.show import viz
        info["figures"] = [str(p) for p in viz.save_probe_figures(res, args.figures)]
    if args.out:
        from asru_lens.interpret.probe import save_direction
        info["saved"] = [str(p) for p in save_direction(res, args.out)]

    def text(info):
        rows = [(k, _fmt(info[k])) for k in ("layer", "position", "token", "n_layers", "auroc_chosen",
                                              "induce_refusal", "induce_score", "bypass_score", "kl", "fallback")]
        layers = [(i, _fmt(a), _fmt(h), _fmt(n), _fmt(c)) for i, (a, h, n, c) in enumerate(zip(
            info["auroc"], info["auroc_harmful"], info["direction_norm"],
            info["modality_cosine"] or [None] * res.n_layers))]
        return ([_table(rows, ("selected direction", "value")), "",
                 _table(layers, ("layer", "auroc", "auroc_harmful", "norm", "cos(image,text)"))]
                + [f"note: {n}" for n in info["notes"]]
                + [f"wrote {f}" for f in info.get("figures", []) + info.get("saved", [])])
    return emit(args, info, text)


STEER_KEYS = ("forget_refusal", "forget_leak", "retain_utility", "celebrity_utility", "perception_acc", "broken_rate")


def cmd_steer(args) -> int:
    import warnings

    from asru_lens.interpret import probe, steer
    from asru_lens.core.sets import probe_sets, steer_sets
    from asru_lens.measure.facts import of_world

    _check_layer(args, args.layer)
    saved = _direction(args)
    world = _world(args)
    lens = _load(args)
    psets = probe_sets(world, lens.protocol, forget=args.forget)
    if saved is not None:
        res = saved
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a selection fallback does not matter here: we steer where we are told
            res = probe.probe(lens, psets, progress=False, filter_refusals=not args.no_refusal_filter)
    directions = res.directions[:, res.selection.position]
    layer = steer.check_layer(lens, args.layer if args.layer is not None else res.selection.layer)
    kw = {}
    if args.mode == "conditional":  # detector: forget vs retain prompts, threshold halfway between their means
        kw = steer.forget_detector(lens, psets["forget"].direction, psets["retain"].direction, layer)
    sets = steer_sets(world, forget=args.forget, n=args.n)
    facts = of_world(world, args.forget)
    if args.sweep:
        layers = list(range(1, lens.n_layers)) if args.layer is None else [args.layer]
        alphas = args.alphas
        points = steer.sweep(lens, sets, directions, layers, alphas, args.mode, progress=True, facts=facts,
                             **kw)
        base = {"layer": None, "alpha": 0.0, "mode": "none", **steer.measure(lens, sets, None, facts=facts)}
        points = [base] + points
        if args.figures:
            from asru_lens.show import viz
            for p in viz.save(viz.fig_tradeoff(points), "steer_sweep", args.figures):
                print(f"wrote {p}", file=sys.stderr)
        return emit(args, [{k: v for k, v in p.items() if k != "examples"} for p in points], lambda ps: _table(
            [(p["layer"], p["alpha"], *(_fmt(p[k]) for k in STEER_KEYS)) for p in ps], ("layer", "alpha") + STEER_KEYS))
    spec = steer.Steering(directions[layer], layer, args.alpha, args.mode, **kw)
    point = {"layer": layer, "alpha": args.alpha, "mode": args.mode, **steer.measure(lens, sets, spec, facts=facts)}
    return emit(args, point, lambda p: [_table([(k, _fmt(p[k])) for k in ("layer", "alpha", "mode") + STEER_KEYS],
                                               ("key", "value"))]
                + [f"{name:>7}: {t}" for name, texts in p["examples"].items() for t in texts])


UNLEARN_KEYS = ("forget_refusal", "forget_leak", "test_refusal", "retain_utility", "celebrity_utility",
                "perception_acc", "broken_rate")


def _plugins(args) -> None:
    """Import every --plugin file or module (each registers its methods) before any name is checked."""
    from asru_lens import methods
    for plugin in getattr(args, "plugin", None) or []:
        methods.load_plugin(plugin)


def lr_spec(text: str) -> dict:
    """``--lr 1e-4`` (the method's own) or ``--lr stage1=3e-3,asru=1e-4``: {method or None: lr}."""
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, value = part.rpartition("=")
        v = finite_float(value)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"learning rate {value!r} must be positive")
        out[name.strip() or None] = v
    if not out:
        raise argparse.ArgumentTypeError(f"{text!r} gives no learning rate")
    return out


def setting(text: str) -> tuple[str | None, str, object]:
    """``--set steps=3`` or ``--set asru.steps=3``: (method or None, setting, value as JSON or text)."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. steps=3 or asru.steps=3)")
    method, _, name = key.strip().rpartition(".")
    try:
        value = json.loads(value)
    except ValueError:
        pass
    return method or None, name, value


def _method_settings(args, method: str) -> tuple[dict, dict]:
    """(lrs, overrides) from --lr and --set, unnamed ones meaning ``method``; every name and setting is checked
    against the registry and the method's config before any model work."""
    import dataclasses

    from asru_lens import methods
    from asru_lens.methods import chain
    lrs = {(k or method): v for k, v in (args.lr or {}).items()}
    overrides: dict = {}
    for m, name, value in args.set or []:
        overrides.setdefault(m or method, {})[name] = value
    involved = set(chain(method)) | {u for n in chain(method) for u in methods.get(n).uses}
    for m in set(lrs) | set(overrides):
        methods.get(m)
        if m not in involved:
            raise ValueError(f"--lr/--set name {m!r}, which {method!r} does not train; it trains "
                             f"{', '.join(sorted(involved))}.")
    for m, values in overrides.items():
        cls = methods.get(m).config
        known = {f.name for f in dataclasses.fields(cls)} if cls else set()
        bad = sorted(set(values) - known)
        if bad:
            raise ValueError(f"--set {m}.{bad[0]}: {m} has no setting {bad[0]!r}; its settings are "
                             f"{', '.join(sorted(known)) or '(none)'}.")
    return lrs, overrides


def _direction(args):
    """A saved probe (``asru-lens probe --out DIR``) from --direction, checked before the model loads."""
    if not getattr(args, "direction", None):
        return None
    from asru_lens.interpret.probe import load_direction
    return load_direction(args.direction)


def cmd_unlearn(args) -> int:
    from asru_lens import methods

    _plugins(args)
    methods.get(args.method)
    lrs, overrides = _method_settings(args, args.method)
    if args.steps is not None:
        overrides.setdefault("asru", {})["steps"] = args.steps
    if args.engine:
        if "asru" not in methods.chain(args.method):
            raise ValueError(f"--engine chooses how ASRU's stage 2 trains; method {args.method!r} has no stage 2 "
                             f"(it trains {', '.join(methods.chain(args.method))}).")
        overrides.setdefault("asru", {})["engine"] = args.engine
    from asru_lens.core.training import launched
    from asru_lens.methods.budget import RunConfig
    from asru_lens.pipeline import unlearn
    rank = launched()[0]                         # torchrun / accelerate launch: one of several processes
    if args.checkpoint_dir:
        overrides.setdefault("asru", {})["checkpoint_every"] = args.checkpoint_every
    direction = _direction(args)
    oracle = _oracle(args)
    world = _world(args)
    lens = _load(args)
    budget = RunConfig.named(args.budget, forget=args.forget, seed=args.seed)
    res = unlearn(lens, world, args.method, budget, lrs, args.tune, overrides, n_eval=args.n,
                  progress=rank == 0, out=args.out if rank == 0 else None,
                  checkpoint_dir=args.checkpoint_dir, direction=direction, filter_refusals=not args.no_refusal_filter,
                  oracle=oracle)
    if rank:
        return 0          # data-parallel: the first process saves and reports
    info = res.summary()
    info = {k: ({m: v for m, v in info[k].items() if m != "examples"} if k in res.stages else info[k]) for k in info}
    trl = res.logs.get("asru", {})
    if isinstance(trl, dict) and trl.get("engine") == "trl":    # how stage 2 ran: processes, reward, weights' digests
        info["trl"] = {k: trl[k] for k in ("processes", "reward", "kl", "changed", "ranks") if k in trl}

    def text(info):
        stages = list(res.stages)
        lines = [_table([(k, *(_fmt(res.stages[s][k]) for s in stages)) for k in UNLEARN_KEYS], ("metric", *stages))]
        lines += [f"{stage:>7} {name:>7}: {texts[0]}" for stage in stages
                  for name, texts in res.stages[stage]["examples"].items()]
        lines += [f"note: {note}" for note in info["config"]["notes"]]
        lines.append(f"learning rates: {info['lrs']}; seconds: {info['seconds']}")
        if args.out:
            lines.append(f"saved the {args.method} model to {args.out} (reopen with asru_lens.load({args.out!r}))")
        return lines
    return emit(args, info, text)


def cmd_run(args) -> int:
    from pathlib import Path

    from asru_lens import methods

    _plugins(args)
    chosen = methods.check([m.strip() for m in args.methods.split(",") if m.strip()]) if args.methods else None
    from asru_lens.measure.judge import make_judge
    from asru_lens.report import cell, headline
    from asru_lens.run import RunConfig, run, summary, write_report
    cfg = RunConfig.named(args.budget, forget=args.forget, seed=args.seed,
                          **({} if args.steps is None else {"grpo_steps": args.steps}))
    if chosen:
        cfg.methods = chosen
    if args.residue is not None:
        cfg.residue = args.residue
    judge = make_judge(args.judge)
    direction = _direction(args)
    from asru_lens import parallel
    parallel.check_address(args.ray_address if parallel.available() else None)   # before the model loads
    oracle = _oracle(args)
    world = _world(args)
    lens = _load(args)
    from asru_lens.parallel import Recipe
    here = lambda p: p if p is None or not Path(p).exists() else str(Path(p).resolve())   # noqa: E731 (workers' cwd)
    recipe = Recipe(model=here(args.model), dtype=args.dtype, device_map=args.device_map, batch_size=args.batch_size,
                    data=here(args.data), unseen_faces=here(args.unseen_faces),
                    refusal_prompts=here(args.refusal_prompts), holdout=here(args.holdout),
                    plugins=tuple(map(here, args.plugin or ())))
    out = Path(args.out or f"runs/{time.strftime('%Y-%m-%d')}-seed{args.seed}")
    reports = Path(args.reports) if args.reports else out
    figures = Path(args.figures) if args.figures else out / "figures"
    import signal

    from asru_lens.run import STOP

    def on_ctrl_c(signum, frame):
        STOP.set()                    # seen again before each task, should a library catch the interrupt
        raise KeyboardInterrupt
    STOP.clear()
    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        res = run(lens, world, cfg, progress=True, figures=figures, judge=judge,
                  save_models=args.save_models, direction=direction, tasks=out / "tasks", resume=args.resume,
                  workers=args.workers, ray_address=args.ray_address, recipe=recipe, oracle=oracle)
    except KeyboardInterrupt:
        finished = sorted(p.stem for p in (out / "tasks").glob("*.json") if p.name != "config.json")
        argv = [a for a in getattr(args, "argv", []) if a != "--resume"]
        again = " ".join(["asru-lens", *argv, *([] if args.out else ["--out", str(out)]), "--resume"])
        print(f"\nasru-lens run: interrupted with {len(finished)} of {len(cfg.methods)} tasks finished "
              f"({', '.join(finished) or 'none'}), kept in {out / 'tasks'}.\nResume with: {again}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    paths = write_report(res, reports, figures)
    info = summary(res)
    info["resumed"] = res.extra.get("resumed", [])

    def text(info):
        columns = headline(info["methods"].values())
        lines = [_table([(m, *(cell(v.get(k)) for k in columns)) for m, v in info["methods"].items()],
                        ("method",) + columns), f"protocol: {info['protocol']}, judge: {info['judge']}"]
        lines += [f"note: {n}" for n in info["notes"]] + [f"wrote {p}" for p in paths]
        if info["resumed"]:
            lines.append(f"resumed: {len(info['resumed'])} finished tasks read back from {out / 'tasks'} "
                         f"({', '.join(info['resumed'])})")
        if args.save_models:
            lines.append(f"saved each method's model under {args.save_models}/ (reopen with asru_lens.load)")
        return lines
    return emit(args, info, text)


def cmd_finetune(args) -> int:
    from asru_lens.core.finetune import finetune, finetune_config, finetune_items

    overrides = {k: v for k, v in (("split", args.split), ("epochs", args.epochs), ("lr", args.lr),
                                   ("grad_accum", args.grad_accum), ("max_steps", args.max_steps),
                                   ("lora_r", args.lora_r), ("checkpoint_every", args.checkpoint_every),
                                   ("seed", args.seed)) if v is not None}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    if args.full:
        overrides["trainable"] = "layers"
    if args.gradient_checkpointing is not None:
        overrides["gradient_checkpointing"] = args.gradient_checkpointing
    if args.answer_only:
        overrides["answer_only"] = True
    if args.resume and not args.checkpoint_dir:
        raise ValueError("--resume needs --checkpoint-dir (the folder the interrupted run wrote its checkpoints to).")
    from asru_lens.core.finetune import FinetuneConfig
    FinetuneConfig(**overrides).check()           # bad settings are named before any data or model work
    world = _world(args)
    items = finetune_items(world.split(overrides.get("split", "Full_Set")))
    lens = _load(args)
    cfg = finetune_config(lens, **overrides)
    log = finetune(lens, items, cfg, progress=True, checkpoint_dir=args.checkpoint_dir, resume=args.resume)
    if log.get("rank", 0):
        return 0          # data-parallel (torchrun, accelerate launch): the first process saves and reports
    lens.save(args.out)
    info = {"out": args.out, "split": cfg.split, "examples": len(items), "steps": log["steps"],
            "loss_first": log["loss"][0] if log["loss"] else None, "loss_last": log["loss"][-1] if log["loss"] else None,
            "tokens_per_s": log["tokens_per_s"], "seconds": log["seconds"], "trainable": cfg.trainable,
            "lr": cfg.lr, "epochs": cfg.epochs, "batch_size": cfg.batch_size, "processes": log.get("processes", 1)}
    if "ranks" in log:    # what each process trained on, and the digest of its weights
        info["ranks"] = log["ranks"]
    return emit(args, info, lambda i: [_table([(k, _fmt(v)) for k, v in i.items()], ("key", "value")),
                                       f"saved the fine-tuned model to {args.out} (reopen with asru_lens.load({args.out!r}))"])


def cmd_evaluate(args) -> int:
    from asru_lens.measure import evaluate
    from asru_lens.measure.judge import make_judge
    from asru_lens.report import cell, headline

    from asru_lens.core.oracle import resolve
    from asru_lens.measure import privacy

    judge = make_judge(args.judge)
    oracle = _oracle(args)
    world = _world(args)
    lens = _load(args)
    items = evaluate.eval_items(world, args.forget, args.n, args.seed)
    res = evaluate.evaluate(lens, world, args.forget, n=args.n, judge=judge, progress=True, items=items)
    mine = privacy.read(lens, world, args.forget)
    notes = list(world.missing().values())
    oracle = resolve(lens, oracle, lambda m: notes.append(m.removeprefix("note: ")))
    theirs = None
    if oracle is not None:
        del lens
        from asru_lens.core.load import load
        theirs = privacy.read(load(oracle, dtype=args.dtype, device_map=args.device_map, batch_size=args.batch_size),
                              world, args.forget)
    else:
        notes.append("forget_quality and privleak are null: no oracle (--oracle DIR)")
    res["metrics"].update(privacy.columns(mine, theirs))
    info = {"metrics": {k: None if v is None else round(v, 4) for k, v in res["metrics"].items()},
            "mia_auc": mine.get("mia_auc"), "mia_auc_interval": mine.get("mia_auc_interval"), "oracle": oracle,
            "protocol": res["protocol"], "judge": res["judge"], "notes": notes}
    ci = (info["mia_auc_interval"] or {}).get(privacy.MIA)
    return emit(args, info, lambda i: [_table([(k, cell(i["metrics"].get(k)))
                                               for k in headline([i["metrics"]]) + privacy.COLUMNS],
                                              ("metric", "value")),
                                       f"protocol: {i['protocol']}, judge: {i['judge']}, oracle: {i['oracle']}"]
                + ([f"mia_auc ({privacy.MIA}): 95% interval over people [{ci[0]:.3f}, {ci[1]:.3f}]"] if ci else [])
                + [f"note: {n}" for n in i["notes"]])


def cmd_residue(args) -> int:
    from asru_lens.core.load import load
    from asru_lens.measure.residue import ResidueConfig, residue

    try:
        cfg = ResidueConfig(forget=args.forget, seed=args.seed, control=not args.no_control, folds=args.folds,
                            **({"steps": tuple(args.steps)} if args.steps else {}),
                            **({"splits": tuple(args.splits.split(","))} if args.splits else {}))
    except ValueError as e:                      # named before any model loads
        raise ValueError(f"--splits/--steps: {e}") from None
    saved = _direction(args)                     # a bad --direction is named before any model loads
    refusal = None if saved is None else saved.direction
    from asru_lens.core.oracle import check_oracle
    from asru_lens.measure.residue import oracle_curve
    oracle = None if args.oracle in (None, "none") else args.oracle      # the audit of the oracle is asked for
    if oracle is not None:
        check_oracle(args.vanilla or "organism", oracle)    # before any model loads
    world = _world(args)
    kw = dict(dtype=args.dtype, device_map=args.device_map, batch_size=args.batch_size)
    vanilla = load(args.vanilla, **kw)
    out = {"models": {}, "protocol": vanilla.protocol.name, "oracle": oracle, "notes": list(world.missing().values())}
    curve = None

    def audit(lens, leak_vanilla):
        return residue(lens, world, cfg, leak_vanilla, progress=True, refusal_direction=refusal, oracle=curve)
    out["models"]["vanilla"] = audit(vanilla, None)
    leak_vanilla = {by: r["leak_unlearned"] for by, r in out["models"]["vanilla"]["relearn"].items()}
    del vanilla
    if oracle is not None:           # the model that never knew: its relearning is learning from scratch
        never = load(oracle, **kw)
        curve = oracle_curve(never, world, cfg)
        out["models"]["oracle"] = audit(never, leak_vanilla)
        del never
    if args.model is not None:
        out["models"][args.model] = audit(load(args.model, **kw), leak_vanilla)

    def text(out):
        lines = []
        for name, r in out["models"].items():
            def across(rel, key, j):              # A-D / cloze on the held-out fold's people, before -> after
                acc = rel.get(key)
                return f"{_fmt(acc['before'])} -> {_fmt(acc['after'][j])}" if acc else "-"
            rows = [(by, k, _fmt(rel["leak_unlearned"]), _fmt(lk), _fmt(rec),
                     _fmt((rel.get("recovery_oracle") or [None] * 9)[j]),
                     _fmt(rel.get("control", {}).get("leak", [None] * 9)[j]),
                     across(rel, "cls_acc", j), across(rel, "cloze_acc", j))
                    for by, rel in r["relearn"].items()
                    for j, (k, lk, rec) in enumerate(zip(rel["steps"], rel["leak"], rel["recovery"]))]
            pa = r["probe_acc"]
            lines += [f"== {name}", _table(rows, ("split", "steps", "leak before", "leak after", "recovery",
                                                  "vs oracle", "control leak", "A-D held out", "cloze held out")),
                      f"value probe per layer ({pa.get('readout')}): {pa['per_layer']} (chance {pa['chance']})"
                      if pa["per_layer"] is not None else f"value probe: {pa['note']}",
                      f"A-D probe per layer (retain -> forget): {r['ad_probe']['per_layer']} (chance "
                      f"{r['ad_probe']['chance']}; untrained logit lens {r['ad_probe'].get('logit_lens')})"
                      if r["ad_probe"]["max"] is not None else f"A-D probe: {r['ad_probe']['note']}",
                      f"logit-lens rank of the value's first token per layer: {r['logit_lens_rank']}",
                      f"forget A-D accuracy: {_fmt(r.get('forget_cls_acc'))}, cloze: {_fmt(r.get('forget_cloze_acc'))}",
                      f"asked by name, no photo ({r['by_name']['n']} facts): states the fact "
                      f"{_fmt(r['by_name']['leak'])}, refuses {_fmt(r['by_name']['refusal'])}",
                      f"direction ablated from every layer: leak {_fmt(r['ablation']['leak'])} (own forget-minus-"
                      f"retain direction per layer {r['ablation']['own_direction']}, before "
                      f"{_fmt(r['ablation']['before'])}" + (f", vanilla's refusal direction "
                      f"{_fmt(r['ablation']['refusal_direction'])}" if "refusal_direction" in r["ablation"] else "")
                      + ")",
                      f"benign fine-tuning on the retain people only: forget leak {_fmt(r['benign']['leak_before'])}"
                      f" before, " + ", ".join(f"{_fmt(lk)} after {k} steps" for k, lk in
                                               zip(r["benign"]["steps"], r["benign"]["leak"]))]
        return lines
    return emit(args, out, text)


def cmd_gallery(args) -> int:
    from asru_lens.show import gallery
    try:
        pages = gallery.build(args.out, args.notebooks, args.report)
    except OSError as e:                 # FileExistsError (a folder it did not write), FileNotFoundError
        print(f"asru-lens: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(pages)} pages; open {pages[0]}")
    return 0


RUN_EXAMPLES = """examples:
  asru-lens run                                         # the organism on its own world
  asru-lens run --data MLLMU --unseen-faces FACES       # an MLLMU-Bench download, DigiFace-style faces
  asru-lens run --data CLEAR --unseen-faces FACES       # CLEAR (therem/CLEAR, one folder per config)
  asru-lens run --data CLEAR --unseen-faces FACES --forget 5 --budget small   # its forget05 split, quickly"""


def _model_args(p, data_help: str = "MLLMU-Bench folder (flat or Hub layout), CLEAR folder (therem/CLEAR's configs "
                "as folders) or a world the organism wrote (default: the organism's world)", forget: bool = True, refusal: bool = True) -> None:
    """The options every model command shares."""
    p.add_argument("--model", help="model folder or Hub id (default: the shipped organism)")
    p.add_argument("--data", help=data_help)
    if refusal:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--unseen-faces", metavar="DIR",
                       help="faces the model never saw, for ASRU's refusal set: DIR/*.png or DigiFace-style "
                            "DIR/<id>/0.png (needed with a plain MLLMU-Bench folder)")
        g.add_argument("--refusal-prompts", metavar="FILE",
                       help='your own refusal prompts, JSONL: {"question": ..., "image": path or null} per line')
        p.add_argument("--no-refusal-filter", action="store_true",
                       help="keep every refusal prompt, refused or not (for a model that refuses nothing yet, "
                            "e.g. random weights); by default only prompts the model refuses are kept, as ASRU does")
    if forget:
        p.add_argument("--forget", type=int, default=10, choices=(1, 5, 10, 15),
                       help="forget split, percent: MLLMU-Bench has 5, 10 and 15, CLEAR 1, 5 and 10 (default 10)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16", "auto"),
                   help="weights' dtype (default: the checkpoint's)")
    p.add_argument("--device-map", help='where the weights go: "auto", "cuda:0", "cpu" ... (default: CPU)')
    p.add_argument("--batch-size", type=positive_int, help="prompts per batch for every stage (default: each "
                   "stage's own)")


def _oracle_args(p, default: str = "the one the model folder names (the organism's ships with it); none: no "
                 "oracle") -> None:
    """--oracle and --holdout: the model that never knew, and the people nobody trained on."""
    p.add_argument("--oracle", metavar="DIR", help="the model trained without the forget set, with --model's "
                   "architecture and tokenizer (for a real model: `asru-lens finetune --split retain_90 --out DIR`; "
                   f"`oracle`: the organism's); default: {default}")
    if p.prog.split()[-1] == "residue":
        return
    p.add_argument("--holdout", metavar="DIR", help="an MLLMU folder (its Full_Set) of people the model never "
                   "trained on, the non-members of membership inference (`asru-lens organism export --holdout "
                   "DIR`; the organism's world brings its own)")


def _method_names() -> list[str]:
    from asru_lens import methods
    return list(methods.ORDER)          # the built-in ones, without importing them (the help stays fast)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asru-lens", description="Probe, steer and unlearn Qwen3-VL (ASRU).")
    sub = p.add_subparsers(dest="command", required=True)

    org = sub.add_parser("organism", help="the tiny Qwen3-VL model organism: build, evaluate, draw or export it")
    osub = org.add_subparsers(dest="action", required=True)
    b = osub.add_parser("build", help="train the organism from its seed and save it (default: the shipped copy)")
    b.add_argument("--out", help="folder to save into (default: the package's organism/checkpoint)")
    b.add_argument("--steps", type=positive_int, help="training steps (default: the OrganismConfig value)")
    b.add_argument("--seed", type=nonneg_int, default=42, help="world seed (default 42, the shipped organism's); "
                   "the output names the world folder to use the model with")
    b.add_argument("--exclude", choices=("forget_5", "forget_10", "forget_15"), help="leave this forget split's "
                   "people out of training (photos, questions, biographies): the exact-unlearning oracle, the model "
                   "that never knew them (default out: the package's organism/oracle_forget_N)")
    b.add_argument("--fp32", action="store_true", help="train in float32: on a CPU without AVX512-BF16 the "
                   "shipped recipe's bf16 autocast is tens of times slower (the maths differs in rounding only)")
    b.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2, the shipped build's)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(func=cmd_organism_build)
    e = osub.add_parser("eval", help="measure the organism's quality table")
    _model_args(e, "world folder in MLLMU layout (default: the organism's world, built on demand)", forget=False,
                refusal=False)
    e.add_argument("--strict", action="store_true", help="exit 1 when a threshold is missed")
    e.add_argument("--record", action="store_true", help="store the results in the model folder's organism.json")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=cmd_organism_eval)
    s = osub.add_parser("portraits", help="draw a contact sheet: one row per person, one column per photo")
    s.add_argument("--out", default="runs/organism_portraits.png", help="PNG to write (default "
                   "runs/organism_portraits.png; `--out figures/organism_portraits.png` refreshes the README's)")
    s.add_argument("--people", type=positive_int, default=4, help="rows: the first N people of the world")
    s.add_argument("--photos", type=positive_int, default=6, help="columns: photos per person")
    s.add_argument("--seed", type=nonneg_int, default=42, help="world seed (default 42, the shipped organism's)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=cmd_organism_portraits)
    x = osub.add_parser("export", help="write the organism's world as MLLMU-Bench is laid out on the Hub, and its "
                        "unseen faces DigiFace-style")
    x.add_argument("--out", required=True, help="folder for the MLLMU-Bench copy (Full_Set/train-00000-of-00001.parquet"
                   ", ...)")
    x.add_argument("--faces", required=True, help="folder for the unseen faces (<id>/0.png)")
    x.add_argument("--style", default="template", choices=("template", "free"), help="free: each person's "
                   "generation questions in their own order and every ground truth reworded, as the real benchmark "
                   "reads; A-D and cloze unchanged (default template: the organism's own wording)")
    x.add_argument("--format", default="mllmu", choices=("mllmu", "clear"), help="clear: CLEAR's layout and "
                   "schema (forget05/10, retain95/90, full, the perturbed configs, real_faces, real_world; "
                   "asru_lens.organism.clear) instead of MLLMU-Bench's (default mllmu)")
    x.add_argument("--seed", type=nonneg_int, default=42, help="world seed (default 42, the shipped organism's)")
    x.add_argument("--holdout", metavar="DIR", help="also write the holdout people (never trained on) there, an "
                   "MLLMU folder with a Full_Set: --holdout of run, evaluate and residue")
    x.add_argument("--json", action="store_true", help="print JSON instead of a table")
    x.set_defaults(func=cmd_organism_export)
    pr = sub.add_parser("probe", help="refusal directions at every layer: select one, report held-out AUROC")
    _model_args(pr)
    pr.add_argument("--n", type=positive_int, default=96, help="prompts per set (default 96)")
    pr.add_argument("--figures", help="also save the probe's figures (HTML, PNG where Chromium exists) here")
    pr.add_argument("--out", metavar="DIR", help="save the directions (safetensors) and the summary (JSON) here, "
                    "for steer/unlearn/run --direction DIR")
    pr.add_argument("--json", action="store_true", help="print JSON instead of tables")
    pr.set_defaults(func=cmd_probe)
    st = sub.add_parser("steer", help="steer along the probe's refusal direction and measure what it costs")
    _model_args(st)
    st.add_argument("--layer", type=nonneg_int, help="layer to steer at (default: the probe's choice)")
    st.add_argument("--alpha", type=finite_float, default=1.0, help="strength: alpha * direction (default 1)")
    st.add_argument("--mode", default="add", choices=("add", "ablate", "conditional"))
    st.add_argument("--sweep", action="store_true", help="measure a grid of layers x alphas instead of one point")
    st.add_argument("--alphas", type=finite_floats, default=[0.5, 1.0, 1.5, 2.0, 3.0],
                    help="alphas for --sweep (comma separated, default 0.5,1,1.5,2,3)")
    st.add_argument("--n", type=positive_int, default=48, help="questions per set (default 48)")
    st.add_argument("--direction", metavar="DIR", help="a probe saved by `asru-lens probe --out DIR` (default: "
                   "probe the model first)")
    st.add_argument("--figures", help="with --sweep: save the trade-off figure here")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(func=cmd_steer)
    u = sub.add_parser("unlearn", help="one unlearning method (default ASRU), measured before and after each stage; "
                       "--out saves the model")
    _model_args(u)
    u.add_argument("--method", default="asru", help="a registered method (default asru): "
                   f"{', '.join(_method_names())}; more with --plugin")
    u.add_argument("--plugin", action="append", metavar="FILE", help="a .py file (or module) that registers methods "
                   "with @asru_lens.methods.register (repeatable)")
    g = u.add_mutually_exclusive_group()
    g.add_argument("--lr", type=lr_spec, help="learning rate, e.g. 1e-4 (the method's), or stage1=3e-3,asru=1e-4 for "
                   "each method it trains (default: each method's preset)")
    g.add_argument("--tune", action="store_true", help="pick each learning rate on `run`'s grid by its validation "
                   "rule")
    u.add_argument("--set", action="append", type=setting, metavar="KEY=VALUE", help="a setting of the method's "
                   "config, e.g. --set steps=3 or --set asru.steps=3 (repeatable)")
    u.add_argument("--budget", default="preset", choices=("preset", "full", "small"), help="steps per method: "
                   "preset (default: the model's presets for stage 2), or run's full or small budget")
    u.add_argument("--steps", type=positive_int, help="stage 2 GRPO steps (default: the preset's)")
    u.add_argument("--engine", choices=("ours", "trl"), help="stage 2's loop: ours (default; asru_lens.methods.rl) or "
                   "TRL's GRPOTrainer, which `torchrun` / `accelerate launch -m asru_lens unlearn --engine trl` run "
                   "data-parallel (the first process saves and reports)")
    u.add_argument("--seed", type=nonneg_int, default=0, help="seed of every stage and sample (default 0)")
    u.add_argument("--n", type=positive_int, default=240, help="questions per measured set (default 240: every forget "
                   "and test question)")
    u.add_argument("--direction", metavar="DIR", help="a probe saved by `asru-lens probe --out DIR` (default: "
                   "probe the model first)")
    u.add_argument("--out", help="save the unlearned model here (with its asru_lens.json profile, written atomically)")
    u.add_argument("--checkpoint-dir", help="write stage 2 checkpoints here")
    u.add_argument("--checkpoint-every", type=positive_int, default=25,
                   help="with --checkpoint-dir: steps between them")
    u.add_argument("--oracle", metavar="DIR", help="for --method oracle: the model trained without the forget set "
                   "(default: the one the model folder names; the organism's ships with it)")
    u.add_argument("--json", action="store_true", help="print JSON instead of a table")
    u.set_defaults(func=cmd_unlearn)
    f = sub.add_parser("finetune", help="the vanilla step: fine-tune on MLLMU's Full_Set (or re-teach a split) with "
                       "the authors' LoRA recipe, merge, save")
    _model_args(f, forget=False, refusal=False)
    f.add_argument("--out", required=True, help="folder for the merged model (Lens.save; asru_lens.load reopens it)")
    f.add_argument("--split", help="MLLMU subset to learn (default Full_Set; retain_90: the oracle, the same "
                   "fine-tune without the forget_10 people, for --oracle; forget_10 to re-teach)")
    f.add_argument("--epochs", type=positive_int, help="default 5 (the authors')")
    f.add_argument("--lr", type=finite_float, help="default 5e-4 (the authors'; MLLMU-Bench's own recipe: 2e-5)")
    f.add_argument("--grad-accum", type=positive_int, help="batches per optimiser step (default 1)")
    f.add_argument("--max-steps", type=positive_int, help="stop after this many optimiser steps")
    f.add_argument("--lora-r", type=positive_int, help="LoRA rank (default 16)")
    f.add_argument("--full", action="store_true", help="train the decoder layers in full instead of LoRA adapters")
    f.add_argument("--answer-only", action="store_true", help="loss on the answers only (default: the whole chat "
                   "sequence, as the authors)")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--gradient-checkpointing", dest="gradient_checkpointing", action="store_true", default=None,
                   help="recompute activations in backward (less memory)")
    g.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    f.add_argument("--checkpoint-dir", help="write resumable checkpoints here")
    f.add_argument("--checkpoint-every", type=positive_int, help="with --checkpoint-dir: optimiser steps between them")
    f.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --checkpoint-dir")
    f.add_argument("--seed", type=nonneg_int, help="default 42")
    f.add_argument("--json", action="store_true", help="print JSON instead of a table")
    f.set_defaults(func=cmd_finetune)
    ev = sub.add_parser("evaluate", help="MLLMU-Bench-style evaluation of one model (A-D, generation, cloze, judge)")
    _model_args(ev, refusal=False)
    ev.add_argument("--n", type=positive_int, default=240, help="questions per set and task (default 240)")
    ev.add_argument("--judge", default="rule", help='"rule" (default) or "openai:MODEL" (see `run --help`)')
    ev.add_argument("--seed", type=nonneg_int, default=0, help="seed of the question sample (default 0; as run's)")
    _oracle_args(ev)
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(func=cmd_evaluate)
    rs = sub.add_parser("residue", help="forgotten or hidden? relearning attack, A-D and value probes, logit lens, "
                        "attacks by name, by direction ablation and by benign fine-tuning, on the forget people, for "
                        "vanilla and an unlearned model")
    _model_args(rs, refusal=False)
    rs.add_argument("--vanilla", help="the model before unlearning (default: the shipped organism)")
    rs.add_argument("--steps", type=lambda t: [positive_int(x) for x in t.split(",")],
                    help="relearning steps to read the leak at (default 10,30,100)")
    rs.add_argument("--splits", help="question,person (default both: k folds of the forget facts, by question "
                    "within each person or by person); attribute: the old split by question index")
    rs.add_argument("--folds", type=positive_int, default=2, help="k, the folds of the forget facts (default 2); "
                    "each is held out once")
    rs.add_argument("--no-control", action="store_true", help="skip the control attack on invented facts")
    rs.add_argument("--seed", type=nonneg_int, default=0)
    rs.add_argument("--direction", metavar="DIR", help="a probe saved by `asru-lens probe --out DIR`: its refusal "
                    "direction is also ablated (the attack's second direction)")
    _oracle_args(rs, "none (with one, it is audited too and every recovery is also read against its curve)")
    rs.add_argument("--json", action="store_true", help="print JSON instead of tables")
    rs.set_defaults(func=cmd_residue)
    gl = sub.add_parser("gallery", help="every notebook and the newest run report as static HTML pages: figures "
                        "inlined, readable offline with no kernel")
    gl.add_argument("--out", default="site", help="folder to write, replaced whole (default site/)")
    gl.add_argument("--notebooks", default="notebooks", help="folder of .ipynb files (default notebooks/)")
    gl.add_argument("--report", default="newest", help="run report to include (default: the newest "
                    "runs/*/report.md, when there is one)")
    gl.set_defaults(func=cmd_gallery)
    r = sub.add_parser("run", help="the main job: probe, steer, ASRU, baselines, evaluation, report",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EXAMPLES)
    _model_args(r)
    r.add_argument("--methods", help=f"comma-separated registered methods (default all): "
                   f"{','.join(_method_names())}")
    r.add_argument("--plugin", action="append", metavar="FILE", help="a .py file (or module) that registers methods "
                   "with @asru_lens.methods.register (repeatable)")
    r.add_argument("--save-models", metavar="DIR", help="keep each method's chosen model in DIR/NAME")
    r.add_argument("--direction", metavar="DIR", help="a probe saved by `asru-lens probe --out DIR` (default: "
                   "probe the model first)")
    r.add_argument("--budget", default="full", choices=("full", "small"), help="small: fewer questions, a "
                   "two-point learning-rate grid and no residue (default full)")
    r.add_argument("--steps", type=positive_int, help="stage 2 GRPO steps per learning rate, ASRU's and the "
                   "rewrite's (default: the budget's, full 80, small 40)")
    r.add_argument("--residue", action=argparse.BooleanOptionalAction, default=None, help="relearning attack and "
                   "probes on every method (default: on with the full budget, off with the small one)")
    r.add_argument("--seed", type=nonneg_int, default=0, help="seed of every method and sample (default 0)")
    r.add_argument("--judge", default="rule", help='generation-quality judge: "rule" (default, local) or '
                   '"openai:MODEL" (e.g. openai:gpt-4o-mini, as the authors; key from OPENAI_API_KEY, endpoint '
                   'from OPENAI_BASE_URL), cached on disk')
    r.add_argument("--out", metavar="DIR", help="the run folder: report.md, report.json and figures/ (default "
                   "runs/<date>-seed<seed>/); only --reports, --figures and --save-models write elsewhere")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in its folder (--out, or "
                   "today's default): the methods it finished are read back, the others trained")
    r.add_argument("--reports", metavar="DIR", help="report.md and report.json elsewhere (default: the run folder)")
    r.add_argument("--figures", metavar="DIR", help="the figures elsewhere (default: <run folder>/figures; "
                   "`--figures figures` refreshes the README's)")
    r.add_argument("--workers", type=positive_int, default=1, metavar="N", help="train the (method, learning rate) "
                   "points as N Ray tasks side by side, one GPU each where there are GPUs (default 1: serial, no "
                   "Ray); the table is the serial run's. Needs Ray: pip install 'asru_lens[ray]'")
    r.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (e.g. ray://head:10001 or auto) "
                   "instead of starting one here; the model and data paths must be readable on its nodes")
    _oracle_args(r)
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)      # for the resume hint after Ctrl-C
    try:
        if getattr(args, "model", None):       # a mistyped folder fails now, before the world or torch loads
            from asru_lens.core.source import check_source
            check_source(args.model)
        return args.func(args)
    except (ValueError, RuntimeError) as e:
        # DataError and MethodError are ValueErrors; ModelLoadError is told by name (importing it imports torch)
        if isinstance(e, ValueError) or "ModelLoadError" in {c.__name__ for c in type(e).__mro__}:
            print(f"asru-lens: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
