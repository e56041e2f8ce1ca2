"""A tiny random InternVL3 (hf ``internvl`` layout, Qwen2 LLM) with a real processor.

Same recipe as the other tiny models (``decaf_ros.devtools.tiny_recipe``): byte-level BPE trained in-process
with the family's special tokens, the processor built from its parts, ``save_pretrained`` for
model and processor.
The tile is scaled down from 448 px / 14-px patches to 56 px / 7-px patches: 8×8 patches,
pixel-shuffled (×0.5) to 4×4 LLM tokens per tile, so tile order and in-tile raster order
are both exercised while sequences stay short.
"""
from __future__ import annotations

from pathlib import Path

from decaf_ros.devtools.tiny_recipe import TEXT_CONFIG, chat_tokenizer, qwen2_token_fields, save_tiny, token_ids, train_tokenizer
from ..qwen2_5_vl.tiny import SPECIAL_TOKENS as QWEN_SPECIAL_TOKENS

TILE_PX = 56
PATCH_PX = 7
TILE_TOKENS = (TILE_PX // PATCH_PX // 2) ** 2  # 16 = image_seq_length

# Added after the Qwen2 vocabulary, in the order the hf conversion adds them.
INTERNVL_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>",
                   "<box>", "</box>", "<video>"]
NAMED_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}

# The hf InternVL chat template: no default system turn; an image is an <IMG_CONTEXT> line and a
# video a <video> line, both expanded by the processor.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _build_tokenizer():
    tok = train_tokenizer(QWEN_SPECIAL_TOKENS)
    tok.add_special_tokens(INTERNVL_TOKENS)
    return chat_tokenizer(tok, model_max_length=8192, extra_special_tokens=NAMED_TOKENS)


def _build_processor():
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    common = dict(size={"height": TILE_PX, "width": TILE_PX}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    image_processor = GotOcr2ImageProcessor(crop_to_patches=False, min_patches=1, max_patches=12, **common)
    video_processor = InternVLVideoProcessor(**common)
    return InternVLProcessor(
        image_processor=image_processor,
        tokenizer=_build_tokenizer(),
        video_processor=video_processor,
        image_seq_length=TILE_TOKENS,
        chat_template=CHAT_TEMPLATE,
    )


def _build_config(tokenizer):
    from transformers import InternVLConfig

    ids = token_ids(tokenizer, QWEN_SPECIAL_TOKENS + INTERNVL_TOKENS)
    text = dict(
        TEXT_CONFIG,
        model_type="qwen2",
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=False,
        **qwen2_token_fields(ids),
    )
    vision = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=TILE_PX,
        patch_size=PATCH_PX,
    )
    return InternVLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=TILE_TOKENS,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )


def build_tiny_internvl(folder: str | Path, seed: int = 0) -> Path:
    """Write a deterministic tiny InternVL3-style model (model + processor) to ``folder``; return it."""
    from transformers import InternVLForConditionalGeneration

    processor = _build_processor()
    config = _build_config(processor.tokenizer)
    return save_tiny(folder, InternVLForConditionalGeneration, config, processor, seed, generation_eos_pad=True)
