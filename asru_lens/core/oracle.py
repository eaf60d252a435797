"""The oracle: the model trained without the forget set, the exact unlearning every method aims at (TOFU's and
MUSE's "retain" model). Which one a model has, whether it fits, and its weights.

A model folder names its oracle in its ``asru_lens.json`` (``{"oracle": "oracle"}`` in the shipped organism's:
the package's ``organism/oracle_forget_10``); ``--oracle DIR`` names any other (for a real model, the vanilla
fine-tune's recipe on the retain split only: ``asru-lens finetune --split retain_90 --out DIR``). The oracle's
likelihoods are compared with the model's token for token, so the two must share the architecture and the
tokenizer: ``check_oracle`` reads both folders' ``config.json`` and ``tokenizer.json``, no weights, and says
within a second what differs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from asru_lens.core.source import SHIPPED, ModelLoadError, _looks_local, model_path, shipped
# the config entries that fix the weights' shapes (text and vision towers); the rest (dtype, paths) may differ
SHAPE_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim", "vocab_size", "depth", "out_hidden_size", "patch_size",
              "spatial_merge_size")


class OracleError(ModelLoadError):
    """An oracle that is missing or does not fit the model; the message says what differs and what to do."""


def folder(model) -> Path | None:
    """The local folder of a model argument (a shipped name, a path), or None for a Hub id."""
    name, where = model_path(model)
    return Path(where) if shipped(model) or _looks_local(name) else None


def _shapes(cfg: dict) -> dict:
    out = {"architectures": cfg.get("architectures")}
    for part in ("", "text_config", "vision_config"):
        sub = cfg.get(part, {}) if part else cfg
        out.update({f"{part or 'model'}.{k}": sub[k] for k in SHAPE_KEYS if isinstance(sub, dict) and k in sub})
    return out


def _vocab_hash(where: Path) -> str | None:
    path = where / "tokenizer.json"
    if not path.is_file():
        return None
    model = json.loads(path.read_text()).get("model", {})
    return hashlib.sha1(json.dumps(model, sort_keys=True).encode()).hexdigest()


def check_oracle(model, oracle) -> None:
    """Raise an ``OracleError`` unless ``oracle`` is a model folder with ``model``'s architecture (every shape in
    ``config.json``) and tokenizer (``tokenizer.json``'s vocabulary). Reads two small files per folder; a Hub
    id is checked when it loads."""
    where_m, where_o = folder(model), folder(oracle)
    if where_o is None:
        return
    if shipped(oracle) and not (where_o / "model.safetensors").is_file():
        raise OracleError(f"--oracle {oracle}: the shipped oracle is missing from {where_o}. Build it with "
                          f"`{SHIPPED[shipped(oracle)][1]}` (about 9 minutes on 2 cores), or pass --oracle DIR.")
    if not (where_o / "config.json").is_file():
        raise OracleError(f"--oracle {oracle}: {where_o} is not a model folder (no config.json). Pass the folder "
                          f"that `asru-lens finetune --split retain_90 --out DIR` (or save_pretrained) wrote.")
    if where_m is None or not (where_m / "config.json").is_file():
        return
    a, b = (_shapes(json.loads((w / "config.json").read_text())) for w in (where_m, where_o))
    differ = [f"{k}: {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if differ:
        raise OracleError(f"--oracle {oracle} does not fit --model {model}: their architectures differ "
                          f"({'; '.join(differ[:4])}). The oracle must be the same model fine-tuned without the "
                          f"forget set (`asru-lens finetune --split retain_90`), so that their likelihoods compare.")
    ha, hb = _vocab_hash(where_m), _vocab_hash(where_o)
    if ha is not None and hb is not None and ha != hb:
        raise OracleError(f"--oracle {oracle} does not fit --model {model}: their tokenizers differ "
                          f"(tokenizer.json's vocabularies), so the truth ratios and membership scores would "
                          f"compare different tokens. Build the oracle from the same base model and processor.")


def oracle_weights(lens, oracle) -> dict:
    """The oracle's weights as a state dict of ``lens.model``'s keys, dtype and device, after ``check_oracle``."""
    from asru_lens.core.load import load       # the weights load after the files are checked
    check_oracle(lens.name, oracle)
    other = load(oracle)
    ours = lens.model.state_dict()
    theirs = other.model.state_dict()
    if set(ours) != set(theirs) or any(ours[k].shape != theirs[k].shape for k in ours):
        raise OracleError(f"--oracle {oracle}: its weights do not match the model's ({len(set(ours) ^ set(theirs))} "
                          f"parameter names differ). Pass the same architecture fine-tuned without the forget set.")
    return {k: v.detach().to(ours[k].dtype).to(ours[k].device).clone() for k, v in theirs.items()}


def resolve(lens, oracle="auto", say=None):
    """The oracle a command uses: weights (a dict) as they are; a folder or shipped name once ``check_oracle``
    passes; ``"auto"``: the one the model names (``lens.oracle``, read from its folder's ``asru_lens.json`` by
    ``core.load.load``), or None
    when it names none or that one is not built (``say`` is told why); None: none."""
    if oracle is None or isinstance(oracle, dict):
        return oracle
    if oracle != "auto":
        check_oracle(lens.name, oracle)
        return oracle
    oracle = getattr(lens, "oracle", None)      # what the model folder's asru_lens.json names (core.load.load)
    if oracle is None:
        return None
    try:
        check_oracle(lens.name, oracle)
    except OracleError as e:
        if say:
            say(f"note: {e}")
        return None
    return oracle
