"""A tiny random InternVL3 (hf ``internvl`` layout, Qwen2 LLM) with a real processor.

Same recipe as ``tiny/qwen.py``: byte-level BPE trained in-process with the family's special
tokens, the processor built from its parts, ``save_pretrained`` for model and processor.
The tile is scaled down from 448 px / 14-px patches to 56 px / 7-px patches: 8×8 patches,
pixel-shuffled (×0.5) to 4×4 LLM tokens per tile, so tile order and in-tile raster order
are both exercised while sequences stay short.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .qwen import SPECIAL_TOKENS as QWEN_SPECIAL_TOKENS
from .qwen import VOCAB_SIZE, _scale_up_weights, _train_tokenizer

TILE_PX = 56
PATCH_PX = 7
TILE_TOKENS = (TILE_PX // PATCH_PX // 2) ** 2  # 16 = image_seq_length
TEXT_LAYERS = 4

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
    from transformers import PreTrainedTokenizerFast

    tok = _train_tokenizer()
    tok.add_special_tokens(INTERNVL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=8192,
        extra_special_tokens=NAMED_TOKENS,
    )


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

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS + INTERNVL_TOKENS}
    text = dict(
        model_type="qwen2",
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,  # GQA: exercises repeat_kv
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
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
    from transformers import GenerationConfig, InternVLForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    processor = _build_processor()
    config = _build_config(processor.tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InternVLForConditionalGeneration(config)
        _scale_up_weights(model, seed)
    model.eval()
    tokenizer = processor.tokenizer
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
