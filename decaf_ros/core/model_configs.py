"""Published architecture configs of the real checkpoints, as data (no download needed).

Used to build real-size models with random weights (``from_config``) for latency and memory
benchmarks. Only architecture fields are kept; token ids are left out because the random-weight
builds pair these shapes with a small in-process tokenizer (see ``decaf_ros.benchmark``).

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
- Qwen3-VL: verbatim copies of the hub ``config.json`` (transformers 4.57.0 era): for 8B the
  text part as in Steinate/Cortex and Balfiky/mobthing2 (4096 / 12288 / 36 layers / 32 heads /
  8 kv / head_dim 128, untied, rope 5e6 interleaved mrope [24, 20, 20]) and the 27-block,
  1152-wide vision tower with deepstack [8, 16, 24] (quanliang/F1, same tower; confirmed by the
  GGUF metadata of ollama's qwen3-vl:8b); for 4B the config of fine-tunes of
  unsloth/Qwen3-VL-4B-Instruct (2560 / 9728 / 36 layers / 32 heads / 8 kv, tied embeddings,
  24-block 1024-wide tower, deepstack [5, 11, 17]). The 4B vocabulary (151936, as in every
  other Qwen3-VL config) is not confirmed from the 4B file itself (the unsloth copy says
  151674, a trimmed export); the parameter-count check below agrees with 151936.
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
- LLaVA-OneVision 7B: the hub ``config.json`` of llava-hf/llava-onevision-qwen2-7b-ov-hf (its
  commit bd59bb6 diff and the mgoin/...-bnb-full-4bit copy): Qwen2-7B-Instruct text part (3584 /
  18944 / 28 / 28 heads / 4 kv, vocab 152128), SigLIP so400m tower (1152 wide, 4304 MLP,
  384 px, 16 heads, 14 px patches) with **26** layers: LLaVA drops so400m's last block, and the
  hub repository's discussion #4 ('"num_hidden_layers": 26 in vision_config') records it (27
  would overshoot the published size by one 15M-parameter block); pinpoints 384..2304 px,
  ``anyres_max_9``, features from the last kept layer, strategy "full".
- SAM2.1: transformers' conversion script ``models/sam2/convert_sam2_to_hf.py`` (``get_config``),
  which transcribes the original ``sam2/configs/sam2.1/sam2.1_hiera_{t,l}.yaml``; the ``tiny``
  backbone equals transformers' ``Sam2HieraDetConfig`` / ``Sam2VisionConfig`` defaults (their
  docstrings name ``facebook/sam2.1-hiera-tiny``), and every non-backbone field of both sizes is
  the ``Sam2VideoConfig`` default (image 1024, FPN/decoder/memory width 256, 7 memory frames,
  4 memory-attention layers, memory channels 64, SAM2.1 object-pointer temporal encoding on).
"""
from __future__ import annotations

import copy
from typing import Any

# --------------------------------------------------------------------------- Qwen2.5-VL
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

# --------------------------------------------------------------------------- Qwen2-VL
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

# --------------------------------------------------------------------------- Qwen3-VL
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

