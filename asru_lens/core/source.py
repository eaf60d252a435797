"""Where a model comes from: a local folder, the Hugging Face cache or the Hub; checked before torch is imported,
so a mistyped folder fails in a second, not after two minutes of Hub retries."""
from __future__ import annotations

import os
from pathlib import Path

ORGANISM_DIR = Path(__file__).parent.parent / "organism" / "checkpoint"
PROFILE_FILE = "asru_lens.json"     # a model folder's protocol, presets and oracle (core.load.read_profile)
# The models shipped in the package, by name, with the command that rebuilds each (a local folder of the same
# name wins): "oracle" is the organism trained without the forget_10 people, the model that never knew them
SHIPPED = {"organism": (ORGANISM_DIR, "asru-lens organism build"),
           "oracle": (ORGANISM_DIR.parent / "oracle_forget_10", "asru-lens organism build --exclude forget_10")}


def shipped(name: str | None) -> str | None:
    """The shipped model ``name`` names (None: the organism), or None for a path or Hub id."""
    if name is None:
        return "organism"
    return str(name) if str(name) in SHIPPED and not os.path.exists(str(name)) else None


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says what was tried and how to fix it."""


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.path.exists(os.path.expanduser(name))


def model_path(model: str | os.PathLike | None) -> tuple[str, str]:
    """(name, where) of a model argument: a shipped model's name and folder (None: the organism), else the
    argument and, for a local path, that path with ``~`` expanded (a Hub id stays as it is)."""
    if shipped(model):
        return shipped(model), str(SHIPPED[shipped(model)][0])
    where = str(model)
    return where, os.path.expanduser(where) if _looks_local(where) else where


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers within ``timeout`` seconds (one request, no retries)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        from huggingface_hub import constants, get_session   # this module stays torch- and Hub-free until asked
        get_session().head(constants.ENDPOINT, timeout=timeout)
        return True
    except Exception:               # no DNS, no route, a timeout: the Hub is out of reach
        return False


_PASSED: set[str] = set()     # names checked once in this process: the CLI checks, then load() checks again


def check_source(name: str) -> None:
    """Fail at once for a model that is neither a local folder nor a cached Hub model when the Hub cannot be
    reached (transformers would retry the Hub for about two minutes before saying so). A name the Hub may still
    hold goes on to ``from_pretrained``, whose error then says what it found."""
    if name in _PASSED or shipped(name):
        return
    if _looks_local(name):
        where = os.path.expanduser(name)
        if not os.path.isdir(where) or not os.path.exists(os.path.join(where, "config.json")):
            raise ModelLoadError(f"model path {where!r} is not a folder with a config.json. Pass the folder "
                                 f"that save_pretrained wrote, or a Hub id such as Qwen/Qwen3-VL-2B-Instruct.")
        _PASSED.add(name)
        return
    try:
        from huggingface_hub import try_to_load_from_cache   # as above: loaded only when a Hub id is checked
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:               # not a valid Hub id at all: certainly not cached
        cached = False
    if not cached and not hub_reachable():
        raise ModelLoadError(f"model {name!r} is not a local folder (no such path), not in the Hugging Face cache, "
                             f"and the Hub cannot be reached. Fix: check the path (a saved model is the folder "
                             f"`--out` wrote, e.g. runs/models/asru), or download the weights where there is network "
                             f"(`hf download {name}`) and pass that folder.")
    _PASSED.add(name)
