"""A tiny random SAM2 video model for tests and the offline demo.

It has the real architecture (Hiera backbone, FPN, prompt encoder, mask decoder, memory attention,
memory encoder) at a toy width and a 128 px input, so CPU runs take milliseconds per frame. The
weights are random, so masks are arbitrary; only shapes and plumbing are meaningful.
"""

from __future__ import annotations

from pathlib import Path

import torch

IMAGE_SIZE = 128  # input side; the real models use 1024
HIDDEN = 128  # FPN / decoder / memory-attention width (64 breaks the memory path, 128 works)
MEM_DIM = 64  # memory_encoder_output_channels: the model assumes 64 (object pointers are split into it)
SEED = 0
OBJECT_SCORE_BIAS = 2.0


def _tiny_config():
    from transformers import Sam2VideoConfig

    feat = IMAGE_SIZE // 4  # Hiera patch stride 4, then three 2x query-pooling stages
    backbone = {
        # a dict sub-config is only resolved with its model_type spelled out
        "model_type": "sam2_hiera_det_model",
        "image_size": [IMAGE_SIZE, IMAGE_SIZE],
        "hidden_size": 16,
        "blocks_per_stage": [1, 1, 2, 1],
        "embed_dim_per_stage": [16, 32, 64, 128],
        "num_attention_heads_per_stage": [1, 1, 2, 2],
        "window_size_per_stage": [8, 4, 4, 2],
        "global_attention_blocks": [3],  # never the first block of a stage: that one q-pools its window
        "window_positional_embedding_background_size": [4, 4],
    }
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": backbone,
        "backbone_channel_list": [128, 64, 32, 16],
        "backbone_feature_sizes": [[feat, feat], [feat // 2, feat // 2], [feat // 4, feat // 4]],
        "fpn_hidden_size": HIDDEN,
    }
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config={"hidden_size": HIDDEN, "image_size": IMAGE_SIZE, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": HIDDEN,
            "mlp_dim": 256,
            "num_attention_heads": 4,
            "iou_head_hidden_dim": 64,
        },
        image_size=IMAGE_SIZE,
        memory_attention_hidden_size=HIDDEN,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[feat // 4, feat // 4],
        memory_encoder_hidden_size=HIDDEN,
        memory_encoder_output_channels=MEM_DIM,
        mask_downsampler_embed_dim=HIDDEN,
        memory_fuser_embed_dim=HIDDEN,
        memory_fuser_intermediate_dim=256,
        memory_fuser_num_layers=1,
    )


def _tiny_processor():
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor, Sam2VideoVideoProcessor

    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    mask_size = {"height": IMAGE_SIZE // 4, "width": IMAGE_SIZE // 4}
    return Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size=size, mask_size=mask_size),
        video_processor=Sam2VideoVideoProcessor(size=size),
    )


def build_tiny_sam2(folder: str | Path) -> Path:
    """Build the tiny model + processor with fixed seeds and save both into `folder`."""
    from transformers import Sam2VideoModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Sam2VideoModel(_tiny_config()).eval()
        # zero-initialised memory parameters would make the memory path trivially constant; give them
        # small random values so tests exercise real mixing
        for name, param in model.named_parameters():
            if torch.count_nonzero(param) == 0 and param.dim() > 1:
                torch.nn.init.normal_(param, std=0.02)
        # Random object-score logits sit near 0, and SAM2 blanks the whole mask when they are <= 0;
        # a positive bias makes objects "present" so downstream code sees non-empty masks.
        model.mask_decoder.pred_obj_score_head.proj_out.bias.data.add_(OBJECT_SCORE_BIAS)
    model.save_pretrained(folder)
    _tiny_processor().save_pretrained(folder)
    return folder
