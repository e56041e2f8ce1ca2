"""A tiny random Qwen3-VL with a real processor, saved with ``save_pretrained``.

Same recipe as the other tiny models (``decaf_ros.devtools.tiny_recipe``: byte-level BPE trained in-process,
processor built from its parts), with Qwen3-VL's differences kept: 16-px patches (32-px LLM
tokens), interleaved mRoPE, DeepStack feature injection, timestamp text between temporal
groups, and a chat template that adds no system message unless one is given.
"""
from __future__ import annotations

from pathlib import Path

from decaf_ros.devtools.tiny_recipe import PAD_TOKEN, TEXT_CONFIG, chat_tokenizer, save_tiny, token_ids, train_tokenizer
from ..qwen2_5_vl.tiny import CONTENT_ITEMS, SPECIAL_TOKENS, VISION_CONFIG, vision_token_fields

# Qwen3-VL chat template without the tool-calling and reasoning branches: a system turn only
# when the conversation starts with one (no default).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}" + CONTENT_ITEMS + "{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _build_processor():
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    tokenizer = chat_tokenizer(train_tokenizer(SPECIAL_TOKENS))
    # The real checkpoints' processor settings: patch 16, merge 2, temporal patch 2, mean/std 0.5.
    common = dict(patch_size=16, temporal_patch_size=2, merge_size=2,
                  image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": 65536, "longest_edge": 16777216}, **common)
    video_processor = Qwen3VLVideoProcessor(
        size={"shortest_edge": 4096, "longest_edge": 25165824}, fps=2, **common)
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def _build_config(tokenizer):
    from transformers import Qwen3VLConfig

    ids = token_ids(tokenizer, SPECIAL_TOKENS)
    text = dict(
        TEXT_CONFIG,
        head_dim=16,
        # head_dim 16 -> 8 rotary frequencies, interleaved over (t, h, w).
        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                         "mrope_section": [2, 3, 3], "mrope_interleaved": True},
        tie_word_embeddings=False,
        pad_token_id=ids[PAD_TOKEN],
    )
    vision = dict(
        VISION_CONFIG,
        patch_size=16,
        num_position_embeddings=64,  # 8x8 learned grid, interpolated per image
        deepstack_visual_indexes=[0],
    )
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=False,
        **vision_token_fields(ids),
    )


def build_tiny_qwen3_vl(folder: str | Path, seed: int = 0) -> Path:
    """Write a deterministic tiny Qwen3-VL (model + processor) to ``folder``; return it."""
    from transformers import Qwen3VLForConditionalGeneration

    processor = _build_processor()
    config = _build_config(processor.tokenizer)
    return save_tiny(folder, Qwen3VLForConditionalGeneration, config, processor, seed, generation_eos_pad=True)
