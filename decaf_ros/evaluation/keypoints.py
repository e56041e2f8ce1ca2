"""Keypoint-localisation variant (§8): the global top-K cells of the fused map F, scored by PP@K.

A point is ``(frame_idx, y, x, score)`` with ``frame_idx`` the full-video frame index, ``y, x`` the
cell centre in [0, 1] (``(i + 0.5) / h``, ``(j + 0.5) / w``, float32 values as the reference saves
them). PP@K is the fraction of the K best points that land near the ground-truth object: the point
is scaled to the GT mask size (``int(coord * size)`` in float32, clipped to ``size - 1``) and hits
when the mask has any foreground pixel in the window
``[max(py - o, 0), min(py + o, H - 1)) x [max(px - o, 0), min(px + o, W - 1))``. The end clip at
``H - 1`` / ``W - 1``, exclusive, is the reference's: the last row and column of a frame are never
inside any window, and the published PP@K numbers include that.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from .metrics import percent

Point = tuple[int, float, float, float]  # (frame_idx, y, x, score)
PP_KS = (1, 5, 10, 50, 100)
PP_OFFSET = 14  # the offset the reference scripts use (the code default is 25)
F32 = np.float32


def top_k_points(fused: torch.Tensor | np.ndarray, key_frame_indices: Sequence[int], k: int = 100) -> list[Point]:
    """The k highest cells of F (T_k, h, w) over all key frames, best first; coordinates in float32."""
    values = torch.as_tensor(fused, dtype=torch.float32)
    if values.ndim != 3 or values.shape[0] != len(key_frame_indices):
        raise ValueError(f"fused map {tuple(values.shape)} does not match {len(key_frame_indices)} key frames")
    _, height, width = values.shape
    best = torch.topk(values.flatten(), min(k, values.numel()))
    points: list[Point] = []
    for score, flat in zip(best.values.tolist(), best.indices.tolist()):
        t, rest = divmod(flat, height * width)
        i, j = divmod(rest, width)
        y, x = (F32(i) + F32(0.5)) / F32(height), (F32(j) + F32(0.5)) / F32(width)
        points.append((int(key_frame_indices[t]), float(y), float(x), float(score)))
    return points


def scaled_pixel(coord: float, size: int) -> int:
    """``int(coord * size)`` in float32 (the saved coordinates are float32), clipped to [0, size - 1]."""
    return min(max(int(F32(coord) * F32(size)), 0), size - 1)


def point_hits(point: Point, gt_mask: np.ndarray, offset: int = PP_OFFSET) -> bool:
    """Whether the GT mask has foreground in the reference's window around the scaled point."""
    height, width = gt_mask.shape
    _, y, x, _ = point
    py, px = scaled_pixel(y, height), scaled_pixel(x, width)
    window = gt_mask[max(py - offset, 0):min(py + offset, height - 1),
                     max(px - offset, 0):min(px + offset, width - 1)]
    return bool(np.any(window))


def pp_at_k(points: Sequence[Point], gt_masks_by_frame: Sequence[np.ndarray] | np.ndarray,
            ks: Sequence[int] = PP_KS, offset: int = PP_OFFSET) -> dict[int, float]:
    """PP@K of one expression: hits among the K best points (by score) divided by K."""
    ranked = sorted(points, key=lambda p: p[3], reverse=True)
    hits = [point_hits(p, np.asarray(gt_masks_by_frame[p[0]]), offset) for p in ranked[:max(ks)]]
    return {k: sum(hits[:k]) / k for k in ks}


def expression_pp(points: Sequence[Point], gt_masks_by_frame: Sequence[np.ndarray] | np.ndarray,
                  ks: Sequence[int] = PP_KS, offset: int = PP_OFFSET) -> dict[str, float]:
    """One expression's PP@K, x100 and rounded to 2 decimals like the reference's per-expression rows."""
    return {f"PP@{k}": percent(v) for k, v in pp_at_k(points, gt_masks_by_frame, ks, offset).items()}


def zero_pp(ks: Sequence[int] = PP_KS) -> dict[str, float]:
    """What the reference records for an expression it cannot score (too few GT masks)."""
    return {f"PP@{k}": 0.0 for k in ks}


@dataclass
class PPSummary:
    """PP@K (x100) averaged over the expressions that were scored."""

    pp: dict[str, float] = field(default_factory=dict)
    n_evaluated: int = 0
    n_skipped: int = 0  # the video folder's frame count differs from the meta file's (reference rule)

    def to_dict(self) -> dict:
        return {"PP": dict(self.pp), "n": self.n_evaluated, "skipped": self.n_skipped}


def summarize_pp(records: Sequence[Mapping[str, float] | None], ks: Sequence[int] = PP_KS) -> PPSummary:
    """Mean of the per-expression PP@K rows; ``None`` marks a skipped expression."""
    scored = [r for r in records if r is not None]
    summary = PPSummary(n_evaluated=len(scored), n_skipped=len(records) - len(scored))
    names = [f"PP@{k}" for k in ks]
    summary.pp = {name: (float(np.mean([r[name] for r in scored])) if scored else math.nan) for name in names}
    return summary
