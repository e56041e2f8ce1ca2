"""Attention-guided SAM2 prompting, pure parts (docs/method.md §7.2–§7.5).

No SAM2 calls here: point candidates from the fused map F, mask IoU and NMS, the
cross-frame check against existing tracklets, the attention-consistency score s_ac and
the final tracklet selection. Masks are numpy bool arrays, F a float32 torch tensor.

Every score and every threshold comparison is float32, as in the reference (§13 item 12):
s_obj = a + s_SAM, s_trk = (s_obj + s_ac) / 3, the s_ac means and sums, the IoUs, and the
thresholds themselves (float32(0.8) > 0.8). In float64 the NMS winner, the cross-frame
deletion, the τ_trk test and the argmax fallback differ from the reference whenever two
scores tie after float32 rounding.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

F32 = np.float32
AC_EPS = 1e-8  # the reference's epsilon, in both s_ac divisions (§7.4)


def point_candidates(fused_t: torch.Tensor | np.ndarray, threshold: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """F_t (h, w) -> (points_xy (K, 2) float32, scores (K,) float32), every cell with F ≥ threshold.

    Points are normalised cell centres x = (j + 0.5)/w, y = (i + 0.5)/h computed in float32 (as
    the reference), in raster order. The threshold is absolute (F is globally normalised), so
    weak frames may give no points.
    """
    values = _as_numpy(fused_t).astype(F32, copy=False)
    if values.ndim != 2:
        raise ValueError(f"F_t must be (h, w); got {values.shape}")
    h, w = values.shape
    rows, cols = np.nonzero(values >= F32(threshold))  # inclusive (τ_pq uses ≥), float32 threshold
    xs = (cols.astype(F32) + F32(0.5)) / F32(w)
    ys = (rows.astype(F32) + F32(0.5)) / F32(h)
    return np.stack([xs, ys], axis=1).reshape(-1, 2), values[rows, cols].copy()


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, H, W), (M, H, W) bool -> (K, M) float32 IoU; two empty masks have IoU 0 (see mask_iou).

    Pixel counts are exact integers, divided in float32 as the reference does (its float32 sums
    of 0/1 pixels are exact up to 2**24 pixels per mask).
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"mask sizes differ: {a.shape[1:]} vs {b.shape[1:]}")
    pixels = int(np.prod(a.shape[1:]))
    a2, b2 = a.reshape(len(a), pixels), b.reshape(len(b), pixels)
    if len(a2) == 0 or len(b2) == 0:
        return np.zeros((len(a2), len(b2)), dtype=F32)
    # float64 matmul keeps the counts exact for any realistic image size
    inter = a2.astype(np.float64) @ b2.astype(np.float64).T
    union = a2.sum(1)[:, None] + b2.sum(1)[None, :] - inter
    inter, union = inter.astype(F32), union.astype(F32)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks.

    Two empty masks give 0, not 1, as the reference's IoU does: every IoU test in §7.3 is a
    strict "> threshold", so an empty mask never suppresses another.
    """
    return float(pairwise_iou(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


def object_score(attention: np.ndarray | float, sam_iou: np.ndarray | float) -> np.ndarray:
    """s_obj = s_SAM + a in float32 (§7.3 step 3): the ranking of NMS and the cross-frame check."""
    return np.asarray(sam_iou, dtype=F32) + np.asarray(attention, dtype=F32)


def nms_masks(masks: np.ndarray, scores: np.ndarray, iou_thr: float = 0.7) -> list[int]:
    """Greedy mask NMS on float32 scores: indices kept, highest score first (§7.3 step 4).

    A mask is suppressed when its IoU with an already kept mask is strictly > iou_thr.
    Exactly equal scores keep their input order (a stable sort): the reference's
    ``torch.sort(descending=True)`` leaves the order of exact ties unspecified, and the stable
    order is the one it gives for small inputs.
    """
    scores = np.asarray(scores, dtype=F32)
    if len(masks) != len(scores):
        raise ValueError(f"{len(masks)} masks but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")
    suppressed = pairwise_iou(masks, masks) > F32(iou_thr)
    kept: list[int] = []
    for i in order:
        if not any(suppressed[i, j] for j in kept):
            kept.append(int(i))
    return kept


def cross_frame_check(
    new_masks_t: np.ndarray, new_scores: np.ndarray,
    tracklet_masks_t: np.ndarray, tracklet_scores: np.ndarray, iou_thr: float = 0.7,
) -> tuple[np.ndarray, set[int]]:
    """Compare new masks with existing tracklets on the same frame t (§7.3 step 5), in float32.

    For each new mask, existing tracklets are visited in order; on IoU > iou_thr a strictly
    higher new score marks the old tracklet for deletion (and checking goes on), otherwise
    (equal or lower) the new mask is dropped and checking stops for it. Marks made before
    a drop stand, and marked tracklets are still compared with later new masks, because
    deletion only happens after the check (step 9).
    Returns (keep_new (K,) bool, delete_old set of tracklet indices).
    """
    new_scores = np.asarray(new_scores, dtype=F32)
    old_scores = np.asarray(tracklet_scores, dtype=F32)
    keep = np.ones(len(new_scores), dtype=bool)
    delete: set[int] = set()
    if len(new_scores) == 0 or len(old_scores) == 0:
        return keep, delete
    overlaps = pairwise_iou(new_masks_t, tracklet_masks_t) > F32(iou_thr)  # (K, M)
    for i in range(len(new_scores)):
        for j in range(len(old_scores)):
            if not overlaps[i, j]:
                continue
            if new_scores[i] > old_scores[j]:
                delete.add(j)
            else:
                keep[i] = False
                break
    return keep, delete


def attention_consistency(fused: torch.Tensor, tracklet_masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """s_ac (K,) float32 of each tracklet against F (T, h, w) (§7.4), in float32 as the reference.

    M_t = F_t > mean(F_t) (strict, float32 mean); V̂ = F on M, -max_t(F_t·M_t) elsewhere; each
    tracklet (T, H, W) is adaptive-average-pooled to (h, w); s = Σ M̃·V̂ / (Σ_M F + 1e-8) over all
    frames; positive scores are then divided by (largest positive + 1e-8), negatives kept. The
    float32 mean of a flat frame can fall below its value, which makes the whole frame foreground;
    and the 1e-8 keeps the best score just below 1 when the scores are small.
    """
    values = _as_tensor(fused).float()
    if values.dim() != 3:
        raise ValueError(f"F must be (T, h, w); got {tuple(values.shape)}")
    masks = _as_tensor(tracklet_masks)
    if masks.dim() != 4 or masks.shape[1] != values.shape[0]:
        raise ValueError(f"tracklet masks must be (K, T={values.shape[0]}, H, W); got {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        return np.zeros(0, dtype=F32)
    fg = values > values.mean(dim=(1, 2), keepdim=True)  # (T, h, w)
    penalty = -(values * fg).amax(dim=(1, 2), keepdim=True)  # (T, 1, 1): 0 if no foreground
    v_hat = torch.where(fg, values, penalty)
    denominator = values[fg].sum() + AC_EPS
    scores = torch.stack([
        (_coverage(track, tuple(values.shape[1:])) * v_hat).sum() / denominator for track in masks])
    return _normalise_positives(scores).numpy()


def _coverage(track: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(T, H, W) mask -> (T, h, w) float32 fraction of each cell covered (adaptive average pooling).

    One tracklet at a time: a (K, T, H, W) float copy of full-resolution masks would be large.
    """
    return F.adaptive_avg_pool2d(track.float()[None], hw)[0]


def _normalise_positives(scores: torch.Tensor) -> torch.Tensor:
    out = scores.clone()
    positive = out > 0
    if positive.any():
        out[positive] = out[positive] / (out[positive].max() + AC_EPS)
    return out


def tracklet_score(attention, sam_iou, consistency) -> np.ndarray:
    """s_trk = (s_obj + s_ac) / 3 = (a + s_SAM + s_ac) / 3 in float32, summed in that order (§7.5)."""
    return (object_score(attention, sam_iou) + np.asarray(consistency, dtype=F32)) / F32(3.0)


def select_tracklets(scores_trk: Sequence[float] | np.ndarray, threshold: float = 0.8) -> list[int]:
    """Indices with float32 s_trk strictly > float32(threshold); if none pass, the single best.

    The fallback takes the first of exactly tied best scores (argmax), as the reference does.
    """
    scores = np.asarray(scores_trk, dtype=F32).reshape(-1)
    if scores.size == 0:
        return []
    passing = np.flatnonzero(scores > F32(threshold))
    if passing.size:
        return [int(i) for i in passing]
    return [int(np.argmax(scores))]  # argmax returns the first maximum


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _as_tensor(x) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
