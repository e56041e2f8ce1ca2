"""Published architecture of the LLaVA-OneVision 7B checkpoint, as data (no download needed).

Development asset (``core/models/registry.py``): the benchmarks build real-size models with random
weights from these (``decaf_ros.devtools.real_size``); the runtime never imports this module.
Only architecture fields are kept; token ids come from the small tokenizer the random-weight
builds pair these shapes with (``tiny.real_size_processor``).

Sources:
- LLaVA-OneVision 7B: the hub ``config.json`` of llava-hf/llava-onevision-qwen2-7b-ov-hf (its
  commit bd59bb6 diff and the mgoin/...-bnb-full-4bit copy): Qwen2-7B-Instruct text part (3584 /
  18944 / 28 / 28 heads / 4 kv, vocab 152128), SigLIP so400m tower (1152 wide, 4304 MLP,
  384 px, 16 heads, 14 px patches) with **26** layers: LLaVA drops so400m's last block, and the
  hub repository's discussion #4 ('"num_hidden_layers": 26 in vision_config') records it (27
  would overshoot the published size by one 15M-parameter block); pinpoints 384..2304 px,
  ``anyres_max_9``, features from the last kept layer, strategy "full".
"""
from __future__ import annotations

from typing import Any

from decaf_ros.devtools.real_size import Published

REAL_TILE_PX = 384  # SigLIP input side; pinpoints are 1..6 tiles per side

LLAVA_ONEVISION_7B: dict[str, Any] = {
    # llava-hf/llava-onevision-qwen2-7b-ov-hf config.json
    "model_type": "llava_onevision",
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -1,
    "vision_feature_select_strategy": "full",
    "vision_aspect_ratio": "anyres_max_9",
    "image_grid_pinpoints": [[REAL_TILE_PX * i, REAL_TILE_PX * j]
                             for i in range(1, 7) for j in range(1, 7)],
    "tie_word_embeddings": False,
    "text_config": {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "tie_word_embeddings": False,
        "vocab_size": 152128,
    },
    "vision_config": {
        "model_type": "siglip_vision_model",
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 26,  # so400m's 27 minus the dropped last block
        "num_attention_heads": 16,
        "image_size": REAL_TILE_PX,
        "patch_size": 14,
        "vision_use_head": False,
    },
}

PUBLISHED: dict[str, Published] = {
    # parameter count: the hub model card's "Model size"; LLM depth: the method notes §10
    "llava-ov-7b": Published("llava-hf/llava-onevision-qwen2-7b-ov-hf", LLAVA_ONEVISION_7B, params=8.03e9,
                             llm_layers=28),
}
