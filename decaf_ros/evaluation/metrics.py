"""Region (J) and boundary (F) similarity as in the DAVIS toolkit, plus ReVOS's A and R (§9).

Conventions (the DAVIS ones, which the reference scripts use):

* J per frame is IoU(pred, gt); a frame where both masks are empty scores 1.
* F per frame is the boundary F-measure. Boundaries come from :func:`seg_to_boundary`; each is
  dilated by a disk of radius ``ceil(0.008 * sqrt(H^2 + W^2))`` and a boundary pixel counts as
  matched when it falls inside the other mask's dilated boundary.
  Empty boundaries: both empty -> P = R = 1 (F = 1); prediction empty, GT not -> P = 1, R = 0
  (F = 0); prediction not empty, GT empty -> P = 0, R = 1 (F = 0).
* Per expression: J and F are frame means, reported x100 and rounded to 2 decimals; J&F is
  ``round(100 * (j + f) / 2, 2)`` from the unrounded means. The rounding is numpy's (the reference
  rounds ``np.float64`` means: scale by 100, round half to even, unscale), which differs from
  Python's ``round`` on a plain float at binary halves (§9.1): 100 * (1/4000) -> 0.02, not 0.03.
* Per dataset: J and F are means over expressions and J&F = (mean J + mean F) / 2. ReVOS reports
  referring (type_id 0) and reasoning (type_id 1) groups, and "overall" is the mean of the two group
  means (a group with no expression is left out of that mean).
* A (pixel accuracy) and R (robustness, ``max(1 - FP / |foreground|, 0)``) are computed on
  *binarised* masks (§13 item 10: the reference compares 0/255 predictions with 0/1 ground truth).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import cv2
import numpy as np

BOUNDARY_TH = 0.008
GROUPS = {0: "referring", 1: "reasoning"}


# ---------------------------------------------------------------------------------------- J
def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two (H, W) masks; 1 when both are empty."""
    pred, gt = _as_bool(pred), _as_bool(gt)
    _check_shapes(pred, gt)
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


# ---------------------------------------------------------------------------------------- F
def seg_to_boundary(mask: np.ndarray) -> np.ndarray:
    """1-pixel-wide boundary map of a (H, W) mask, the DAVIS ``_seg2bmap`` rule for same-size output.

    A pixel is on the boundary when it differs from its right, bottom or bottom-right neighbour
    (neighbours outside the image count as background). On the last row only the right neighbour
    is compared, on the last column only the bottom one, and the bottom-right pixel is never a
    boundary, so the image border itself never creates boundary pixels there.
    """
    seg = _as_bool(mask)
    right, down, diag = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    down[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ right) | (seg ^ down) | (seg ^ diag)
    boundary[-1, :] = seg[-1, :] ^ right[-1, :]
    boundary[:, -1] = seg[:, -1] ^ down[:, -1]
    boundary[-1, -1] = False
    return boundary


def boundary_tolerance(shape: Sequence[int], bound_th: float = BOUNDARY_TH) -> int:
    """Dilation radius in pixels: ``bound_th`` itself when >= 1, else ceil(bound_th * diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 disk {x^2 + y^2 <= r^2}, the structuring element of the DAVIS toolkit.

    OpenCV's MORPH_ELLIPSE differs from this disk by a few pixels at some radii, so it is built
    explicitly to keep F comparable with published numbers.
    """
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2).astype(np.uint8)


def boundary_precision_recall(pred: np.ndarray, gt: np.ndarray,
                              bound_th: float = BOUNDARY_TH) -> tuple[float, float]:
    """Boundary precision and recall of ``pred`` against ``gt`` with the conventions above."""
    pred, gt = _as_bool(pred), _as_bool(gt)
    _check_shapes(pred, gt)
    kernel = disk(boundary_tolerance(gt.shape, bound_th))
    pred_b, gt_b = seg_to_boundary(pred), seg_to_boundary(gt)
    n_pred, n_gt = np.count_nonzero(pred_b), np.count_nonzero(gt_b)
    if n_pred == 0 or n_gt == 0:
        # Empty-boundary conventions: nothing predicted is never wrong (P = 1), nothing to find is
        # always found (R = 1).
        return (1.0 if n_pred == 0 else 0.0), (1.0 if n_gt == 0 else 0.0)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel).astype(bool)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(pred_b & gt_dil) / n_pred
    recall = np.count_nonzero(gt_b & pred_dil) / n_gt
    return float(precision), float(recall)


def f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUNDARY_TH) -> float:
    """DAVIS boundary F-measure of one frame."""
    precision, recall = boundary_precision_recall(pred, gt, bound_th)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------------------- A, R
def accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Pixel accuracy of binarised masks (ReVOS's A)."""
    pred, gt = _as_bool(pred), _as_bool(gt)
    _check_shapes(pred, gt)
    return float(np.mean(pred == gt))


def robustness(pred: np.ndarray, gt: np.ndarray, foreground: np.ndarray) -> float:
    """ReVOS's R: max(1 - false positives / |foreground|, 0) on binarised masks."""
    pred, gt, foreground = _as_bool(pred), _as_bool(gt), _as_bool(foreground)
    _check_shapes(pred, gt)
    false_pos = np.count_nonzero(pred & ~gt)
    # The 1e-6 keeps the reference's behaviour on frames without any annotated object.
    return max(1.0 - false_pos / (np.count_nonzero(foreground) + 1e-6), 0.0)


# ---------------------------------------------------------------------------------------- scores
@dataclass
class ExpressionScore:
    """Scores of one expression, x100 and rounded to 2 decimals like the reference scripts."""

    video: str
    exp_id: str
    J: float
    F: float
    JF: float
    n_frames: int
    type_id: int | None = None
    A: float | None = None
    R: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def percent(value: float | np.floating) -> float:
    """``round(100 * value, 2)`` with numpy's rounding, as the reference applies it to np.float64 means."""
    return float(np.round(100 * np.float64(value), 2))


def score_expression(pred: np.ndarray, gt: np.ndarray, *, video: str = "", exp_id: str = "",
                     type_id: int | None = None, foreground: np.ndarray | None = None) -> ExpressionScore:
    """Score (T, H, W) predictions against (T, H, W) ground truth, frame by frame."""
    pred, gt = _as_bool(pred), _as_bool(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must both be (T, H, W)")
    j = np.mean([jaccard(p, g) for p, g in zip(pred, gt)])  # np.float64, rounded the numpy way
    f = np.mean([f_measure(p, g) for p, g in zip(pred, gt)])
    score = ExpressionScore(video, exp_id, percent(j), percent(f), float(np.round(100 * (j + f) / 2, 2)),
                            n_frames=len(gt), type_id=type_id)
    if foreground is not None:
        score.A = percent(np.mean([accuracy(p, g) for p, g in zip(pred, gt)]))
        score.R = percent(np.mean([robustness(p, g, m) for p, g, m in zip(pred, gt, foreground)]))
    return score


def zero_score(video: str, exp_id: str, type_id: int | None, with_accuracy: bool) -> ExpressionScore:
    """The score the reference gives an expression it cannot evaluate (no prediction, too few GT masks)."""
    extra = (0.0, 0.0) if with_accuracy else (None, None)
    return ExpressionScore(video, exp_id, 0.0, 0.0, 0.0, 0, type_id, *extra)


def summarize(scores: Sequence[ExpressionScore]) -> dict[str, float]:
    """Dataset-level J, F (means over expressions), J&F = (J + F) / 2, and A/R when present."""
    if not scores:
        return {"J": math.nan, "F": math.nan, "J&F": math.nan, "n": 0}
    j = float(np.mean([s.J for s in scores]))
    f = float(np.mean([s.F for s in scores]))
    out = {"J": j, "F": f, "J&F": (j + f) / 2, "n": len(scores)}
    for name in ("A", "R"):
        values = [getattr(s, name) for s in scores if getattr(s, name) is not None]
        if values:
            out[name] = float(np.mean(values))
    return out


def summarize_grouped(scores: Sequence[ExpressionScore]) -> dict[str, dict[str, float]]:
    """ReVOS: referring / reasoning group summaries and "overall" = mean of the group means."""
    out = {name: summarize([s for s in scores if s.type_id == tid]) for tid, name in GROUPS.items()}
    present = [out[name] for name in GROUPS.values() if out[name]["n"] > 0]
    overall: dict[str, float] = {"n": sum(int(g["n"]) for g in present)}
    for key in ("J", "F", "J&F", "A", "R"):
        values = [g[key] for g in present if key in g]
        if values:
            overall[key] = float(np.mean(values))
    for key in ("J", "F", "J&F"):
        overall.setdefault(key, math.nan)
    out["overall"] = overall
    return out


def summarize_dataset(scores: Sequence[ExpressionScore], grouped: bool) -> dict:
    return summarize_grouped(scores) if grouped else summarize(scores)


def _as_bool(mask: np.ndarray) -> np.ndarray:
    # Predictions stored as 0/255 and GT unions stored as counts both binarise with > 0.
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask > 0


def _check_shapes(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
