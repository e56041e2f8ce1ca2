"""A tiny random Qwen2.5-VL with a real processor, saved with ``save_pretrained``.

Tests and the demo load it back through ``from_pretrained`` (the same path as a real
checkpoint), so everything except the weights' quality is exercised offline: the chat
template, the video/image processors, mRoPE, GQA and the token layout.
"""
from __future__ import annotations

from pathlib import Path

import torch

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

# Qwen2-VL chat template: default system message when none is given, visual items as
# <|vision_start|><|image_pad|/|video_pad|><|vision_end|> placeholders the processor expands.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "You are a helpful assistant.",
    "Which main object does the expression or question refer to? Answer in a single word.",
    "Focus on the primary subject or agent of the described action or behavior.",
    "Describe the background scene of the video, excluding any person, cat or dog.",
    "Given: expression, candidate class list, goal, instructions, answer with the label only.",
    "the person driving a car; the dog running on the grass; a cat sitting near the window.",
    "system user assistant video image frame object background person cat dog car bird horse",
    "0123456789 .,:;!?'\"()[]{}-_*/\\ \n",
]

VOCAB_SIZE = 512
TEXT_LAYERS = 4


def _train_tokenizer():
    """Byte-level BPE trained in-process; specials first so their ids are stable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - 16,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok


def _build_processor():
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=32768,
    )
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

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,  # GQA: exercises repeat_kv
        max_position_embeddings=4096,
        # head_dim 16 -> 8 rotary frequencies split over (t, h, w).
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        tokens_per_second=2,
        window_size=112,
        out_hidden_size=64,
        fullatt_block_indexes=[1],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_qwen2_5_vl(folder: str | Path, seed: int = 0) -> Path:
    """Write a deterministic tiny Qwen2.5-VL (model + processor) to ``folder``; return it."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    processor = _build_processor()
    config = _build_config(processor.tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
        _scale_up_weights(model, seed)
    model.eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _scale_up_weights(model: torch.nn.Module, seed: int) -> None:
    """Replace the tiny init (std 0.02) by std 0.3 so attention is far from uniform.

    Near-uniform attention would let a wrong rollout pass the comparison tests by accident.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)


def build_tiny_qwen2_vl(folder: str | Path, seed: int = 0) -> Path:
    """Tiny random Qwen2-VL (same tokenizer, processors and LLM shape; Qwen2-VL vision tower)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = _build_processor()
    processor = Qwen2VLProcessor(
        image_processor=parts.image_processor, tokenizer=parts.tokenizer,
        video_processor=parts.video_processor, chat_template=CHAT_TEMPLATE)
    base = _build_config(parts.tokenizer)
    config = Qwen2VLConfig(
        text_config=base.text_config.to_dict(),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=base.image_token_id,
        video_token_id=base.video_token_id,
        vision_start_token_id=base.vision_start_token_id,
        vision_end_token_id=base.vision_end_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
        _scale_up_weights(model, seed)
    model.eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
