"""Published architectures of the InternVL3 (hf) checkpoints, as data (no download needed).

Development asset (``core/models/registry.py``): the benchmarks build real-size models with random
weights from these (``decaf_ros.devtools.real_size``); the runtime never imports this module.
Only architecture fields are kept; token ids come from the small tokenizer the random-weight
builds pair these shapes with (``tiny.real_size_processor``).

Sources:
- InternVL3 (hf): transformers' ``convert_internvl_weights_to_hf.py`` copies the original
  checkpoint's ``llm_config`` and ``vision_config``; the InternViT-300M-448px-V2.5 tower of all
  three sizes is the ``InternVLVisionConfig`` default (24 layers, 1024 wide, 16 heads, 448 px
  tiles of 14 px patches, pixel-shuffle 0.5 -> 256 tokens per tile) with qkv bias on. The LLMs
  are Qwen2.5: 8B as in MindSpeed-MM ``examples/internvl3/model_8B.json`` (3584 / 18944 / 28 /
  28 heads / 4 kv, vocab 151674 = Qwen2.5's 151665 tokens + InternVL's 9 specials, dynamic rope
  x2); 14B from Qwen2.5-14B-Instruct's config.json (5120 / 13824 / 48 / 40 / 8). The 2B
  (Qwen2.5-1.5B: 1536 / 8960 / 28 / 12 / 2) and 14B ``llm_config`` files themselves were not
  found verbatim: their vocabulary (151674) and untied LM head are inferred from the 8B file
  and confirmed only by the parameter counts below.
"""
from __future__ import annotations

from typing import Any

from decaf_ros.devtools.real_size import Published

REAL_TILE_PX = 448  # one tile; 14 px patches, pixel shuffle 0.5 -> 16x16 tokens
REAL_TILE_TOKENS = 256

_INTERNVL3_VISION: dict[str, Any] = {
    # InternViT-300M-448px-V2.5 (= InternVLVisionConfig defaults), qkv bias on, no qk norm
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "image_size": [REAL_TILE_PX, REAL_TILE_PX],
    "patch_size": [14, 14],
    "attention_bias": True,
    "use_qk_norm": False,
    "norm_type": "layer_norm",
    "hidden_act": "gelu",
}
_INTERNVL3_TEXT: dict[str, Any] = {
    # Qwen2.5 LLM with InternVL's 9 extra tokens, dynamic rope x2, untied LM head
    "model_type": "qwen2",
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-06,
    "rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000000.0},
    "tie_word_embeddings": False,
    "vocab_size": 151674,
}


def _internvl3(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int) -> dict[str, Any]:
    text = {**_INTERNVL3_TEXT, "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads}
    return {"model_type": "internvl", "downsample_ratio": 0.5, "image_seq_length": REAL_TILE_TOKENS,
            "projector_hidden_act": "gelu", "vision_feature_layer": -1,
            "vision_feature_select_strategy": "default", "tie_word_embeddings": False,
            "text_config": text, "vision_config": dict(_INTERNVL3_VISION)}


INTERNVL3_2B = _internvl3(1536, 8960, 28, 12, 2)  # OpenGVLab/InternVL3-2B-hf (LLM: Qwen2.5-1.5B)
INTERNVL3_8B = _internvl3(3584, 18944, 28, 28, 4)  # OpenGVLab/InternVL3-8B-hf (LLM: Qwen2.5-7B)
INTERNVL3_14B = _internvl3(5120, 13824, 48, 40, 8)  # OpenGVLab/InternVL3-14B-hf (LLM: Qwen2.5-14B)

PUBLISHED: dict[str, Published] = {
    # parameter counts: the hub model cards' "Model size"; LLM depth: the method notes §10
    "internvl3-2b": Published("OpenGVLab/InternVL3-2B-hf", INTERNVL3_2B, params=2.09e9, llm_layers=28),
    "internvl3-8b": Published("OpenGVLab/InternVL3-8B-hf", INTERNVL3_8B, params=7.94e9, llm_layers=28),
    "internvl3-14b": Published("OpenGVLab/InternVL3-14B-hf", INTERNVL3_14B, params=15.1e9, llm_layers=48),
}
