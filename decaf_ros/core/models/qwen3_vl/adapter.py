"""Qwen3-VL adapter: the Qwen2.5-VL rules (§2.2-2.3, §11) with Qwen3-VL's token layout.

Differences from Qwen2.5-VL, and why they matter for the maps:
- 16-px patches with 2×2 merge: one LLM token covers a 32×32 pixel block, so frames are
  resized to multiples of 32 (video grid (T/2, H/32, W/32), frame path 2× per side).
- Time is text, not mRoPE: the processor writes ``<t seconds>`` before every temporal group,
  each group wrapped in its own vision-start/end pair. The video tokens are therefore not one
  span; they are gathered by token id, and V (§4.3) is the exact visual positions.
- The chat template adds no system message when none is given (unlike Qwen2.5-VL's default
  one-line message); like the reference for Qwen, none is supplied.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..base import register_adapter
from ..qwen2_5_vl.adapter import REFERENCE_FPS, Qwen2_5_VLAdapter


@register_adapter("qwen3_vl")
class Qwen3VLAdapter(Qwen2_5_VLAdapter):
    """Qwen3-VL (dense) with the rollout capture in its text layers."""

    family = "qwen3_vl"
    patch_px = 16
    span_rule = False  # timestamp text sits between the temporal groups

    @classmethod
    def _hf_model_class(cls, model_type: str) -> Any:
        from transformers import Qwen3VLForConditionalGeneration

        return Qwen3VLForConditionalGeneration

    def _video_inputs(self, clip: list[np.ndarray], text: str) -> Any:
        """One video prompt: ``<t seconds><vision_start>tokens<vision_end>`` per temporal group.

        The key frames are sampled already (no resampling here) and are taken as a 2 fps
        sequence, the processor default the Qwen reference uses for its video path, so the
        timestamps read 0.2, 1.2, 2.2, ... seconds for consecutive frame pairs.
        """
        from transformers.video_utils import VideoMetadata

        prompt = self._video_prompt(text)
        metadata = VideoMetadata(total_num_frames=len(clip), fps=REFERENCE_FPS,
                                 frames_indices=list(range(len(clip))))
        return self.processor(
            text=[prompt], videos=[np.stack(clip)], return_tensors="pt",
            videos_kwargs={"do_resize": False, "do_sample_frames": False,
                           "cap_pixels_per_frame": False, "video_metadata": [metadata]})

    def _video_prompt(self, text: str) -> str:
        """The chat prompt with the bare video token where the template wrote a wrapped one.

        The processor's replacement already wraps every temporal group in vision-start/end;
        keeping the template's outer pair too would leave a doubled wrapper around the whole
        video, a layout the model never saw (the original Qwen3-VL processor replaced the
        wrapped placeholder as a whole).
        """
        proc = self.processor
        wrapped = f"{proc.vision_start_token}{proc.video_token}{proc.vision_end_token}"
        prompt = self._chat("video", text)
        if prompt.count(wrapped) != 1:
            raise RuntimeError(f"chat template did not write one '{wrapped}' placeholder")
        return prompt.replace(wrapped, proc.video_token)
