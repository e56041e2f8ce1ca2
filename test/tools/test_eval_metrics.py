"""J, F, J&F, A, R and PP@K on planted masks with hand-computed answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from decaf_ros.evaluation.keypoints import expression_pp, point_hits, pp_at_k, summarize_pp, top_k_points
from decaf_ros.evaluation.metrics import (
    ExpressionScore,
    accuracy,
    boundary_precision_recall,
    boundary_tolerance,
    f_measure,
    jaccard,
    percent,
    robustness,
    score_expression,
    seg_to_boundary,
    summarize,
    summarize_grouped,
)


def rect(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


# ---------------------------------------------------------------------------------------- J
def test_jaccard_known_overlap():
    pred = rect((10, 10), (2, 4), (2, 6))  # 2x4 = 8 px
    gt = rect((10, 10), (2, 6), (4, 6))  # 4x2 = 8 px, overlap 2x2 = 4
    assert jaccard(pred, gt) == pytest.approx(4 / 12)


def test_jaccard_both_empty_is_one_and_one_empty_is_zero():
    empty = np.zeros((5, 5), bool)
    assert jaccard(empty, empty) == 1.0
    assert jaccard(empty, rect((5, 5), (1, 3), (1, 3))) == 0.0


def test_predictions_saved_as_255_binarise():
    gt = rect((6, 6), (1, 4), (1, 4))
    assert jaccard(gt.astype(np.uint8) * 255, gt) == 1.0


# ---------------------------------------------------------------------------------------- boundary
def test_seg_to_boundary_rule_right_bottom_diagonal():
    mask = np.array([[0, 0, 0, 0],
                     [0, 1, 1, 0],
                     [0, 1, 1, 0],
                     [0, 0, 0, 0]], bool)
    expected = np.array([[1, 1, 1, 0],
                         [1, 0, 1, 0],
                         [1, 1, 1, 0],
                         [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(seg_to_boundary(mask), expected)


def test_full_frame_mask_has_no_boundary():
    assert not seg_to_boundary(np.ones((5, 7), bool)).any()


def test_tolerance_radius():
    assert boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.6)
    assert boundary_tolerance((10, 20)) == 1


def test_identical_masks_score_one():
    gt = rect((40, 50), (5, 30), (10, 40))
    assert f_measure(gt, gt) == 1.0
    assert jaccard(gt, gt) == 1.0


def test_far_apart_masks_score_zero():
    pred = rect((100, 100), (0, 10), (0, 10))
    gt = rect((100, 100), (80, 95), (80, 95))
    assert boundary_precision_recall(pred, gt) == (0.0, 0.0)
    assert f_measure(pred, gt) == 0.0


def test_one_pixel_shift_is_inside_tolerance():
    gt = rect((40, 50), (5, 30), (10, 40))
    pred = np.roll(gt, 1, axis=1)  # tolerance here is ceil(0.008 * 64.03) = 1
    assert f_measure(pred, gt) == 1.0
    assert jaccard(pred, gt) < 1.0


def test_shift_beyond_tolerance_hand_computed():
    # 10x20 image -> tolerance 1 px (plus-shaped disk). GT: a band over columns 0..4, so its
    # boundary is column 4 (10 px). The prediction keeps that band on rows 0..4 and widens it to
    # columns 0..7 on rows 5..9; its boundary: column 4 rows 0..4, row 4 columns 5..7, column 7
    # rows 5..9 (13 px). Matched prediction pixels: column 4 rows 0..4 and (4, 5) -> P = 6/13.
    # Matched GT pixels: rows 0..4 and (5, 4), one below (4, 4) -> R = 6/10.
    gt = rect((10, 20), (0, 10), (0, 5))
    pred = gt.copy()
    pred[5:, :8] = True
    assert seg_to_boundary(gt).sum() == 10
    assert seg_to_boundary(pred).sum() == 13
    precision, recall = boundary_precision_recall(pred, gt)
    assert precision == pytest.approx(6 / 13)
    assert recall == pytest.approx(6 / 10)
    assert f_measure(pred, gt) == pytest.approx(12 / 23)
    assert jaccard(pred, gt) == pytest.approx(50 / 65)


def test_empty_boundary_conventions():
    empty = np.zeros((20, 20), bool)
    obj = rect((20, 20), (5, 10), (5, 10))
    assert boundary_precision_recall(empty, obj) == (1.0, 0.0)  # nothing predicted
    assert boundary_precision_recall(obj, empty) == (0.0, 1.0)  # nothing to find
    assert boundary_precision_recall(empty, empty) == (1.0, 1.0)
    assert f_measure(empty, obj) == 0.0
    assert f_measure(obj, empty) == 0.0
    assert f_measure(empty, empty) == 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        jaccard(np.zeros((4, 4)), np.zeros((4, 5)))


# ---------------------------------------------------------------------------------------- A, R
def test_accuracy_and_robustness_on_binarised_masks():
    gt = rect((10, 10), (0, 2), (0, 5))  # 10 px
    pred = (gt | rect((10, 10), (5, 6), (0, 2))).astype(np.uint8) * 255  # + 2 false positives
    foreground = rect((10, 10), (0, 2), (0, 5))  # 10 px
    assert accuracy(pred, gt) == pytest.approx(98 / 100)
    assert robustness(pred, gt, foreground) == pytest.approx(1 - 2 / 10, abs=1e-6)
    assert robustness(np.ones((10, 10)), gt, foreground) == 0.0  # clamped


# ---------------------------------------------------------------------------------------- aggregation
def test_score_expression_rounds_per_expression():
    gt = np.stack([rect((10, 10), (2, 6), (2, 6)), np.zeros((10, 10), bool), rect((10, 10), (0, 3), (0, 3))])
    pred = np.stack([gt[0], np.zeros((10, 10), bool), np.zeros((10, 10), bool)])
    score = score_expression(pred, gt, video="v", exp_id="1", type_id=0)
    # J per frame: 1, 1 (both empty), 0; F per frame: 1, 1, 0.
    assert (score.J, score.F, score.JF) == (66.67, 66.67, 66.67)
    assert score.n_frames == 3 and score.A is None


def test_dataset_summary_and_revos_groups_are_means_of_group_means():
    def s(j, f, t):
        return ExpressionScore("v", "0", j, f, (j + f) / 2, 1, t)
    scores = [s(60, 70, 0), s(80, 90, 0), s(40, 50, 1)]
    flat = summarize(scores)
    assert flat["J"] == pytest.approx(60) and flat["F"] == pytest.approx(70) and flat["J&F"] == pytest.approx(65)
    grouped = summarize_grouped(scores)
    assert grouped["referring"]["J&F"] == pytest.approx(75)
    assert grouped["reasoning"]["J&F"] == pytest.approx(45)
    assert grouped["overall"]["J"] == pytest.approx(55)  # not the pooled 60
    assert grouped["overall"]["F"] == pytest.approx(65)
    assert grouped["overall"]["J&F"] == pytest.approx(60)
    assert math.isnan(summarize([])["J"])


# ---------------------------------------------------------------------------------------- PP@K
def test_top_k_points_global_order_and_coordinates():
    fused = torch.zeros(2, 4, 5)
    fused[1, 2, 3] = 0.9
    fused[0, 0, 4] = 0.8
    fused[1, 3, 0] = 0.7
    points = top_k_points(fused, key_frame_indices=[0, 7], k=3)
    assert [p[0] for p in points] == [7, 0, 7]
    frame, y, x, score = points[0]
    assert (y, x) == pytest.approx(((2 + 0.5) / 4, (3 + 0.5) / 5))
    assert score == pytest.approx(0.9)
    assert points[1][1:3] == pytest.approx((0.5 / 4, 4.5 / 5))


def point_at(py, px, size=100, frame=0, score=1.0):
    return (frame, (py + 0.5) / size, (px + 0.5) / size, score)


def test_point_window_is_half_open_14_px():
    point = point_at(50, 50)  # scales back to pixel (50, 50)
    right_14 = rect((100, 100), (40, 60), (64, 80))  # first object column 14 px to the right
    right_13 = rect((100, 100), (40, 60), (63, 80))
    left_14 = rect((100, 100), (40, 60), (20, 37))  # last object column 50 - 14 = 36: inside
    left_15 = rect((100, 100), (40, 60), (20, 36))  # last column 35: outside
    assert not point_hits(point, right_14, offset=14)
    assert point_hits(point, right_13, offset=14)
    assert point_hits(point, left_14, offset=14)
    assert not point_hits(point, left_15, offset=14)


def test_point_scaling_is_clipped_and_the_last_row_and_column_never_count():
    """GT = only pixel (99, 99) of a 100x100 frame, the point on it: the reference's window ends at
    min(p + o, size - 1) exclusive, so row and column 99 are outside every window (§8)."""
    gt = rect((100, 100), (99, 100), (99, 100))
    on_it = (0, 0.995, 0.995, 1.0)  # int(0.995 * 100) = 99
    assert not point_hits(on_it, gt, offset=14)
    assert not point_hits((0, 1.0, 1.0, 1.0), gt, offset=14)  # int(1.0 * 100) = 100 -> clipped to 99
    assert pp_at_k([on_it], gt[None], ks=(1,)) == {1: 0.0}
    inner = rect((100, 100), (98, 99), (98, 99))  # one pixel further in is inside
    assert point_hits(on_it, inner, offset=14)


def test_pp_at_k_uses_score_order_and_divides_by_k():
    gt = np.zeros((2, 100, 100), bool)
    gt[1, 10:20, 10:20] = True
    hit, miss = point_at(15, 15, frame=1), point_at(80, 80, frame=1)
    points = [(*miss[:3], 0.5), (*hit[:3], 0.9), (*hit[:3], 0.3), (*miss[:3], 0.1)]
    assert pp_at_k(points, gt, ks=(1, 2, 4)) == {1: 1.0, 2: 0.5, 4: 0.5}


def test_pp_rows_are_x100_and_the_summary_skips_marked_expressions():
    gt = np.zeros((3, 100, 100), bool)
    gt[0, 40:60, 40:60] = True
    good = expression_pp([point_at(50, 50)], gt, ks=(1,))
    bad = expression_pp([point_at(90, 90)], gt, ks=(1,))
    assert (good, bad) == ({"PP@1": 100.0}, {"PP@1": 0.0})
    summary = summarize_pp([good, bad, None], ks=(1,))
    assert summary.pp == {"PP@1": 50.0}
    assert (summary.n_evaluated, summary.n_skipped) == (2, 1)


def test_top_k_coordinates_are_the_float32_cell_centres():
    fused = torch.zeros(1, 7, 3)
    fused[0, 5, 1] = 1.0
    (_, y, x, _), = top_k_points(fused, [0], k=1)
    assert y == float(np.float32(5.5) / np.float32(7)) and x == float(np.float32(1.5) / np.float32(3))
    assert y != 5.5 / 7  # the float64 quotient is another number


def test_scores_round_the_numpy_way():
    """IoU 1/4000 on the only frame: 100 * j = 0.025, numpy rounds it to 0.02 (Python's round: 0.03)."""
    gt = np.zeros((1, 50, 80), bool)
    gt[0] = True  # 4000 pixels
    pred = np.zeros_like(gt)
    pred[0, 10, 10] = True
    score = score_expression(pred, gt)
    assert round(100 * (1 / 4000), 2) == 0.03
    assert score.J == 0.02
    assert percent(0.125) == 12.5 and percent(1 / 3) == 33.33
