"""Point candidates, NMS, cross-frame check, s_ac and selection (§7.2–§7.5), planted inputs."""
import numpy as np
import pytest
import torch

from decaf_ros.core.tracklets import (
    attention_consistency,
    cross_frame_check,
    mask_iou,
    nms_masks,
    object_score,
    point_candidates,
    select_tracklets,
    tracklet_score,
)


def raster_mask(n_pixels: int, hw=(10, 10)) -> np.ndarray:
    """The first n_pixels of an (H, W) image in raster order."""
    m = np.zeros(hw[0] * hw[1], dtype=bool)
    m[:n_pixels] = True
    return m.reshape(hw)


def test_point_candidates_inclusive_threshold_and_cell_centres():
    fused = torch.tensor([
        [0.1, 0.8, 0.79, 1.0],
        [0.85, 0.0, 0.3, 0.2],
    ])
    points, scores = point_candidates(fused, 0.8)
    # (i, j) = (0, 1), (0, 3), (1, 0); x = (j + 0.5)/4, y = (i + 0.5)/2; 0.8 itself is kept
    np.testing.assert_allclose(points, [[0.375, 0.25], [0.875, 0.25], [0.125, 0.75]])
    np.testing.assert_allclose(scores, [0.8, 1.0, 0.85], rtol=1e-7)
    assert points.dtype == np.float32 and scores.dtype == np.float32


def test_point_candidates_none():
    points, scores = point_candidates(np.full((3, 3), 0.5, dtype=np.float32))
    assert points.shape == (0, 2) and scores.shape == (0,)


def test_mask_iou_values_and_empty_pair():
    assert mask_iou(raster_mask(10), raster_mask(7)) == pytest.approx(0.7)
    a = np.zeros((4, 4), bool)
    a[0, :2] = True
    b = np.zeros((4, 4), bool)
    b[0, 1:3] = True
    assert mask_iou(a, b) == pytest.approx(1 / 3)
    empty = np.zeros((4, 4), bool)
    assert mask_iou(empty, empty) == 0.0  # documented choice: an empty pair never suppresses
    assert mask_iou(a, empty) == 0.0


def test_nms_iou_exactly_threshold_is_kept():
    masks = np.stack([raster_mask(10), raster_mask(7)])  # IoU = 7/10 = 0.7
    assert nms_masks(masks, np.array([1.5, 1.2]), 0.7) == [0, 1]


def test_nms_iou_above_threshold_is_suppressed():
    masks = np.stack([raster_mask(100), raster_mask(71)])  # IoU = 71/100 = 0.71
    assert nms_masks(masks, np.array([1.5, 1.2]), 0.7) == [0]
    # the higher score wins whichever comes first in the input
    assert nms_masks(masks, np.array([1.2, 1.5]), 0.7) == [1]


def test_nms_order_and_stable_ties():
    big = raster_mask(50)
    other = np.zeros((10, 10), bool)
    other[9] = True
    masks = np.stack([other, big, big.copy()])
    # masks 1 and 2 are identical with equal scores: the earlier one (1) survives
    assert nms_masks(masks, np.array([1.0, 1.6, 1.6]), 0.7) == [1, 0]
    assert nms_masks(np.zeros((0, 10, 10), bool), np.zeros(0), 0.7) == []


def test_cross_frame_check_rules():
    o0 = raster_mask(40)
    o1 = np.zeros((10, 10), bool)
    o1[6:] = True  # rows 6..9, disjoint from o0 (rows 0..3)
    old = np.stack([o0, o1])
    old_scores = np.array([1.5, 1.6])
    far = np.zeros((10, 10), bool)
    far[5, :3] = True
    new = np.stack([o0.copy(), o1.copy(), far])
    new_scores = np.array([1.7, 1.6, 1.0])
    keep, delete = cross_frame_check(new, new_scores, old, old_scores, 0.7)
    # new 0 beats old 0 (1.7 > 1.5): old 0 marked; new 1 ties old 1 (1.6): dropped; new 2 overlaps nothing
    assert keep.tolist() == [True, False, True]
    assert delete == {0}


def test_cross_frame_check_mark_stands_when_new_is_dropped_later():
    shared = raster_mask(60)
    old = np.stack([shared, shared.copy()])
    keep, delete = cross_frame_check(shared[None], np.array([1.5]), old, np.array([1.2, 1.9]), 0.7)
    # old 0 is marked first (1.5 > 1.2), then old 1 (1.9) drops the new mask and checking stops
    assert keep.tolist() == [False] and delete == {0}


def test_cross_frame_check_without_tracklets():
    keep, delete = cross_frame_check(raster_mask(5)[None], np.array([1.0]),
                                     np.zeros((0, 10, 10), bool), np.zeros(0), 0.7)
    assert keep.tolist() == [True] and delete == set()


