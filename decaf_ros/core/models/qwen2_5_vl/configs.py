"""Published architectures of the Qwen2.5-VL and Qwen2-VL checkpoints, as data (no download needed).

Development asset (``core/models/registry.py``): the benchmarks build real-size models with random
weights from these (``decaf_ros.devtools.real_size``); the runtime never imports this module.
Only architecture fields are kept; token ids come from the small tokenizer the random-weight
builds pair these shapes with (``tiny.real_size_processor``).

Sources:
- Qwen2.5-VL: the ``config.json`` of the hub repositories
  https://huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct/blob/main/config.json and
  https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/config.json
  (the numbers below were checked against verbatim copies of both files quoted in public
  repositories, and against the 7B module print: Embedding(152064, 3584), 28 decoder layers,
  k_proj 3584 -> 512, MLP 18944, vision MLP 3420, merger 5120 -> 3584).
- Qwen2-VL: hub ``config.json`` of Qwen/Qwen2-VL-2B-Instruct and Qwen/Qwen2-VL-7B-Instruct, as
  quoted verbatim by mirrors and fine-tunes that name them as their source
  (onnx-community/Qwen2-VL-2B-Instruct, lightonai/MonoQwen2-VL-v0.1 for 2B;
  unsloth/Qwen2-VL-7B-Instruct-bnb-4bit, Qwen/Qwen2-VL-7B-Instruct-GPTQ-Int8 for 7B). Their
  ``vision_config`` lists only ``hidden_size`` (2B), ``in_chans`` and ``spatial_patch_size``: the
  tower itself is the ``Qwen2VLVisionConfig`` default (depth 32, embed_dim 1280, 16 heads,
  mlp_ratio 4, 14 px patches), whose docstring names Qwen2-VL-7B; the merger output
  (``hidden_size``) is 1536 for 2B and the 3584 default for 7B.
"""
from __future__ import annotations

from typing import Any

from decaf_ros.devtools.real_size import Published

# Shared by 3B and 7B (identical in both config.json files): the 32-block windowed ViT with
# full attention every 8th block, 14 px patches, 2x2 spatial and 2-frame temporal merge.
_QWEN2_5_VL_VISION: dict[str, Any] = {
    "depth": 32,
    "hidden_act": "silu",
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "temporal_patch_size": 2,
}

QWEN2_5_VL_3B: dict[str, Any] = {
    # Qwen/Qwen2.5-VL-3B-Instruct config.json
    "model_type": "qwen2_5_vl",
    "hidden_act": "silu",
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128000,
    "max_window_layers": 70,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "sliding_window": 32768,
    "use_sliding_window": False,
    "tie_word_embeddings": True,
    "vocab_size": 151936,
    "vision_config": {**_QWEN2_5_VL_VISION, "out_hidden_size": 2048},
}

QWEN2_5_VL_7B: dict[str, Any] = {
    # Qwen/Qwen2.5-VL-7B-Instruct config.json
    "model_type": "qwen2_5_vl",
    "hidden_act": "silu",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "max_window_layers": 28,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "sliding_window": 32768,
    "use_sliding_window": False,
    "tie_word_embeddings": False,
    "vocab_size": 152064,
    "vision_config": {**_QWEN2_5_VL_VISION, "out_hidden_size": 3584},
}

# Qwen2.5-VL preprocessor_config.json (both sizes): pixel budget 4·28² .. 16384·28².
QWEN2_5_VL_PREPROCESSOR: dict[str, Any] = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
}

# The config.json files set only these vision fields; the rest is Qwen2VLVisionConfig's default.
_QWEN2_VL_VISION: dict[str, Any] = {"in_chans": 3, "spatial_patch_size": 14}

QWEN2_VL_2B: dict[str, Any] = {
    # Qwen/Qwen2-VL-2B-Instruct config.json
    "model_type": "qwen2_vl",
    "hidden_act": "silu",
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "sliding_window": 32768,
    "use_sliding_window": False,
    "tie_word_embeddings": True,
    "vocab_size": 151936,
    "vision_config": {**_QWEN2_VL_VISION, "hidden_size": 1536},
}

QWEN2_VL_7B: dict[str, Any] = {
    # Qwen/Qwen2-VL-7B-Instruct config.json (vision merger output: the 3584 default)
    **QWEN2_VL_2B,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
    "vocab_size": 152064,
    "vision_config": dict(_QWEN2_VL_VISION),
}

PUBLISHED: dict[str, Published] = {
    # parameter counts: the hub model cards' "Model size"; LLM depth: the method notes §10
    "qwen2-vl-2b": Published("Qwen/Qwen2-VL-2B-Instruct", QWEN2_VL_2B, params=2.21e9, llm_layers=28),
    "qwen2-vl-7b": Published("Qwen/Qwen2-VL-7B-Instruct", QWEN2_VL_7B, params=8.29e9, llm_layers=28),
    "qwen2.5-vl-3b": Published("Qwen/Qwen2.5-VL-3B-Instruct", QWEN2_5_VL_3B, params=3.75e9, llm_layers=36),
    "qwen2.5-vl-7b": Published("Qwen/Qwen2.5-VL-7B-Instruct", QWEN2_5_VL_7B, params=8.29e9, llm_layers=28),
}
