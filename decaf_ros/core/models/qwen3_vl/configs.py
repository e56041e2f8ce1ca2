"""Published architectures of the Qwen3-VL checkpoints, as data (no download needed).

Development asset (``core/models/registry.py``): the benchmarks build real-size models with random
weights from these (``decaf_ros.devtools.real_size``); the runtime never imports this module.
Only architecture fields are kept; token ids come from the small tokenizer the random-weight
builds pair these shapes with (``tiny.real_size_processor``).

Sources:
- Qwen3-VL: verbatim copies of the hub ``config.json`` (transformers 4.57.0 era): for 8B the
  text part as in Steinate/Cortex and Balfiky/mobthing2 (4096 / 12288 / 36 layers / 32 heads /
  8 kv / head_dim 128, untied, rope 5e6 interleaved mrope [24, 20, 20]) and the 27-block,
  1152-wide vision tower with deepstack [8, 16, 24] (quanliang/F1, same tower; confirmed by the
  GGUF metadata of ollama's qwen3-vl:8b); for 4B the config of fine-tunes of
  unsloth/Qwen3-VL-4B-Instruct (2560 / 9728 / 36 layers / 32 heads / 8 kv, tied embeddings,
  24-block 1024-wide tower, deepstack [5, 11, 17]). The 4B vocabulary (151936, as in every
  other Qwen3-VL config) is not confirmed from the 4B file itself (the unsloth copy says
  151674, a trimmed export); the parameter-count check below agrees with 151936.
"""
from __future__ import annotations

from typing import Any

from decaf_ros.devtools.real_size import Published

_QWEN3_VL_TEXT: dict[str, Any] = {
    # shared by 4B and 8B: Qwen3 LLM with head_dim 128, 36 layers, 8 kv heads, interleaved mRoPE
    "hidden_act": "silu",
    "head_dim": 128,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 262144,
    "rms_norm_eps": 1e-06,
    "attention_bias": False,
    "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                        "mrope_section": [24, 20, 20], "mrope_interleaved": True},
    "vocab_size": 151936,
}
_QWEN3_VL_VISION: dict[str, Any] = {
    # 16 px patches, 2x2 merge, 2-frame temporal patch, 48x48 learned position grid
    "hidden_act": "gelu_pytorch_tanh",
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 2304,
}

QWEN3_VL_4B: dict[str, Any] = {
    # Qwen/Qwen3-VL-4B-Instruct config.json
    "model_type": "qwen3_vl",
    "tie_word_embeddings": True,
    "text_config": {**_QWEN3_VL_TEXT, "hidden_size": 2560, "intermediate_size": 9728,
                    "tie_word_embeddings": True},
    "vision_config": {**_QWEN3_VL_VISION, "depth": 24, "hidden_size": 1024, "intermediate_size": 4096,
                      "out_hidden_size": 2560, "deepstack_visual_indexes": [5, 11, 17]},
}

QWEN3_VL_8B: dict[str, Any] = {
    # Qwen/Qwen3-VL-8B-Instruct config.json
    "model_type": "qwen3_vl",
    "tie_word_embeddings": False,
    "text_config": {**_QWEN3_VL_TEXT, "hidden_size": 4096, "intermediate_size": 12288,
                    "tie_word_embeddings": False},
    "vision_config": {**_QWEN3_VL_VISION, "depth": 27, "hidden_size": 1152, "intermediate_size": 4304,
                      "out_hidden_size": 4096, "deepstack_visual_indexes": [8, 16, 24]},
}

PUBLISHED: dict[str, Published] = {
    # parameter counts: the hub model cards' "Model size"; LLM depth: 36 per config.json (§10)
    "qwen3-vl-4b": Published("Qwen/Qwen3-VL-4B-Instruct", QWEN3_VL_4B, params=4.44e9, llm_layers=36),
    "qwen3-vl-8b": Published("Qwen/Qwen3-VL-8B-Instruct", QWEN3_VL_8B, params=8.77e9, llm_layers=36),
}
