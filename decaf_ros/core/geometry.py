"""Mask geometry: 2D centroid, bounding box, area, and a robust 3D centroid from depth.

Pixel coordinates follow the OpenCV / ROS camera-model convention: integer (u, v) is the
centre of pixel (column u, row v), the convention the intrinsics K (cx, cy) are given in.
The 3D point is in the camera's optical frame (x right, y down, z forward), metres.
"""
from __future__ import annotations

import cv2
import numpy as np

DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def mask_area(mask: np.ndarray) -> int:
    """Number of foreground pixels."""
    return int(np.count_nonzero(mask))


def mask_centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """(u, v): mean column and row of the foreground pixels; None for an empty mask."""
    rows, cols = np.nonzero(_as_2d_bool(mask))
    if rows.size == 0:
        return None
    return float(cols.mean()), float(rows.mean())


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x_min, y_min, x_max, y_max), inclusive pixel indices; None for an empty mask."""
    rows, cols = np.nonzero(_as_2d_bool(mask))
    if rows.size == 0:
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def depth_to_meters(depth: np.ndarray, encoding: str) -> np.ndarray:
    """Depth image -> float32 metres; invalid pixels become NaN.

    16UC1 / mono16 hold millimetres with 0 meaning "no reading" (REP 118); 32FC1 holds
    metres already (its NaN/inf/0 are filtered later by ``centroid_3d``).
    """
    if encoding in ("16UC1", "mono16"):
        metres = np.asarray(depth, dtype=np.float32) / 1000.0
        metres[np.asarray(depth) == 0] = np.nan
        return metres
    if encoding == "32FC1":
        return np.array(depth, dtype=np.float32, copy=True)
    raise ValueError(f"unsupported depth encoding {encoding!r}; expected one of {', '.join(DEPTH_ENCODINGS)}")


def erode_mask(mask: np.ndarray, erosion_px: int) -> np.ndarray:
    """Erode by ``erosion_px`` pixels with an elliptical (2e+1)² kernel (drops edge pixels whose
    depth often belongs to the background behind the object)."""
    mask = _as_2d_bool(mask)
    if erosion_px <= 0:
        return mask
    size = 2 * int(erosion_px) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.erode(mask.astype(np.uint8), kernel) > 0


def centroid_3d(
    mask: np.ndarray, depth_m: np.ndarray, K: np.ndarray,
    erosion_px: int = 3, min_depth: float = 0.1, max_depth: float = 10.0, min_valid_px: int = 20,
) -> tuple[np.ndarray | None, str]:
    """Robust 3D centroid of a mask: (xyz (3,) float64 in the optical frame, or None; reason).

    Z is the median depth of the valid pixels (finite, > 0, within [min_depth, max_depth])
    under the eroded mask; X, Y back-project the mean (u, v) of those same valid pixels:
    X = (u - cx) Z / fx, Y = (v - cy) Z / fy. The median resists depth outliers at the
    silhouette; using the valid pixels' own centroid keeps (u, v) and Z from the same set.
    """
    mask = _as_2d_bool(mask)
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.shape != mask.shape:
        raise ValueError(f"mask {mask.shape} and depth {depth.shape} differ in size")
    fx, fy, cx, cy = _intrinsics(K)
    if not mask.any():
        return None, "empty mask"
    region = erode_mask(mask, erosion_px)
    note = ""
    if not region.any():
        region, note = mask, f"; erosion by {erosion_px} px emptied the mask, used the un-eroded mask"
    with np.errstate(invalid="ignore"):
        valid = region & np.isfinite(depth) & (depth > 0) & (depth >= min_depth) & (depth <= max_depth)
    count = int(np.count_nonzero(valid))
    if count < min_valid_px:
        return None, f"only {count} valid depth pixels under the mask (need {min_valid_px}){note}"
    rows, cols = np.nonzero(valid)
    z = float(np.median(depth[rows, cols]))
    u, v = float(cols.mean()), float(rows.mean())
    xyz = np.array([(u - cx) * z / fx, (v - cy) * z / fy, z], dtype=np.float64)
    return xyz, f"ok: {count} valid depth pixels{note}"


def _intrinsics(K: np.ndarray) -> tuple[float, float, float, float]:
    k = np.asarray(K, dtype=np.float64)
    if k.size == 9:
        k = k.reshape(3, 3)  # accept the flat row-major K of sensor_msgs/CameraInfo
    if k.shape != (3, 3):
        raise ValueError(f"K must be 3x3; got shape {np.shape(K)}")
    fx, fy = k[0, 0], k[1, 1]
    if not (fx > 0 and fy > 0):
        raise ValueError(f"focal lengths must be > 0; got fx={fx}, fy={fy}")
    return float(fx), float(fy), float(k[0, 2]), float(k[1, 2])


def _as_2d_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W); got {mask.shape}")
    return mask