# --------------------------------------------------------------------------- InternVL3 (hf)
_INTERNVL3_VISION: dict[str, Any] = {
    # InternViT-300M-448px-V2.5 (= InternVLVisionConfig defaults), qkv bias on, no qk norm
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "image_size": [448, 448],
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
    return {"model_type": "internvl", "downsample_ratio": 0.5, "image_seq_length": 256,
            "projector_hidden_act": "gelu", "vision_feature_layer": -1,
            "vision_feature_select_strategy": "default", "tie_word_embeddings": False,
            "text_config": text, "vision_config": dict(_INTERNVL3_VISION)}


INTERNVL3_2B = _internvl3(1536, 8960, 28, 12, 2)  # OpenGVLab/InternVL3-2B-hf (LLM: Qwen2.5-1.5B)
INTERNVL3_8B = _internvl3(3584, 18944, 28, 28, 4)  # OpenGVLab/InternVL3-8B-hf (LLM: Qwen2.5-7B)
INTERNVL3_14B = _internvl3(5120, 13824, 48, 40, 8)  # OpenGVLab/InternVL3-14B-hf (LLM: Qwen2.5-14B)

# --------------------------------------------------------------------------- LLaVA-OneVision
LLAVA_ONEVISION_TILE = 384  # SigLIP input side; pinpoints are 1..6 tiles per side

LLAVA_ONEVISION_7B: dict[str, Any] = {
    # llava-hf/llava-onevision-qwen2-7b-ov-hf config.json
    "model_type": "llava_onevision",
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -1,
    "vision_feature_select_strategy": "full",
    "vision_aspect_ratio": "anyres_max_9",
    "image_grid_pinpoints": [[LLAVA_ONEVISION_TILE * i, LLAVA_ONEVISION_TILE * j]
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
        "image_size": LLAVA_ONEVISION_TILE,
        "patch_size": 14,
        "vision_use_head": False,
    },
}

# --------------------------------------------------------------------------- SAM2.1
SAM2_1_HIERA_TINY: dict[str, Any] = {
    # sam2.1_hiera_t.yaml: embed_dim 96, num_heads 1, stages [1, 2, 7, 2], global_att_blocks
    # [5, 7, 9], window_spec [8, 4, 14, 7] (Hiera default), bkg size [7, 7]
    "backbone_config": {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 96,
        "num_attention_heads": 1,
        "blocks_per_stage": [1, 2, 7, 2],
        "embed_dim_per_stage": [96, 192, 384, 768],
        "num_attention_heads_per_stage": [1, 2, 4, 8],
        "window_size_per_stage": [8, 4, 14, 7],
        "global_attention_blocks": [5, 7, 9],
        "window_positional_embedding_background_size": [7, 7],
    },
    "backbone_channel_list": [768, 384, 192, 96],
}

SAM2_1_HIERA_LARGE: dict[str, Any] = {
    # sam2.1_hiera_l.yaml: embed_dim 144, num_heads 2, stages [2, 6, 36, 4], global_att_blocks
    # [23, 33, 43], window_spec [8, 4, 16, 8], bkg size [7, 7]
    "backbone_config": {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 144,
        "num_attention_heads": 2,
        "blocks_per_stage": [2, 6, 36, 4],
        "embed_dim_per_stage": [144, 288, 576, 1152],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "window_size_per_stage": [8, 4, 16, 8],
        "global_attention_blocks": [23, 33, 43],
        "window_positional_embedding_background_size": [7, 7],
    },
    "backbone_channel_list": [1152, 576, 288, 144],
}

# Sam2VideoConfig fields that differ between SAM2 and SAM2.1 (the conversion script sets both
# for "sam2.1"; they are also the transformers defaults).
SAM2_1_VIDEO: dict[str, Any] = {
    "image_size": 1024,
    "enable_temporal_pos_encoding_for_object_pointers": True,
    "enable_occlusion_spatial_embedding": True,
}

# --------------------------------------------------------------------------- registry
MLLM_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen2-vl-2b": QWEN2_VL_2B,
    "qwen2-vl-7b": QWEN2_VL_7B,
    "qwen2.5-vl-3b": QWEN2_5_VL_3B,
    "qwen2.5-vl-7b": QWEN2_5_VL_7B,
    "qwen3-vl-4b": QWEN3_VL_4B,
    "qwen3-vl-8b": QWEN3_VL_8B,
    "internvl3-2b": INTERNVL3_2B,
    "internvl3-8b": INTERNVL3_8B,
    "internvl3-14b": INTERNVL3_14B,
    "llava-ov-7b": LLAVA_ONEVISION_7B,
}
SAM2_CONFIGS: dict[str, dict[str, Any]] = {
    "sam2.1-hiera-tiny": SAM2_1_HIERA_TINY,
    "sam2.1-hiera-large": SAM2_1_HIERA_LARGE,
}
# Hub ids the architectures come from (for reports only; nothing is downloaded).
HUB_IDS: dict[str, str] = {
    "qwen2-vl-2b": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2-vl-7b": "Qwen/Qwen2-VL-7B-Instruct",
    "qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "qwen3-vl-4b": "Qwen/Qwen3-VL-4B-Instruct",
    "qwen3-vl-8b": "Qwen/Qwen3-VL-8B-Instruct",
    "internvl3-2b": "OpenGVLab/InternVL3-2B-hf",
    "internvl3-8b": "OpenGVLab/InternVL3-8B-hf",
    "internvl3-14b": "OpenGVLab/InternVL3-14B-hf",
    "llava-ov-7b": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
    "sam2.1-hiera-tiny": "facebook/sam2.1-hiera-tiny",
    "sam2.1-hiera-large": "facebook/sam2.1-hiera-large",
}
# Parameter counts of the released checkpoints (hub model cards' "Model size"), used as a
# cross-check that a config built here has the published shape.
PUBLISHED_PARAMS: dict[str, float] = {
    "qwen2-vl-2b": 2.21e9,
    "qwen2-vl-7b": 8.29e9,
    "qwen2.5-vl-3b": 3.75e9,
    "qwen2.5-vl-7b": 8.29e9,
    "qwen3-vl-4b": 4.44e9,
    "qwen3-vl-8b": 8.77e9,
    "internvl3-2b": 2.09e9,
    "internvl3-8b": 7.94e9,
    "internvl3-14b": 15.1e9,
    "llava-ov-7b": 8.03e9,
    "sam2.1-hiera-tiny": 38.9e6,
    "sam2.1-hiera-large": 224.4e6,
}


def mllm_config(name: str, top: dict[str, Any] | None = None, text: dict[str, Any] | None = None,
                shape: dict[str, Any] | None = None) -> Any:
    """The transformers config of the published ``name`` architecture (class from its model_type).

    top: fields of the outer config (visual token ids); text: fields of the language model
    (bos/eos/pad ids), written into ``text_config`` where the family nests one. Both come from
    the tokenizer the model is paired with; the vocabulary size stays the published one.
    shape: architecture fields replaced in the published spec (a scaled-down model of the same
    layout for CPU benchmarks); dict values such as ``vision_config`` are merged, not replaced.
    """
    from transformers import AutoConfig

    spec = copy.deepcopy(_lookup(MLLM_CONFIGS, name))
    for key, value in (shape or {}).items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and isinstance(spec.get(key), dict) else value
    model_type = spec.pop("model_type")
    spec.get("text_config", spec).update(text or {})
    spec.update(top or {})
    return AutoConfig.for_model(model_type, **spec)


def mllm_model_type(name: str) -> str:
    return _lookup(MLLM_CONFIGS, name)["model_type"]


def qwen2_5_vl_config(name: str, token_ids: dict[str, int] | None = None) -> Any:
    """A ``Qwen2_5_VLConfig`` (flat layout: token ids and LLM fields share one level)."""
    return mllm_config(name, token_ids)


def sam2_video_config(name: str) -> Any:
    """A ``Sam2VideoConfig`` with the published SAM2.1 architecture of ``name``."""
    from transformers import Sam2VideoConfig

    vision = copy.deepcopy(_lookup(SAM2_CONFIGS, name))
    vision["model_type"] = "sam2_vision_model"
    return Sam2VideoConfig(vision_config=vision, **SAM2_1_VIDEO)


def _lookup(table: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    if name not in table:
        raise KeyError(f"unknown architecture '{name}'; known: {', '.join(sorted(table))}")
    return table[name]
