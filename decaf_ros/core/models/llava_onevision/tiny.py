"""A tiny random LLaVA-OneVision with a real processor, saved with ``save_pretrained``.

The real checkpoint (llava-hf/llava-onevision-qwen2-7b-ov-hf) uses 384-px SigLIP tiles of 27×27
patches and pinpoints that are multiples of 384 up to 6×6 tiles. Here a tile is 98 px (7×7
patches of 14 px): an odd patch side like the real 27, so the video path's bilinear pooling
rounds up the same way (7 -> 4, 27 -> 14), and the pinpoints are the real ones scaled to 98 px.
Tests load it back through ``from_pretrained`` like a real checkpoint.
"""
from __future__ import annotations

from pathlib import Path

from decaf_ros.devtools.tiny_recipe import TEXT_CONFIG, chat_tokenizer, qwen2_token_fields, save_tiny, token_ids, train_tokenizer

TILE = 98  # px per anyres tile and per video frame (real: 384)
PATCH = 14
MAX_TILES_PER_SIDE = 6  # the real pinpoints go up to 6×6 tiles (2304 px)


def pinpoints(tile: int) -> list[list[int]]:
    """The real checkpoint's anyres resolutions (1..6 tiles per side) for tiles of ``tile`` px."""
    sides = range(1, MAX_TILES_PER_SIDE + 1)
    return [[tile * i, tile * j] for i in sides for j in sides]


PINPOINTS = pinpoints(TILE)

# Qwen2 specials + the two LLaVA placeholders, in the real vocabulary's order.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

# The llava-hf LLaVA-OneVision chat template: "<|im_start|>role " then visual placeholders,
# then each text item after a newline.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\\n' + content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SIGLIP_MEAN = [0.5, 0.5, 0.5]
SIGLIP_STD = [0.5, 0.5, 0.5]


def _build_processor(tile: int):
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    tokenizer = chat_tokenizer(train_tokenizer(SPECIAL_TOKENS))
    size = {"height": tile, "width": tile}
    image_processor = LlavaOnevisionImageProcessor(
        size=size, image_grid_pinpoints=pinpoints(tile), image_mean=SIGLIP_MEAN, image_std=SIGLIP_STD)
    video_processor = LlavaOnevisionVideoProcessor(size=size, image_mean=SIGLIP_MEAN, image_std=SIGLIP_STD)
    return LlavaOnevisionProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        num_image_tokens=(tile // PATCH) ** 2,  # features per tile (real: 27² = 729)
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
        chat_template=CHAT_TEMPLATE)


def _build_config(tokenizer, tile: int):
    from transformers import LlavaOnevisionConfig

    ids = token_ids(tokenizer, SPECIAL_TOKENS)
    text = dict(TEXT_CONFIG, model_type="qwen2", rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
                **qwen2_token_fields(ids))
    vision = dict(
        model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, image_size=tile, patch_size=PATCH, vision_use_head=False)
    return LlavaOnevisionConfig(
        text_config=text, vision_config=vision,
        image_token_index=ids["<image>"], video_token_index=ids["<video>"],
        vision_feature_select_strategy="full", vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9", image_grid_pinpoints=pinpoints(tile), tie_word_embeddings=False)


def build_tiny_llava_onevision(folder: str | Path, seed: int = 0, tile: int = TILE) -> Path:
    """Write a deterministic tiny LLaVA-OneVision (model + processor) to ``folder``; return it.

    ``tile=384`` gives the real checkpoint's image geometry (27×27 patches per tile, 14×14 video
    tokens per frame) at toy width.
    """
    from transformers import LlavaOnevisionForConditionalGeneration

    processor = _build_processor(tile)
    config = _build_config(processor.tokenizer, tile)
    return save_tiny(folder, LlavaOnevisionForConditionalGeneration, config, processor, seed)
