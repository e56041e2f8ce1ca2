"""Mask geometry and the robust 3D centroid on planted depth."""
import numpy as np
import pytest

from decaf_ros.core.geometry import (
    centroid_3d,
    depth_to_meters,
    erode_mask,
    mask_area,
    mask_bbox,
    mask_centroid,
)

K = np.array([[500.0, 0.0, 40.0], [0.0, 400.0, 30.0], [0.0, 0.0, 1.0]])


def rect_mask(hw=(60, 80), rows=(20, 40), cols=(30, 60)) -> np.ndarray:
    m = np.zeros(hw, dtype=bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


def test_centroid_bbox_area():
    m = rect_mask()
    assert mask_centroid(m) == (44.5, 29.5)  # mean of cols 30..59, rows 20..39
    assert mask_bbox(m) == (30, 20, 59, 39)  # inclusive
    assert mask_area(m) == 600
    empty = np.zeros((5, 5), bool)
    assert mask_centroid(empty) is None and mask_bbox(empty) is None


def test_erosion_shrinks_rectangle_by_radius():
    eroded = erode_mask(rect_mask(), 3)
    assert mask_bbox(eroded) == (33, 23, 56, 36)
    assert mask_area(eroded) == 24 * 14


def test_centroid_3d_planted_plane_with_invalid_pixels():
    mask = rect_mask()
    depth = np.full(mask.shape, 2.0, dtype=np.float32)
    # invalid readings inside the eroded region, in pairs mirrored about its centre (44.5, 29.5)
    # so the valid pixels keep the same mean (u, v)
    depth[25, 35], depth[34, 54] = np.nan, 0.0
    depth[30, 40], depth[29, 49] = np.inf, 50.0  # inf and out of range (> 10 m)
    # background clutter in the eroded-away rim and outside the mask must not matter
    depth[20, 30:60] = 0.5
    depth[:5, :] = np.nan
    xyz, reason = centroid_3d(mask, depth, K)
    assert xyz is not None, reason
    # Z = 2; X = (44.5 - 40)·2/500 = 0.018; Y = (29.5 - 30)·2/400 = -0.0025
    np.testing.assert_allclose(xyz, [0.018, -0.0025, 2.0], rtol=1e-12, atol=1e-12)
    assert reason.startswith("ok: 332 valid")  # 24·14 = 336 eroded pixels minus 4 invalid


def test_centroid_3d_median_resists_outliers():
    mask = rect_mask()
    depth = np.full(mask.shape, 3.0)
    depth[23:26, 33:56] = 9.5  # a minority of far (but in-range) readings
    xyz, _ = centroid_3d(mask, depth, K)
    assert xyz[2] == 3.0


def test_centroid_3d_all_nan_gives_none_with_reason():
    mask = rect_mask()
    xyz, reason = centroid_3d(mask, np.full(mask.shape, np.nan), K)
    assert xyz is None
    assert "0 valid depth pixels" in reason


def test_centroid_3d_empty_mask():
    xyz, reason = centroid_3d(np.zeros((4, 4), bool), np.ones((4, 4)), K)
    assert xyz is None and reason == "empty mask"


def test_centroid_3d_falls_back_when_erosion_empties_mask():
    mask = np.zeros((60, 80), bool)
    mask[10, 10:40] = True  # a 1-px line: erosion removes it entirely
    xyz, reason = centroid_3d(mask, np.full(mask.shape, 1.0), K)
    assert xyz is not None
    assert "un-eroded" in reason
    np.testing.assert_allclose(xyz, [(24.5 - 40) / 500, (10 - 30) / 400, 1.0])


def test_size_mismatch_and_bad_intrinsics_raise():
    with pytest.raises(ValueError):
        centroid_3d(np.ones((4, 4), bool), np.ones((4, 5)), K)
    with pytest.raises(ValueError):
        centroid_3d(np.ones((4, 4), bool), np.ones((4, 4)), np.eye(2))
    xyz, _ = centroid_3d(np.ones((8, 8), bool), np.ones((8, 8)), K.flatten(), erosion_px=0)
    assert xyz is not None  # flat CameraInfo.k is accepted


def test_depth_to_meters():
    raw = np.array([[0, 1000], [2500, 65535]], dtype=np.uint16)
    out = depth_to_meters(raw, "16UC1")
    assert out.dtype == np.float32 and np.isnan(out[0, 0])
    np.testing.assert_allclose(out[[0, 1, 1], [1, 0, 1]], [1.0, 2.5, 65.535], rtol=1e-6)
    f = np.array([[1.5, np.nan]], dtype=np.float32)
    out32 = depth_to_meters(f, "32FC1")
    assert out32[0, 0] == 1.5 and np.isnan(out32[0, 1]) and out32 is not f
    with pytest.raises(ValueError):
        depth_to_meters(raw, "rgb8")
