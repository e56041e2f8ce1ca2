"""Keypoint-localisation variant (§8): the global top-K cells of the fused map F, scored by PP@K.

A point is ``(frame_idx, y, x, score)`` with ``frame_idx`` the full-video frame index, ``y, x`` the
cell centre in [0, 1] (``(i + 0.5) / h``, ``(j + 0.5) / w``). PP@K is the fraction of the K
best points that land within ``offset`` pixels of the ground-truth object: the point is scaled to
the GT mask size (``int(coord * size)``, clipped) and hits when the mask has any foreground pixel in
the half-open window ``[py - o, py + o) x [px - o, px + o)`` clipped to the image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

Point = tuple[int, float, float, float]  # (frame_idx, y, x, score)
PP_KS = (1, 5, 10, 50, 100)
PP_OFFSET = 14  # the offset the reference scripts use (the code default is 25)


def top_k_points(fused: torch.Tensor | np.ndarray, key_frame_indices: Sequence[int], k: int = 100) -> list[Point]:
    """The k highest cells of F (T_k, h, w) over all key frames, best first."""
    values = torch.as_tensor(fused, dtype=torch.float32)
    if values.ndim != 3 or values.shape[0] != len(key_frame_indices):
        raise ValueError(f"fused map {tuple(values.shape)} does not match {len(key_frame_indices)} key frames")
    _, height, width = values.shape
    best = torch.topk(values.flatten(), min(k, values.numel()))
    points: list[Point] = []
    for score, flat in zip(best.values.tolist(), best.indices.tolist()):
        t, rest = divmod(flat, height * width)
        i, j = divmod(rest, width)
        points.append((int(key_frame_indices[t]), (i + 0.5) / height, (j + 0.5) / width, float(score)))
    return points


def point_hits(point: Point, gt_mask: np.ndarray, offset: int = PP_OFFSET) -> bool:
    """Whether the GT mask has foreground in the half-open window around the scaled point."""
    height, width = gt_mask.shape
    _, y, x, _ = point
    py = min(max(int(y * height), 0), height - 1)
    px = min(max(int(x * width), 0), width - 1)
    window = gt_mask[max(py - offset, 0):min(py + offset, height), max(px - offset, 0):min(px + offset, width)]
    return bool(np.any(window))


def pp_at_k(points: Sequence[Point], gt_masks_by_frame: Sequence[np.ndarray] | np.ndarray,
            ks: Sequence[int] = PP_KS, offset: int = PP_OFFSET) -> dict[int, float]:
    """PP@K of one expression: hits among the K best points (by score) divided by K."""
    ranked = sorted(points, key=lambda p: p[3], reverse=True)
    hits = [point_hits(p, np.asarray(gt_masks_by_frame[p[0]]), offset) for p in ranked[:max(ks)]]
    return {k: sum(hits[:k]) / k for k in ks}


@dataclass
class PPSummary:
    """PP@K averaged over the expressions that could be scored."""

    pp: dict[int, float] = field(default_factory=dict)
    n_evaluated: int = 0
    n_skipped: int = 0  # frame count of the prediction differs from the GT's

    def to_dict(self) -> dict:
        return {"PP": {f"PP@{k}": v for k, v in self.pp.items()}, "n": self.n_evaluated,
                "skipped": self.n_skipped}


def mean_pp_at_k(expressions: Iterable[tuple[Sequence[Point], int, np.ndarray]],
                 ks: Sequence[int] = PP_KS, offset: int = PP_OFFSET) -> PPSummary:
    """Average PP@K over ``(points, n_frames_predicted, gt_masks (T, H, W))`` triples.

    Expressions whose predicted frame count differs from the number of GT masks are skipped and
    counted, as in the reference evaluation.
    """
    summary = PPSummary()
    sums = {k: 0.0 for k in ks}
    for points, n_frames, gt in expressions:
        if n_frames != len(gt):
            summary.n_skipped += 1
            continue
        for k, value in pp_at_k(points, gt, ks, offset).items():
            sums[k] += value
        summary.n_evaluated += 1
    summary.pp = {k: (sums[k] / summary.n_evaluated if summary.n_evaluated else math.nan) for k in ks}
    return summary
