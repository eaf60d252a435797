"""Random-weight Qwen3-VL models at the released widths, for testing and sizing the real path offline.

``CONFIGS`` holds the text and vision settings of Qwen/Qwen3-VL-2B-, 4B- and 8B-Instruct (their config.json;
widths, heads, DeepStack layers and RoPE as released). ``random_model`` builds one with fewer text layers and
vision blocks and random weights, and ``real_processor`` gives it an image processor at Qwen3-VL's released
pixel settings (16-pixel patches, 2x2 merge, at least 256x256 pixels): every code path is then the one a real
checkpoint takes, at its real tensor sizes, with nothing downloaded. The tokenizer is the organism's (Qwen's
is not at hand offline), so the vocabulary is its 1,536 ids unless ``vocab_size`` asks for the real 151,936.
"""
from __future__ import annotations

import torch

from asru_lens.core.load import ORGANISM_DIR, Lens

_ROPE = {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True}
_VISION = dict(hidden_size=1024, intermediate_size=4096, num_heads=16, patch_size=16, spatial_merge_size=2,
               temporal_patch_size=2, num_position_embeddings=2304, hidden_act="gelu_pytorch_tanh", depth=24,
               deepstack_visual_indexes=[5, 11, 17])
CONFIGS = {
    "2B": {"text": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                        num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
           "vision": dict(_VISION, out_hidden_size=2048)},
    "4B": {"text": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                        num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
           "vision": dict(_VISION, out_hidden_size=2560)},
    "8B": {"text": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                        num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
           "vision": dict(_VISION, hidden_size=1152, intermediate_size=4304, depth=27, out_hidden_size=4096,
                          deepstack_visual_indexes=[8, 16, 24])},
}
QWEN_VOCAB = 151_936
MIN_PIXELS, MAX_PIXELS = 256 * 256, 4096 * 4096       # Qwen3-VL's released shortest/longest edge, in pixels


def real_processor(tokenizer_from=None):
    """A Qwen3VLProcessor with the released image settings and the organism's tokenizer and chat template
    (``tokenizer_from``: a processor to take them from; default the shipped organism's)."""
    # transformers loads only when a model is built
    from transformers import AutoProcessor, Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    base = tokenizer_from or AutoProcessor.from_pretrained(ORGANISM_DIR)
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    image = Qwen2VLImageProcessor(size=size, patch_size=16, merge_size=2, temporal_patch_size=2,
                                  image_mean=[0.5] * 3, image_std=[0.5] * 3)
    video = Qwen3VLVideoProcessor(size=size, patch_size=16, merge_size=2, temporal_patch_size=2)
    return Qwen3VLProcessor(image_processor=image, tokenizer=base.tokenizer, video_processor=video,
                            chat_template=base.chat_template)


def config(size: str, text_layers: int | None = None, vision_blocks: int | None = None, tokenizer=None,
           vocab_size: int | None = None):
    """A ``Qwen3VLConfig`` at ``size``'s widths, cut to ``text_layers`` / ``vision_blocks`` (None: full depth).
    DeepStack layers beyond a cut vision tower move to its first blocks, so DeepStack stays in the path."""
    from transformers import Qwen3VLConfig  # transformers loads only when a model is built
    if size not in CONFIGS:
        raise ValueError(f"size {size!r} is not one of {', '.join(CONFIGS)}.")
    text, vision = dict(CONFIGS[size]["text"]), dict(CONFIGS[size]["vision"])
    if text_layers:
        text["num_hidden_layers"] = text_layers
    if vision_blocks:
        vision["depth"] = vision_blocks
        vision["deepstack_visual_indexes"] = list(range(min(vision_blocks, len(vision["deepstack_visual_indexes"]))))
    ids = {}
    if tokenizer is not None:
        ids = {k: tokenizer.convert_tokens_to_ids(t) for k, t in (
            ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
        text.update(eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id)
    text.update(vocab_size=vocab_size or (len(tokenizer) if tokenizer is not None else QWEN_VOCAB),
                rms_norm_eps=1e-6, max_position_embeddings=262144, rope_parameters=dict(_ROPE))
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=text["tie_word_embeddings"],
                         **ids)


def random_model(size: str, text_layers: int | None = None, vision_blocks: int | None = None, *, processor=None,
                 vocab_size: int | None = None, dtype=torch.float32, device="cpu", seed: int = 0):
    """(model, processor): random weights at ``size``'s widths (see ``config``), built on ``device``."""
    from transformers import Qwen3VLForConditionalGeneration  # transformers loads only when a model is built
    processor = processor or real_processor()
    cfg = config(size, text_layers, vision_blocks, processor.tokenizer, vocab_size)
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen3VLForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(old)
    model.generation_config.eos_token_id = cfg.text_config.eos_token_id
    model.generation_config.pad_token_id = cfg.text_config.pad_token_id
    return model.eval(), processor


def lens(size: str, text_layers: int | None = None, vision_blocks: int | None = None, **kw):
    """A ``Lens`` over ``random_model``: the paper's protocol, a real model's presets (LoRA stages)."""
    model, processor = random_model(size, text_layers, vision_blocks, **kw)
    return Lens(model, processor, f"random Qwen3-VL-{size}")
