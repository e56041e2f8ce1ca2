"""A tiny random Qwen2.5-VL with a real processor, saved with ``save_pretrained``.

Tests and the demo load it back through ``from_pretrained`` (the same path as a real
checkpoint), so everything except the weights' quality is exercised offline: the chat
template, the video/image processors, mRoPE, GQA and the token layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from decaf_ros.devtools.tiny_recipe import TEXT_CONFIG, chat_tokenizer, qwen2_token_fields, save_tiny, token_ids, train_tokenizer

# The family's special tokens, in the order the real vocabulary lists them.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The Qwen-VL templates' content loop (Qwen2-VL to Qwen3-VL): visual items as
# <|vision_start|><|image_pad|/|video_pad|><|vision_end|> placeholders the processor expands.
CONTENT_ITEMS = (
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}"
)

# Qwen2-VL chat template: default system message when none is given.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}" + CONTENT_ITEMS + "<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# The toy vision tower's shape, shared by Qwen2.5-VL and Qwen3-VL (the families add patch size
# and their own attention/position fields).
VISION_CONFIG: dict[str, Any] = dict(
    depth=2,
    hidden_size=32,
    intermediate_size=64,
    num_heads=2,
    spatial_merge_size=2,
    temporal_patch_size=2,
    out_hidden_size=64,
)


def vision_token_fields(ids: dict[str, int]) -> dict[str, int]:
    """The Qwen-VL config's visual token ids (the same four in Qwen2-VL, Qwen2.5-VL and Qwen3-VL)."""
    return dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


def _build_processor():
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = chat_tokenizer(train_tokenizer(SPECIAL_TOKENS))
    # The real checkpoint's pixel budget (min 4*28^2 .. max 16384*28^2), patch 14, merge 2.
    common = dict(patch_size=14, temporal_patch_size=2, merge_size=2)
    image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056, **common)
    video_processor = Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=12845056, **common)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def _build_config(tokenizer):
    from transformers import Qwen2_5_VLConfig

    ids = token_ids(tokenizer, SPECIAL_TOKENS)
    text = dict(
        TEXT_CONFIG,
        # head_dim 16 -> 8 rotary frequencies split over (t, h, w).
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
        **qwen2_token_fields(ids),
    )
    vision = dict(VISION_CONFIG, patch_size=14, tokens_per_second=2, window_size=112, fullatt_block_indexes=[1])
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=False,
        **vision_token_fields(ids),
    )


def build_tiny_qwen2_5_vl(folder: str | Path, seed: int = 0) -> Path:
    """Write a deterministic tiny Qwen2.5-VL (model + processor) to ``folder``; return it."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    processor = _build_processor()
    config = _build_config(processor.tokenizer)
    return save_tiny(folder, Qwen2_5_VLForConditionalGeneration, config, processor, seed)


def build_tiny_qwen2_vl(folder: str | Path, seed: int = 0) -> Path:
    """Tiny random Qwen2-VL (same tokenizer, processors and LLM shape; Qwen2-VL vision tower)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    parts = _build_processor()
    processor = Qwen2VLProcessor(
        image_processor=parts.image_processor, tokenizer=parts.tokenizer,
        video_processor=parts.video_processor, chat_template=CHAT_TEMPLATE)
    base = _build_config(parts.tokenizer)
    config = Qwen2VLConfig(
        text_config=base.text_config.to_dict(),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        **vision_token_fields(token_ids(parts.tokenizer, SPECIAL_TOKENS)),
    )
    return save_tiny(folder, Qwen2VLForConditionalGeneration, config, processor, seed)
