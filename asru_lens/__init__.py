"""asru_lens: probe, steer and unlearn Qwen3-VL, after ASRU (arXiv 2605.15687).

    import asru_lens
    lens = asru_lens.load()            # the shipped model organism
    lens = asru_lens.load("Qwen/Qwen3-VL-2B-Instruct", dtype="bfloat16")
    world = asru_lens.open_world()     # the organism's world; or open_world("/data/MLLMU-Bench",
                                       #   unseen_faces="/data/digiface")

The library is in subpackages by role: ``core`` (load, world, data, protocol, sets, training, oracle),
``interpret`` (activations, probe, steer), ``methods`` (one module per unlearning method, and the registry),
``measure`` (evaluate, residue, attacks, facts, judge, metrics, privacy) and ``show`` (viz, widgets, gallery); ``organism`` is one provider of a model
and a world. The short names still import: ``from asru_lens import probe, steer`` is ``asru_lens.interpret``'s.
"""
import importlib
import importlib.abc
import importlib.util
import sys


def __getattr__(name):
    # Lens, ModelLoadError and load on first use: the CLI refuses a bad argument before torch is imported
    if name in ("Lens", "ModelLoadError", "load"):
        from asru_lens.core import load as _load
        return getattr(_load, name)
    raise AttributeError(f"module 'asru_lens' has no attribute {name!r}")


# short name -> the module's place in the subpackages (``from asru_lens import probe`` as the notebooks write it)
SHORT_NAMES = {
    **{m: f"core.{m}" for m in ("world", "data", "protocol", "sets", "unseen", "atomic", "checkpoint", "qwen3vl",
                                "finetune", "training", "oracle")},
    "adapters": "core.training",
    **{m: f"interpret.{m}" for m in ("activations", "probe", "steer")},
    **{m: f"methods.{m}" for m in ("redirect", "rl", "boundary", "reward", "trl_export", "rewrite",
                                    "rewrite_set", "baselines")},
    **{m: f"measure.{m}" for m in ("evaluate", "residue", "attacks", "facts", "judge", "metrics", "refusal",
                                    "privacy")},
    **{m: f"show.{m}" for m in ("viz", "widgets", "gallery")},
}


class _ShortNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``asru_lens.<short>`` as the same module object as its subpackage path (one module, two names)."""

    def find_spec(self, fullname, path=None, target=None):
        short = fullname.removeprefix(__name__ + ".")
        if short in SHORT_NAMES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{SHORT_NAMES[spec.name.removeprefix(__name__ + '.')]}")

    def exec_module(self, module):
        pass


if not any(isinstance(f, _ShortNames) for f in sys.meta_path):
    sys.meta_path.append(_ShortNames())

__version__ = "0.1.0"
__all__ = ["Lens", "ModelLoadError", "load", "open_world", "__version__"]


def open_world(data=None, *, unseen_faces=None, refusal_prompts=None, holdout=None):
    """The world every command works on (``asru_lens.core.world.World``), from the provider that fits ``data``:

    * ``None``: the model organism's own world (built into the cache on first use);
    * a folder the organism wrote (``world.json`` + ``Unknown_Faces.parquet``): the organism's world there;
    * a CLEAR download (``forget05/``, ``retain95/``, ``real_faces/`` ... as the Hub lays ``therem/CLEAR`` out):
      ``asru_lens.core.clear.ClearWorld``;
    * any other folder: a plain MLLMU-Bench download (flat or Hub layout).

    ``unseen_faces`` (a folder of face images, flat or ``<id>/0.png``) or ``refusal_prompts`` (a JSONL file)
    give ASRU's refusal set; a plain MLLMU-Bench folder needs one of them for the probe. Files are checked
    here, before any model work. ``holdout``: an MLLMU folder of people the model never trained on, the
    non-members of membership inference (the organism's world brings its own)."""
    # the world modules load here, not with the package: `import asru_lens` stays light for the CLI's checks
    from asru_lens.core.clear import ClearWorld
    from asru_lens.core.data import DataError
    from asru_lens.core.world import World
    from asru_lens.organism.provider import OrganismWorld, default_world
    if data is None:
        return default_world(unseen_faces, refusal_prompts, holdout)
    if OrganismWorld.recognises(data):
        return OrganismWorld(data, unseen_faces, refusal_prompts, holdout)
    if ClearWorld.recognises(data):
        return ClearWorld(data, unseen_faces, refusal_prompts, holdout)
    try:
        return World(data, unseen_faces, refusal_prompts, holdout)
    except DataError as e:
        if "subset 'Full_Set'" not in str(e):
            raise
        raise DataError(f"{data} is neither benchmark's layout: looked for MLLMU-Bench's (Full_Set.parquet or "
                        f"Full_Set/*.parquet, with forget_10, retain_90, Test_Set, Retain_Set ...) and CLEAR's "
                        f"(forget05/, retain95/, real_faces/, retain_perturbed/ ..., each with train-*.parquet). "
                        f"{str(e).split('. ', 1)[-1]}") from None
