"""LoRA adapters on the language model's linear layers, and gradient checkpointing, for every trained stage.

The authors fine-tune Qwen3-VL with LoRA (r=16, alpha=16, dropout 0.05) on *every linear layer of the language
model*: ``q/k/v/o_proj`` and ``gate/up/down_proj`` of each decoder layer, never the vision tower or the merger.
``add_lora`` does that through peft; ``merge`` folds the adapters back into plain weights (``merge_and_unload``)
so the result saves and loads as an ordinary Qwen3-VL.

A real 2-8B model trains through adapters (``trainable="lora"``); the 3.6M-parameter organism trains its
decoder layers in full (``"layers"``, its preset).
"""
from __future__ import annotations

LM_LINEAR = r".*language_model\.layers\.\d+\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj"
TRAINABLE = ("lora", "layers")


def re_lm_linear(name: str) -> bool:
    """Whether a parameter name belongs to one of the language model's linear layers (LoRA's targets)."""
    import re
    return bool(re.match(LM_LINEAR + r"\.(weight|bias)$", name))


def check_trainable(trainable: str) -> str:
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable={trainable!r} must be 'lora' (adapters on the language model's linear layers) "
                         f"or 'layers' (its decoder layers in full).")
    return trainable


def add_lora(model, r: int = 16, alpha: int = 16, dropout: float = 0.05):
    """The peft model with fresh adapters on every linear layer of the language model (only they train)."""
    from peft import LoraConfig, get_peft_model
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LM_LINEAR))


def merge(lens, policy) -> None:
    """Fold ``policy``'s adapters into the weights and put the plain model back in ``lens`` (same class)."""
    lens.model = policy.merge_and_unload()
    lens._nn = None            # the nnsight wrapper held the old module tree


def layer_params(model) -> dict:
    """The language model's decoder-layer parameters, by their names in ``model``."""
    return {f"model.language_model.layers.{k}": p for k, p in model.model.language_model.layers.named_parameters()}


def gradient_checkpointing(model, on: bool = True) -> None:
    """Recompute activations in the backward pass (memory for time); needed at 2-8B on one GPU."""
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    else:
        model.gradient_checkpointing_disable()
