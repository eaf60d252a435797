"""The method registry: ``register``, ``get``, ``names``, plugins and entry points (see ``asru_lens.methods``)."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

PACKAGE = "asru_lens.methods"         # where the built-in method modules live
ENTRY_POINT_GROUP = "asru_lens.methods"
PALETTE = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
           "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


@dataclass(frozen=True)
class Method:
    name: str
    train: Callable
    paper: bool = False
    baseline: bool = False
    config: type | None = None
    tuned: bool = True
    after: str | None = None
    uses: tuple = ()
    presets: str | None = None
    colour: str | None = None
    doc: str = ""
    finish: Callable | None = None

    @property
    def summary(self) -> str:
        """The first line of its docstring."""
        return (self.doc.strip().splitlines() or [""])[0]


REGISTRY: dict[str, Method] = {}


class MethodError(ValueError):
    """An unknown method name, a plugin that does not import, or a method's settings that do not fit."""


def register(name: str, *, paper: bool = False, baseline: bool = False, config: type | None = None,
             tuned: bool = True, after: str | None = None, uses: tuple = (), presets: str | None = None,
             colour: str | None = None, finish: Callable | None = None):
    """Decorator: register ``fn(ctx) -> dict`` as the unlearning method ``name`` (see the module docstring)."""
    if not name or not isinstance(name, str) or "," in name or name != name.strip():
        raise MethodError(f"method name {name!r}: use a non-empty name without commas or surrounding spaces.")

    def deco(fn):
        if name in REGISTRY and REGISTRY[name].train is not fn:
            old = REGISTRY[name].train
            if (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
                raise MethodError(f"method {name!r} is already registered (by {old.__module__}); pick another name.")
        REGISTRY[name] = Method(name, fn, paper, baseline, config, tuned, after, tuple(uses), presets or name,
                                colour, fn.__doc__ or "", finish)
        return fn
    return deco


def get(name: str) -> Method:
    """The registered method ``name``, or a MethodError that lists the known ones."""
    if name not in REGISTRY and name not in ORDER:
        raise MethodError(f"unknown method {name!r}: choose from {', '.join(_known())} (or register your own with "
                          f"@asru_lens.methods.register and pass --plugin FILE).")
    if name not in REGISTRY:
        importlib.import_module(f"{PACKAGE}.{MODULES[name]}")     # just its module: a quick check stays quick
    if name not in REGISTRY:
        raise MethodError(f"unknown method {name!r}: choose from {', '.join(names())} (or register your own with "
                          f"@asru_lens.methods.register and pass --plugin FILE).")
    return REGISTRY[name]


# the built-in methods in the run's row order (whatever order their modules were imported in; plugins follow),
# and the module that registers each
MODULES = {"vanilla": "vanilla", "oracle": "oracle", "GA": "ga", "GD": "gd", "KL": "kl", "NPO": "npo", "IDK": "idk",
           "MMUnlearner": "mmunlearner", "RMU": "rmu", "steer": "steering", "stage1": "asru", "asru": "asru",
           "rewrite": "rewrite"}
ORDER = tuple(MODULES)


def names(paper: bool | None = None) -> tuple[str, ...]:
    """Registered method names, the built-in ones in ``ORDER``, then the others in registration order
    (``paper=True``: the paper's comparison only)."""
    _builtins()
    ordered = [n for n in ORDER if n in REGISTRY] + [n for n in REGISTRY if n not in ORDER]
    return tuple(n for n in ordered if paper is None or REGISTRY[n].paper == paper)


def _known() -> list[str]:
    """Every method name known without importing the built-in modules (a bad name is refused in a blink)."""
    return list(ORDER) + [n for n in REGISTRY if n not in ORDER]


def check(names_: list[str] | tuple) -> tuple[str, ...]:
    """``names_`` as a tuple of registered methods (dependencies are fine to leave out), or one MethodError."""
    names_ = tuple(names_)
    unknown = [n for n in names_ if n not in _known()]
    if unknown or not names_:
        raise MethodError(f"unknown method(s) {', '.join(map(repr, unknown)) or '(none given)'}: choose from "
                          f"{', '.join(_known())}.")
    return names_


def chain(name: str) -> list[str]:
    """The methods fitted in turn to get ``name``: the ones it comes ``after``, then itself."""
    out = [name]
    while get(out[0]).after:
        out.insert(0, get(out[0]).after)
    return out


def colour(name: str) -> str:
    """The method's figure colour: its own, else the palette's entry for its place in the registry."""
    _builtins()
    m = REGISTRY.get(name)
    if m is not None and m.colour:
        return m.colour
    order = list(names())
    return PALETTE[(order.index(name) if name in order else len(order)) % len(PALETTE)]


def load_plugin(path: str) -> list[str]:
    """Import a method file (a ``.py`` path) or module name; returns the methods it registered. A file that is
    missing or fails to import is one MethodError naming it and its error."""
    p = Path(path)
    if p.suffix == ".py" and not p.is_file():
        raise MethodError(f"--plugin {path}: no such file. Pass a .py file that registers a method with "
                          f"@asru_lens.methods.register, or an importable module name.")
    _builtins()
    before = set(REGISTRY)
    try:
        if p.suffix == ".py" or p.exists():
            name = f"asru_lens_plugin_{p.stem}"
            spec = importlib.util.spec_from_file_location(name, p)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(path)
    except MethodError:
        raise
    except Exception as e:                     # a plugin's own bug: name the file and the error, nothing more
        raise MethodError(f"--plugin {path} failed to import: {type(e).__name__}: {e}") from None
    return sorted(set(REGISTRY) - before)


def load_entry_points() -> list[str]:
    """Import every module advertised in the ``asru_lens.methods`` entry-point group; returns the new methods."""
    before = set(REGISTRY)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:
            raise MethodError(f"entry point {ep.name!r} ({ep.value}) in group {ENTRY_POINT_GROUP} failed to "
                              f"import: {type(e).__name__}: {e}") from None
    return sorted(set(REGISTRY) - before)


_LOADED = []


def _builtins() -> None:
    """Import the built-in method modules once (each registers itself), then the entry points."""
    if _LOADED:
        return
    _LOADED.append(True)
    for module in dict.fromkeys(MODULES.values()):
        importlib.import_module(f"{PACKAGE}.{module}")
    load_entry_points()
