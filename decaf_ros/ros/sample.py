"""A bundled sample camera stream: real photographs (scikit-image) seen by a panning, zooming camera.

No video can be downloaded on every machine, but scikit-image ships a few real photos in its wheel.
A virtual pinhole camera (focal length ~0.9 x photo width, in photo pixels) looks at the photo; each
frame is a 4:3 crop resized to the output size, so the intrinsics follow the crop exactly:
``fx = f_photo * W / crop_w`` and the principal point moves with the crop. Depth is synthetic (a tilted
plane with a bump under the photo centre), aligned with the color image, in metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
FRAME_ID = "camera_color_optical_frame"


@dataclass(frozen=True)
class SampleFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray  # (H, W) float32 metres
    K: np.ndarray  # (3, 3) float64 intrinsics of this frame


def load_photo(name: str) -> np.ndarray:
    """An RGB uint8 photo shipped inside scikit-image."""
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"unknown sample photo {name!r}; choose one of {', '.join(PHOTOS)}")
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _crop_window(t: float, photo_hw: tuple[int, int], aspect: float) -> tuple[float, float, float, float]:
    """(x0, y0, w, h) of the camera's view at phase t in [0, 1]: zoom in while panning left to right."""
    ph, pw = photo_hw
    full_w = min(pw, ph * aspect)
    zoom = 1.2 + 0.3 * np.sin(np.pi * t)  # 1.2 -> 1.5 -> 1.2: there is always room to pan
    w = full_w / zoom
    h = w / aspect
    x0 = (pw - w) * (0.15 + 0.7 * t)
    y0 = (ph - h) * (0.5 + 0.3 * np.sin(2 * np.pi * t))
    return float(x0), float(y0), float(w), float(h)


def _depth_image(K: np.ndarray, bump_uv: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """A plane 1.5 m away tilted downwards, with a 25 cm bump (an 'object') at bump_uv."""
    height, width = size
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    plane = 1.5 + 0.4 * (v / max(height - 1, 1)) - 0.2
    radius = 0.12 * width
    bump = 0.25 * np.exp(-((u - bump_uv[0]) ** 2 + (v - bump_uv[1]) ** 2) / (2 * radius ** 2))
    return (plane - bump).astype(np.float32)


def build_sample_clip(photo: str = "astronaut", num_frames: int = 48, width: int = 640,
                      height: int = 480) -> list[SampleFrame]:
    """``num_frames`` frames of a camera moving over ``photo``; deterministic."""
    if num_frames < 1 or width < 2 or height < 2:
        raise ValueError("num_frames must be >= 1 and the size at least 2x2")
    image = load_photo(photo)
    ph, pw = image.shape[:2]
    f_photo = 0.9 * pw
    frames = []
    for i in range(num_frames):
        t = i / max(num_frames - 1, 1)
        x0, y0, w, h = _crop_window(t, (ph, pw), width / height)
        sx, sy = width / w, height / h
        # Affine crop+resize in one warp keeps sub-pixel pans smooth.
        warp = np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]], dtype=np.float64)
        rgb = cv2.warpAffine(image, warp, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        K = np.array([[f_photo * sx, 0.0, (pw / 2 - x0) * sx],
                      [0.0, f_photo * sy, (ph / 2 - y0) * sy],
                      [0.0, 0.0, 1.0]])
        bump_uv = ((pw / 2 - x0) * sx, (ph / 2 - y0) * sy)
        frames.append(SampleFrame(rgb=rgb, depth_m=_depth_image(K, bump_uv, (height, width)), K=K))
    return frames


def depth_to_encoding(depth_m: np.ndarray, encoding: str) -> np.ndarray:
    """Metres -> the raw array of a depth Image: 16UC1 millimetres (0 = invalid) or 32FC1 metres."""
    if encoding == "32FC1":
        return depth_m.astype(np.float32)
    if encoding == "16UC1":
        mm = np.nan_to_num(depth_m * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(np.round(mm), 0, 65535).astype(np.uint16)
    raise ValueError(f"depth encoding must be 16UC1 or 32FC1, got {encoding!r}")
