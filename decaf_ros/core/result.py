"""What a grounding run and a tracking step hand back to their callers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .tracklets import object_score

# What a GroundingResult holds: the attention (Otsu) masks before SAM2, or SAM2's dense masks.
STAGE_COARSE = "coarse"
STAGE_DENSE = "dense"
STAGES = (STAGE_COARSE, STAGE_DENSE)


@dataclass
class Tracklet:
    """One object hypothesis of SAM2 stage 1 (§7.3), tracked over the key frames."""

    masks: np.ndarray  # (T_k, H, W) bool, on the key frames
    origin: int  # key-frame position where its click was placed
    attention: float  # a: fused-map value at its click, in [tau_pq, 1] (a float32 value)
    sam_iou: float  # s_SAM: SAM2's predicted IoU of the chosen multimask output (a float32 value)
    consistency: float = 0.0  # s_ac (§7.4), filled in after stage 1 (float32)
    score: float = 0.0  # s_trk = (a + s_SAM + s_ac) / 3, computed in float32

    @property
    def object_score(self) -> float:
        """s_obj = a + s_SAM in float32 (tracklets.object_score), the ranking of NMS and the cross-frame check."""
        return float(object_score(self.attention, self.sam_iou))


@dataclass
class GroundingResult:
    """Everything one DecAF run on a clip produced (§1, artifacts of both stages).

    ``stage`` says which masks it carries. A coarse result (``STAGE_COARSE``, also
    ``coarse_only``) exists as soon as fusion is done: ``masks`` are the Otsu masks on the key
    frames (False elsewhere) and the targets are the coarse targets of ``fusion.coarse_targets``.
    A dense result (``STAGE_DENSE``) carries SAM2's masks on every frame and the kept tracklets.
    Left empty, ``stage`` follows ``coarse_only``.
    """

    query: str
    masks: np.ndarray  # (T, H, W) bool, union of the kept targets on every clip frame
    target_masks: np.ndarray  # (K, T, H, W) bool, one per kept tracklet
    target_scores: np.ndarray  # (K,) float, s_trk of each kept tracklet
    coarse_masks: np.ndarray  # (T_k, H, W) bool, Otsu masks on the key frames (§6)
    key_frame_indices: list[int]
    fused: torch.Tensor  # (T_k, h, w) float32 in [0, 1], the fused attention volume F (§5.6)
    obj_name: str  # the P2 answer
    candidates: list[str]  # the 17 P1 answers (video first, then each key frame)
    tracklets: list[Tracklet] = field(default_factory=list)  # every stage-1 tracklet, scored
    kept: list[int] = field(default_factory=list)  # indices into tracklets that were propagated
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    coarse_only: bool = False
    stage: str = ""

    def __post_init__(self) -> None:
        if not self.stage:
            self.stage = STAGE_COARSE if self.coarse_only else STAGE_DENSE
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {self.stage!r}")

    @property
    def num_targets(self) -> int:
        return int(self.target_masks.shape[0])

    @property
    def tracklet_scores(self) -> list[float]:
        return [t.score for t in self.tracklets]


@dataclass
class TrackResult:
    """One streaming-tracking step on a new frame."""

    target_masks: np.ndarray  # (K, H, W) bool
    scores: np.ndarray  # (K,) float in [0, 1], SAM2 object-presence probability
    timing_s: float

    @property
    def mask(self) -> np.ndarray:
        """Union over targets, (H, W) bool."""
        if self.target_masks.shape[0] == 0:
            return np.zeros(self.target_masks.shape[1:], dtype=bool)
        return self.target_masks.any(axis=0)
