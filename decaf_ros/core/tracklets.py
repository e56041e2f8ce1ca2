"""Attention-guided SAM2 prompting, pure parts (method spec §7.2–§7.5).

No SAM2 calls here: point candidates from the fused map F, mask IoU and NMS, the
cross-frame check against existing tracklets, the attention-consistency score s_ac and
the final tracklet selection. Masks are numpy bool arrays, F a float32 torch tensor.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def point_candidates(fused_t: torch.Tensor | np.ndarray, threshold: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """F_t (h, w) -> (points_xy (K, 2) float32, scores (K,) float32), every cell with F ≥ threshold.

    Points are normalised cell centres x = (j + 0.5)/w, y = (i + 0.5)/h, in raster order.
    The threshold is absolute (F is globally normalised), so weak frames may give no points.
    """
    values = _as_numpy(fused_t).astype(np.float32, copy=False)
    if values.ndim != 2:
        raise ValueError(f"F_t must be (h, w); got {values.shape}")
    h, w = values.shape
    rows, cols = np.nonzero(values >= threshold)  # inclusive (τ_pq uses ≥)
    points = np.stack([(cols + 0.5) / w, (rows + 0.5) / h], axis=1).astype(np.float32).reshape(-1, 2)
    return points, values[rows, cols].copy()


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, H, W), (M, H, W) bool -> (K, M) float64 IoU; two empty masks have IoU 0 (see mask_iou)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"mask sizes differ: {a.shape[1:]} vs {b.shape[1:]}")
    pixels = int(np.prod(a.shape[1:]))
    a2, b2 = a.reshape(len(a), pixels), b.reshape(len(b), pixels)
    if len(a2) == 0 or len(b2) == 0:
        return np.zeros((len(a2), len(b2)), dtype=np.float64)
    # pixel counts are integers; float64 matmul keeps them exact for any realistic image size
    inter = a2.astype(np.float64) @ b2.astype(np.float64).T
    union = a2.sum(1)[:, None] + b2.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks.

    Two empty masks give 0, not 1: every IoU test in §7.3 is a strict "> threshold", and
    the reference's 0/0 = NaN fails every comparison, so an empty mask never suppresses
    another. 0 reproduces that without a NaN.
    """
    return float(pairwise_iou(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


def nms_masks(masks: np.ndarray, scores: np.ndarray, iou_thr: float = 0.7) -> list[int]:
    """Greedy mask NMS: indices kept, highest score first (§7.3 step 4).

    A mask is suppressed when its IoU with an already kept mask is strictly > iou_thr.
    Equal scores keep their input order (stable sort).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(masks) != len(scores):
        raise ValueError(f"{len(masks)} masks but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")
    iou = pairwise_iou(masks, masks)
    kept: list[int] = []
    for i in order:
        if all(iou[i, j] <= iou_thr for j in kept):
            kept.append(int(i))
    return kept


def cross_frame_check(
    new_masks_t: np.ndarray, new_scores: np.ndarray,
    tracklet_masks_t: np.ndarray, tracklet_scores: np.ndarray, iou_thr: float = 0.7,
) -> tuple[np.ndarray, set[int]]:
    """Compare new masks with existing tracklets on the same frame t (§7.3 step 5).

    For each new mask, existing tracklets are visited in order; on IoU > iou_thr a strictly
    higher new score marks the old tracklet for deletion (and checking goes on), otherwise
    (equal or lower) the new mask is dropped and checking stops for it. Marks made before
    a drop stand, and marked tracklets are still compared with later new masks, because
    deletion only happens after the check (step 9).
    Returns (keep_new (K,) bool, delete_old set of tracklet indices).
    """
    new_scores = np.asarray(new_scores, dtype=np.float64)
    old_scores = np.asarray(tracklet_scores, dtype=np.float64)
    keep = np.ones(len(new_scores), dtype=bool)
    delete: set[int] = set()
    if len(new_scores) == 0 or len(old_scores) == 0:
        return keep, delete
    iou = pairwise_iou(new_masks_t, tracklet_masks_t)  # (K, M)
    for i in range(len(new_scores)):
        for j in range(len(old_scores)):
            if iou[i, j] <= iou_thr:
                continue
            if new_scores[i] > old_scores[j]:
                delete.add(j)
            else:
                keep[i] = False
                break
    return keep, delete


def attention_consistency(fused: torch.Tensor, tracklet_masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """s_ac (K,) float64 of each tracklet against F (T, h, w) (§7.4).

    M_t = F_t > mean(F_t) (strict); V̂ = F on M, -max_t(F_t·M_t) elsewhere; each tracklet
    (T, H, W) is adaptive-average-pooled to (h, w); s = Σ M̃·V̂ / (Σ_M F + 1e-8) over all
    frames; positive scores are then divided by the largest positive, negatives kept.
    """
    values = _as_tensor(fused).double()
    if values.dim() != 3:
        raise ValueError(f"F must be (T, h, w); got {tuple(values.shape)}")
    masks = _as_tensor(tracklet_masks)
    if masks.dim() != 4 or masks.shape[1] != values.shape[0]:
        raise ValueError(f"tracklet masks must be (K, T={values.shape[0]}, H, W); got {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    fg = values > values.mean(dim=(1, 2), keepdim=True)  # (T, h, w)
    penalty = -(values * fg).amax(dim=(1, 2), keepdim=True)  # (T, 1, 1): 0 if no foreground
    v_hat = torch.where(fg, values, penalty)
    denominator = values[fg].sum() + 1e-8
    scores = torch.stack([
        (_coverage(track, tuple(values.shape[1:])) * v_hat).sum() / denominator for track in masks])
    return _normalise_positives(scores.numpy())


def _coverage(track: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(T, H, W) mask -> (T, h, w) float64 fraction of each cell covered (adaptive average pooling).

    One tracklet at a time: a (K, T, H, W) float copy of full-resolution masks would be large.
    """
    return F.adaptive_avg_pool2d(track.float()[None], hw)[0].double()


def _normalise_positives(scores: np.ndarray) -> np.ndarray:
    out = scores.copy()
    positive = out > 0
    if positive.any():
        out[positive] /= out[positive].max()
    return out


def object_score(attention: np.ndarray | float, sam_iou: np.ndarray | float):
    """s_obj = a + s_SAM (§7.3 step 3), used for NMS and the cross-frame check."""
    return attention + sam_iou


def tracklet_score(attention, sam_iou, consistency):
    """s_trk = (a + s_SAM + s_ac) / 3 (§7.5)."""
    return (attention + sam_iou + consistency) / 3.0


def select_tracklets(scores_trk: Sequence[float] | np.ndarray, threshold: float = 0.8) -> list[int]:
    """Indices with s_trk strictly > threshold; if none pass, the single best (first on ties)."""
    scores = np.asarray(scores_trk, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        return []
    passing = np.flatnonzero(scores > threshold)
    if passing.size:
        return [int(i) for i in passing]
    return [int(np.argmax(scores))]  # argmax returns the first maximum


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _as_tensor(x) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
