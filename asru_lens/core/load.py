"""``asru_lens.core.load``: the organism or a real Qwen3-VL, as one ``Lens`` object.

A Lens holds the HF model, its processor and an nnsight wrapper over the *same*
model object, plus the few helpers every stage needs: chat prompts with images,
the decoder layers, the post-instruction token positions and batched greedy
generation.
"""
from __future__ import annotations

import os
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from asru_lens.core.atomic import atomic_dir
from asru_lens.core.data import DataError, decode_image
from asru_lens.core.protocol import Protocol
from asru_lens.core.source import (ORGANISM_DIR, PROFILE_FILE, SHIPPED, ModelLoadError,  # noqa: F401
                                   _looks_local, check_source, model_path, shipped)

# A model folder may say how it is asked and trained: {"protocol": {...}, "presets": {...}} (Protocol's fields;
# presets for stage 1 "redirect", stage 2 "grpo", "trainable" "layers" | "lora", "finetune"). Without it a
# model is a real Qwen3-VL: the paper's protocol and the authors' settings.
DTYPES = ("float32", "bfloat16", "float16", "auto")


@dataclass
class Lens:
    model: torch.nn.Module
    processor: object
    name: str = "organism"
    protocol: Protocol = field(default_factory=Protocol)   # how this model is asked (asru_lens.core.protocol)
    presets: dict = field(default_factory=dict)            # its training presets ({} = the authors' settings)
    batch_size: int | None = None                          # None: each function's own default
    steering: object = None                                # a Steering always on (a saved steered model), or None
    oracle: str | None = None                              # the model trained without its forget set (core.oracle)
    _nn: object = field(default=None, repr=False)

    # -- structure -------------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def layers(self) -> list[torch.nn.Module]:
        """The language model's decoder layers, ``model.model.language_model.layers``."""
        return list(self.model.model.language_model.layers)

    @property
    def n_layers(self) -> int:
        return len(self.model.model.language_model.layers)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def nn(self):
        """nnsight ``TransformersModel`` wrapping this very model (built on first use)."""
        if self._nn is None:
            from nnsight.modeling.transformers import TransformersModel  # nnsight loads on the first trace
            without_hub_kernels(self.model)
            self._nn = TransformersModel(self.model, task="image-text-to-text", processor=self.processor,
                                         tokenizer=self.processor.tokenizer)
        return self._nn

    # -- prompts ---------------------------------------------------------------------------------------------
    @property
    def is_organism(self) -> bool:
        return self.protocol.name == "organism"

    @staticmethod
    def messages(question: str, image=None, shots: list | None = None) -> list[dict]:
        """Chat messages: each (question, image, answer) of ``shots`` as a solved user/assistant turn, then the
        question."""
        def user(q, im):
            return {"role": "user", "content": ([{"type": "image"}] if im is not None else []) +
                    [{"type": "text", "text": q}]}
        turns = []
        for q, im, a in shots or []:
            turns += [user(q, im), {"role": "assistant", "content": [{"type": "text", "text": a}]}]
        return turns + [user(question, image)]

    def prompt(self, question: str, image=None, shots: list | None = None) -> str:
        """The chat-template prompt string, ending with the assistant header."""
        return self.processor.apply_chat_template(self.messages(question, image, shots), add_generation_prompt=True,
                                                  tokenize=False)

    def encode(self, questions: list[str], images: list | None = None, shots: list | None = None):
        """Left-padded processor batch for ``questions``; ``images`` may hold None for text-only prompts;
        ``shots`` (question, image, answer) are solved examples put before every question."""
        if not questions:
            raise ValueError("encode() got an empty list of questions; pass at least one prompt.")
        images = images if images is not None else [None] * len(questions)
        if len(images) != len(questions):
            raise ValueError(f"got {len(questions)} questions but {len(images)} images; pass one image "
                             f"(or None) per question.")
        images = [_as_image(im, i) for i, im in enumerate(images)]
        shots = [(q, _as_image(im, -1), a) for q, im, a in shots or []]
        texts = [self.prompt(q, im, shots) for q, im in zip(questions, images)]
        shot_imgs = [im for _, im, _ in shots if im is not None]
        imgs = [x for im in images for x in shot_imgs + ([im] if im is not None else [])]
        self.tokenizer.padding_side = "left"
        enc = self.processor(text=texts, images=imgs or None, return_tensors="pt", padding=True)
        return enc.to(self.device)

    def post_instruction_tokens(self) -> list[str]:
        """Template tokens after the user's text (``<|im_end|>\\n<|im_start|>assistant\\n`` on Qwen)."""
        marker = "XYZMARKER"
        text = self.prompt(marker)
        suffix = text[text.index(marker) + len(marker):]
        ids = self.tokenizer(suffix, add_special_tokens=False)["input_ids"]
        return self.tokenizer.convert_ids_to_tokens(ids)

    def post_instruction_positions(self) -> list[int]:
        """Negative offsets of the post-instruction tokens; with left padding they index every row."""
        n = len(self.post_instruction_tokens())
        return list(range(-n, 0))

    # -- generation ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, questions: list[str], images: list | None = None, max_new_tokens: int | None = None,
                 batch_size: int | None = None, progress: bool = False, desc: str = "generate",
                 min_new_tokens: int = 0, shots: list | None = None) -> list[str]:
        """Greedy answers, decoded without special tokens (``min_new_tokens`` holds off EOS, for timing).
        ``batch_size``: default ``self.batch_size``, else 64; ``max_new_tokens``: default the protocol's answer
        budget (``self.protocol.max_new_tokens``, the one generation budget)."""
        max_new_tokens = max_new_tokens or self.protocol.max_new_tokens
        images = images if images is not None else [None] * len(questions)
        batch_size = batch_size or self.batch_size or 64
        out = []
        for i in tqdm(range(0, len(questions), batch_size), desc=desc, disable=not progress, leave=False):
            enc = self.encode(questions[i:i + batch_size], images[i:i + batch_size], shots)
            ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                                      do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
            out += self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return [o.strip() for o in out]


    # -- saving --------------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """``save_pretrained`` the model and its processor into ``path``, which ``load(path)`` reopens.

        Written into a temp folder beside ``path`` and renamed into place: a failed or interrupted save leaves
        the previous folder (or none), never a half-written one."""
        profile = {"protocol": self.protocol.as_dict(), "presets": self.presets,
                   **({"oracle": self.oracle} if self.oracle else {})}
        with atomic_dir(path) as tmp:
            self.model.save_pretrained(tmp)
            self.processor.save_pretrained(tmp)
            if self.steering is not None:      # a steered model: the steering travels with the weights
                # a steered model's profile holds interpret's Steering (only then)
                from asru_lens.interpret.steer import save_steering
                profile["steering"] = save_steering(self.steering, tmp)
            (tmp / PROFILE_FILE).write_text(json.dumps(profile, indent=1))
        return Path(path)


def without_hub_kernels(model: torch.nn.Module) -> torch.nn.Module:
    """Turn off transformers' hub kernels (``use_kernels``) on ``model``, in place, and return it.

    Why: from transformers 5.25 ``from_pretrained`` kernelizes by default, and every ``model.train()`` /
    ``.eval()`` then kernelizes again, which writes a new ``forward`` into each ``@use_kernel_forward_from_hub``
    module (Qwen3-VL's RMSNorms). That overwrites the forward nnsight installed, so a trace after any training
    step never sees ``language_model.norm`` and fails with "was requested but the model already ran past it".
    Nothing here needs hub kernels (they would be downloaded at run time, and only exist for GPUs).
    """
    if getattr(model, "use_kernels", False):
        model.use_kernels = False      # puts the torch forwards back, before nnsight wraps them
    return model


def _as_image(image, index: int):
    """A PIL image from a PIL image or a file path; a clear error for anything missing or unreadable."""
    if image is None or hasattr(image, "convert"):
        return image
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise DataError(f"prompt {index}: image file {str(image)!r} does not exist. Fix the path or pass a "
                            f"PIL image.")
        return decode_image(str(image), f"prompt {index}: image file {str(image)!r}")
    raise TypeError(f"prompt {index}: image must be a PIL image, a file path or None, not {type(image).__name__}.")


def read_profile(folder: str | os.PathLike) -> tuple[Protocol, dict]:
    """(protocol, presets) from a model folder's ``asru_lens.json``; the paper's protocol and no presets
    without one."""
    path = Path(folder) / PROFILE_FILE
    if not path.is_file():
        return Protocol(), {}
    try:
        prof = json.loads(path.read_text())
        return Protocol.from_dict(prof.get("protocol", {})), dict(prof.get("presets", {}))
    except (ValueError, TypeError, AttributeError) as e:
        raise ModelLoadError(f"{path} is not a valid asru_lens profile ({e}). Fix or delete it (without it the "
                             f"model is asked with the paper's protocol).") from None


def text_layers(model: str | os.PathLike | None) -> int:
    """Number of decoder layers, read from the config alone (no weights): lets the CLI check a ``--layer``
    before any model work."""
    name, where = model_path(model)
    if os.path.isdir(where):
        path = os.path.join(where, "config.json")
        if not os.path.isfile(path):
            raise ModelLoadError(f"model path {where!r} is not a folder with a config.json. Pass the folder that "
                                 f"save_pretrained wrote, or a Hub id such as Qwen/Qwen3-VL-2B-Instruct.")
        cfg = json.loads(Path(path).read_text())
        return int(cfg.get("text_config", cfg)["num_hidden_layers"])
    if _looks_local(name):
        raise ModelLoadError(f"model path {where!r} is not a folder with a config.json. Pass the folder that "
                             f"save_pretrained wrote, or a Hub id such as Qwen/Qwen3-VL-2B-Instruct.")
    try:
        from transformers import AutoConfig  # transformers loads after the arguments are checked
        cfg = AutoConfig.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not read the config of model {name!r} as a Hugging Face Hub id (the Hub or "
                             f"its local cache). Fix: download it on a machine with network access (e.g. `hf "
                             f"download {name}`) and pass the local folder. Cause: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]}") from None
    return int(getattr(cfg, "text_config", cfg).num_hidden_layers)


def check_dtype(dtype) -> None:
    if dtype is not None and not isinstance(dtype, torch.dtype) and dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}.")


def load(model: str | os.PathLike | None = None, *, dtype: str | torch.dtype | None = None,
         device_map: str | dict | None = None, device: str | None = None, batch_size: int | None = None) -> Lens:
    """Load the shipped organism (``model=None``), a shipped model by name (``"oracle"``: ``SHIPPED``) or a
    Qwen3-VL by local path or Hub id.

    ``dtype`` ("float32", "bfloat16", "float16", "auto") and ``device_map`` ("auto", "cuda:0", ...) go to
    ``from_pretrained``; ``device`` moves the model afterwards when no ``device_map`` is given; ``batch_size``
    becomes every stage's default batch. The folder's ``asru_lens.json``, if any, sets the protocol and
    presets (the organism's does).
    """
    # transformers loads after the arguments are checked
    from transformers import AutoModelForImageTextToText, AutoProcessor

    name, where = model_path(model)
    if shipped(model):
        if not (Path(where) / "model.safetensors").exists():
            raise ModelLoadError(f"the shipped {name} checkpoint is missing from {where}. "
                                 f"Rebuild it with `{SHIPPED[name][1]}`, or reinstall asru_lens.")
    else:
        check_source(name)
    check_dtype(dtype)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: use a positive number of prompts per batch.")
    kwargs = {"use_kernels": False}     # see without_hub_kernels: kernelizing replaces the forwards nnsight traces
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        processor = AutoProcessor.from_pretrained(where)
        hf = AutoModelForImageTextToText.from_pretrained(where, **kwargs)
    except (OSError, ValueError, EnvironmentError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise ModelLoadError(
            f"could not load model {name!r}: tried it as a local folder ({where!r} "
            f"{'exists' if os.path.isdir(where) else 'does not exist'}) and as a Hugging Face Hub id "
            f"({'offline mode' if offline else 'the Hub or its local cache'}). "
            f"Fix: download the weights on a machine with network access (e.g. `hf download {name}`) and pass "
            f"the local folder, or check the spelling. Cause: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        ) from None
    if device is not None and device_map is None:
        hf = hf.to(device)
    hf.eval()
    protocol, presets = read_profile(where) if os.path.isdir(where) else (Protocol(), {})
    lens = Lens(hf, processor, name, protocol, presets, batch_size)
    prof = Path(where) / PROFILE_FILE
    if os.path.isdir(where) and prof.is_file():     # the oracle it names travels with every model saved from it
        lens.oracle = json.loads(prof.read_text()).get("oracle")
    if os.path.isdir(where) and prof.is_file() and "steering" in json.loads(prof.read_text()):
        # a steered model's profile holds interpret's Steering (only then)
        from asru_lens.interpret.steer import attach, load_steering
        attach(lens, load_steering(json.loads(prof.read_text())["steering"], where))
    return lens
