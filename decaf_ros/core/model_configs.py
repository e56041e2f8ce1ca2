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
    "qwen2.5-vl-3b": QWEN2_5_VL_3B,
    "qwen2.5-vl-7b": QWEN2_5_VL_7B,
}
SAM2_CONFIGS: dict[str, dict[str, Any]] = {
    "sam2.1-hiera-tiny": SAM2_1_HIERA_TINY,
    "sam2.1-hiera-large": SAM2_1_HIERA_LARGE,
}
# Hub ids the architectures come from (for reports only; nothing is downloaded).
HUB_IDS: dict[str, str] = {
    "qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "sam2.1-hiera-tiny": "facebook/sam2.1-hiera-tiny",
    "sam2.1-hiera-large": "facebook/sam2.1-hiera-large",
}
# Parameter counts of the released checkpoints (hub model cards' "Model size"), used as a
# cross-check that a config built here has the published shape.
PUBLISHED_PARAMS: dict[str, float] = {
    "qwen2.5-vl-3b": 3.75e9,
    "qwen2.5-vl-7b": 8.29e9,
    "sam2.1-hiera-tiny": 38.9e6,
    "sam2.1-hiera-large": 224.4e6,
}


def qwen2_5_vl_config(name: str, token_ids: dict[str, int] | None = None) -> Any:
    """A ``Qwen2_5_VLConfig`` with the published architecture of ``name``.

    token_ids: image/video/vision-start/vision-end (and bos/eos/pad) ids of the tokenizer the
    model will be paired with; the vocabulary size stays the published one.
    """
    from transformers import Qwen2_5_VLConfig

    spec = copy.deepcopy(_lookup(MLLM_CONFIGS, name))
    spec.pop("model_type")
    spec.update(token_ids or {})
    return Qwen2_5_VLConfig(**spec)


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
