"""Published architectures of the SAM2.1 checkpoints, as data (no download needed).

Development asset (``core/models/registry.py``): the benchmarks build real-size models with random
weights from these (``decaf_ros.devtools.real_size``); the runtime never imports this module.
Only architecture fields are kept; token ids come from the small tokenizer the random-weight
builds pair these shapes with (``tiny.real_size_processor``; SAM2 has none).

Sources:
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

from decaf_ros.devtools.real_size import Published

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

PUBLISHED: dict[str, Published] = {
    # parameter counts: the hub model cards' "Model size"
    "sam2.1-hiera-tiny": Published("facebook/sam2.1-hiera-tiny", SAM2_1_HIERA_TINY, params=38.9e6),
    "sam2.1-hiera-large": Published("facebook/sam2.1-hiera-large", SAM2_1_HIERA_LARGE, params=224.4e6),
}


def video_config(name: str) -> Any:
    """A ``Sam2VideoConfig`` with the published SAM2.1 architecture ``name``."""
    from transformers import Sam2VideoConfig

    if name not in PUBLISHED:
        raise KeyError(f"unknown SAM2 architecture '{name}'; known: {', '.join(sorted(PUBLISHED))}")
    vision = copy.deepcopy(PUBLISHED[name].config)
    vision["model_type"] = "sam2_vision_model"
    return Sam2VideoConfig(vision_config=vision, **SAM2_1_VIDEO)
