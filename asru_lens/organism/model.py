"""The organism's tokenizer, processor and tiny Qwen3-VL config.

The model is the real ``Qwen3VLForConditionalGeneration`` (mRoPE, DeepStack and
all), shrunk to a few million parameters. The tokenizer is our own byte-level BPE
trained on the world's text, carrying Qwen's special tokens and a Qwen-style chat
template, so ``processor.apply_chat_template`` builds exactly the prompt layout
a real Qwen3-VL sees.
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (PreTrainedTokenizerFast, Qwen2VLImageProcessor, Qwen3VLConfig,
                          Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor)

from asru_lens.organism.portraits import SIZE

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
VOCAB_SIZE = 1536

# Qwen-style: images become <|vision_start|><|image_pad|><|vision_end|> where they appear in the content.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for c in message['content'] -%}"
    "{%- if c['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif c['type'] == 'text' -%}{{- c['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Byte-level BPE on the world's text, with Qwen's special tokens at the front of the vocabulary."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   extra_special_tokens={"image_token": "<|image_pad|>",
                                                         "video_token": "<|video_pad|>",
                                                         "vision_bos_token": "<|vision_start|>",
                                                         "vision_eos_token": "<|vision_end|>"})
    fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"  # generation batches need left padding
    return fast


def make_processor(tokenizer) -> Qwen3VLProcessor:
    """Qwen3-VL processor; every image is resized to SIZE x SIZE pixels (4 visual tokens)."""
    pixels = SIZE * SIZE
    image_processor = Qwen2VLImageProcessor(size={"shortest_edge": pixels, "longest_edge": pixels},
                                            patch_size=16, merge_size=2, temporal_patch_size=2)
    video_processor = Qwen3VLVideoProcessor(size={"shortest_edge": pixels, "longest_edge": pixels * 4},
                                            patch_size=16, merge_size=2, temporal_patch_size=2)
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=video_processor, chat_template=CHAT_TEMPLATE)


def make_config(tokenizer, hidden: int = 256, layers: int = 6) -> Qwen3VLConfig:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = 64
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=3 * hidden,
                num_hidden_layers=layers, num_attention_heads=hidden // head_dim,
                num_key_value_heads=max(1, hidden // head_dim // 2), head_dim=head_dim,
                max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True,
                pad_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [12, 10, 10], "mrope_interleaved": True})
    vision = dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=4, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=hidden,
                  num_position_embeddings=64, deepstack_visual_indexes=[0, 1])
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                         image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                         vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])


def make_model(config: Qwen3VLConfig) -> Qwen3VLForConditionalGeneration:
    return Qwen3VLForConditionalGeneration(config)