def test_attention_consistency_planted_volume():
    """T=2, h=w=2, tracklets at H=W=4 (each cell pools a 2×2 block).

    frame 0: F = [[1.0, 0.0], [0.5, 0.1]], mean 0.4 -> M = {1.0, 0.5} (strict >),
             penalty = -max(F·M) = -1.0, V̂ = [[1.0, -1.0], [0.5, -1.0]]
    frame 1: all zeros -> mean 0, M empty, penalty = -0 = 0, V̂ = 0 (adds nothing)
    denominator = Σ_M F = 1.5
    A: covers the top-left block           -> 1.0                    -> 1.0/1.5 = 0.6667
    B: bottom-left block + 1 px top-right  -> 0.5 + 0.25·(-1) = 0.25 -> 0.25/1.5 = 0.1667
    C: top-right block                     -> -1.0                   -> -1/1.5 = -0.6667
    positives divided by the largest (0.6667): A = 1, B = 0.25; C stays -0.6667
    """
    fused = torch.zeros(2, 2, 2)
    fused[0] = torch.tensor([[1.0, 0.0], [0.5, 0.1]])
    masks = np.zeros((3, 2, 4, 4), dtype=bool)
    masks[0, :, :2, :2] = True
    masks[1, 0, 2:, :2] = True
    masks[1, 0, 0, 2] = True
    masks[2, :, :2, 2:] = True
    scores = attention_consistency(fused, masks)
    np.testing.assert_allclose(scores, [1.0, 0.25, -2.0 / 3.0], rtol=1e-6)


def test_attention_consistency_empty_input():
    assert attention_consistency(torch.rand(2, 3, 3), np.zeros((0, 2, 6, 6), bool)).shape == (0,)


def test_scores_and_selection():
    assert object_score(0.9, 0.8) == pytest.approx(1.7)
    assert object_score(0.9, 0.8).dtype == np.float32
    assert tracklet_score(0.9, 0.6, 0.9) == pytest.approx(0.8)
    assert tracklet_score(0.9, 0.6, 0.9).dtype == np.float32
    assert select_tracklets(np.array([0.5, 0.81, 0.8, 0.9]), 0.8) == [1, 3]  # 0.8 itself fails (strict)
    assert select_tracklets(np.array([0.5, 0.7, 0.7, 0.3]), 0.8) == [1]  # none pass: first best
    assert select_tracklets(np.array([]), 0.8) == []


# ---------------------------------------------------------------- float32 decisions (§13 item 12)
# The three smallest cases where float64 arithmetic decides differently from the reference's float32.
def test_nms_tie_after_float32_rounding_keeps_mask_0():
    """Identical masks, a = 0.90000010 both, s_SAM = 0.69999999 / 0.70000005.

    In float32 both s_obj are 1.6000001 (an exact tie, so the stable order keeps mask 0, as the
    reference does); in float64 mask 1 scores higher and would win.
    """
    masks = np.stack([raster_mask(30)] * 2)
    scores = object_score(np.float32([0.90000010, 0.90000010]), np.float32([0.69999999, 0.70000005]))
    assert scores[0] == scores[1] == np.float32(1.6000001)
    assert 0.90000010 + 0.70000005 > 0.90000010 + 0.69999999  # float64 would rank mask 1 first
    assert nms_masks(masks, scores, 0.7) == [0]
    # the same tie in the cross-frame check: an equal score never deletes the old tracklet
    keep, delete = cross_frame_check(masks[1:], scores[1:], masks[:1], scores[:1], 0.7)
    assert keep.tolist() == [False] and delete == set()


def test_track_threshold_rejects_float32_mean_equal_to_tau():
    """(a, s_SAM, s_ac) = (0.8, 0.8, 0.8): the float32 mean is exactly float32(0.8), not > 0.8."""
    score = tracklet_score(0.8, 0.8, 0.8)
    assert score == np.float32(0.8)
    assert (0.8 + 0.8 + 0.8) / 3 > 0.8  # float64 would pass it
    other = tracklet_score(0.95, 0.9, 1.0)
    assert select_tracklets([score, other], 0.8) == [1]
    assert select_tracklets([score, score], 0.8) == [0]  # none pass: the first of the tied best


def test_attention_consistency_flat_frame_float32_mean():
    """A flat 5x5 frame of c = 0.011960489675402641 and a tracklet covering one cell.

    The float32 mean of the frame is below c, so every cell is foreground (in float64 the mean
    is c and nothing is): s_ac = c / (25 c + 1e-8) = 0.04, and the normalisation by
    (0.04 + 1e-8) leaves 0.9999997 where a float64 computation gives 0.0.
    """
    c = 0.011960489675402641
    fused = torch.full((1, 5, 5), c, dtype=torch.float32)
    assert float(fused.mean()) < float(fused[0, 0, 0])
    masks = np.zeros((1, 1, 5, 5), dtype=bool)
    masks[0, 0, 2, 3] = True
    scores = attention_consistency(fused, masks)
    assert scores.dtype == np.float32
    assert scores[0] == np.float32(0.9999997)
    assert attention_consistency(fused.double(), masks)[0] == np.float32(0.9999997)  # F taken as float32

