"""From raw rollout maps to the fused attention volume F and coarse masks (docs/method.md §5–§6).

Chain (§5): Gaussian smoothing of the raw maps -> contrast clamp(obj - bg, 0, 1) on the
un-normalised values -> min–max (video: global, frame: per frame) -> temporal alignment of
the video map -> bilinear upsampling to the frame grid -> average -> global min–max.
Maps are float32 torch tensors (t, h, w).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def gaussian_kernel(k: int, sigma: float) -> torch.Tensor:
    """(k, k) float32: exp(-(x² + y²) / 2σ²) on integer offsets -(k//2) .. k//2, summing to 1.

    Built in float32 on the CPU as the reference builds it (§5.2, §13 item 12): the squared
    offsets are integers, the division, exp and normalisation float32. A float64 kernel cast to
    float32 differs in the last bit of some weights, which moves every smoothed value.
    """
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer; got {k}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    offsets = torch.arange(k) - k // 2  # int64
    sq = offsets[:, None] ** 2 + offsets[None, :] ** 2  # exact integers
    kernel = torch.exp(-sq / (2 * sigma**2))  # int tensor / Python float -> float32
    return kernel / kernel.sum()


def smooth_maps(maps: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    """(t, h, w) -> (t, h, w): per-frame 2D Gaussian, conv2d with zero padding k//2 (borders attenuate)."""
    _check_3d(maps, "maps")
    kernel = gaussian_kernel(k, sigma).to(device=maps.device)[None, None]  # (1, 1, k, k)
    # the kernel is symmetric, so conv2d's cross-correlation equals a convolution
    return F.conv2d(maps.float()[:, None], kernel, padding=k // 2)[:, 0]


def contrast(obj: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """clamp(obj - bg, 0, 1), on the smoothed, un-normalised maps (§5.3)."""
    if obj.shape != bg.shape:
        raise ValueError(f"object and background maps differ in shape: {tuple(obj.shape)} vs {tuple(bg.shape)}")
    return (obj - bg).clamp(0.0, 1.0)


def _safe_minmax(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    span = hi - lo
    # max == min: divide by 1, so a flat map becomes all zeros after subtracting the min (§5.4)
    return (x - lo) / torch.where(span > 0, span, torch.ones_like(span))


def minmax_global(x: torch.Tensor) -> torch.Tensor:
    """Min–max over the whole tensor; a flat tensor becomes all zeros."""
    return _safe_minmax(x, x.amin(), x.amax())


def minmax_per_frame(x: torch.Tensor) -> torch.Tensor:
    """(t, h, w): min–max over (h, w) of each frame; a flat frame becomes all zeros."""
    _check_3d(x, "x")
    return _safe_minmax(x, x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True))


def align_video_to_frames(video: torch.Tensor, n_frames: int) -> torch.Tensor:
    """(tv, h, w) -> (n_frames, h, w) for the Qwen video path (§5.5, §13.6).

    Slot k of the temporally merged video covers key frames 2k and 2k+1, so fewer slots
    than frames are repeated ×2; an odd frame count leaves one extra slot, dropped at the end.
    """
    _check_3d(video, "video")
    out = video
    if out.shape[0] < n_frames:
        out = out.repeat_interleave(2, dim=0)
    if out.shape[0] == n_frames + 1:
        out = out[:n_frames]
    if out.shape[0] != n_frames:
        raise ValueError(f"cannot align {video.shape[0]} video slots to {n_frames} frames")
    return out


def upsample_bilinear(maps: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(t, h, w) -> (t, H, W) bilinear with align_corners=False (F.interpolate's behaviour)."""
    _check_3d(maps, "maps")
    if tuple(maps.shape[1:]) == tuple(hw):
        return maps
    return F.interpolate(maps[:, None], size=tuple(hw), mode="bilinear", align_corners=False)[:, 0]


def fuse_video_frame(video_ctr: torch.Tensor, frame_ctr: torch.Tensor) -> torch.Tensor:
    """(t, hv, wv), (t, hf, wf) normalised maps -> (t, hf, wf): upsample, average, global min–max (§5.6)."""
    _check_3d(frame_ctr, "frame_ctr")
    if video_ctr.shape[0] != frame_ctr.shape[0]:
        raise ValueError(f"video has {video_ctr.shape[0]} frames, frame map has {frame_ctr.shape[0]}")
    video_up = upsample_bilinear(video_ctr, tuple(frame_ctr.shape[1:]))
    return minmax_global((video_up + frame_ctr) / 2)


def fuse_maps(
    obj_video: torch.Tensor, bg_video: torch.Tensor,
    obj_frame: torch.Tensor, bg_frame: torch.Tensor,
    k_video: int = 3, k_frame: int = 7, sigma: float = 1.0,
) -> torch.Tensor:
    """Raw rollout maps of both prompts and both paths -> fused F (T, hf, wf) in [0, 1] (§5)."""
    video = contrast(smooth_maps(obj_video, k_video, sigma), smooth_maps(bg_video, k_video, sigma))
    frame = contrast(smooth_maps(obj_frame, k_frame, sigma), smooth_maps(bg_frame, k_frame, sigma))
    video = minmax_global(video)
    frame = minmax_per_frame(frame)
    video = align_video_to_frames(video, frame.shape[0])
    return fuse_video_frame(video, frame)


def coarse_masks(fused: torch.Tensor, out_hw: tuple[int, int]) -> np.ndarray:
    """F (T, h, w) -> (T, H, W) bool: bilinear to (H, W), ×255 truncated to uint8, Otsu per frame (§6)."""
    _check_3d(fused, "fused")
    up = upsample_bilinear(fused.float().cpu(), tuple(out_hw))
    # clamp only guards fp overshoot; the cast truncates like the reference's .astype(uint8)
    gray = (up * 255.0).clamp(0.0, 255.0).to(torch.uint8).numpy()
    masks = np.zeros(gray.shape, dtype=bool)
    for t, frame in enumerate(gray):
        if frame.max() == 0:
            continue  # an all-zero frame stays empty
        _, binary = cv2.threshold(np.ascontiguousarray(frame), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        masks[t] = binary > 0
    return masks


def coarse_targets(
    fused: torch.Tensor, coarse: np.ndarray, key_frame_indices: list[int], num_frames: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Coarse masks -> targets before SAM2: (target masks (K, T, H, W) bool, scores (K,) float32).

    A target is one 8-connected component of the coarse mask on the **last key frame**, the
    newest frame of the clip, which a robot acts on and tracking starts from; its mask is that
    component on that clip frame and False on every other frame (no association of components
    across key frames is attempted: that is what SAM2's tracking adds). Its score is the mean
    of F, bilinearly upsampled to the frame size as for the coarse masks (§6), over the
    component's pixels, so in [0, 1]. Targets are ordered by score, highest first.

    fused: F (T_k, h, w); coarse: (T_k, H, W) bool from ``coarse_masks``.
    """
    _check_3d(fused, "fused")
    t_k, height, width = coarse.shape
    if len(key_frame_indices) != t_k or fused.shape[0] != t_k:
        raise ValueError(f"{len(key_frame_indices)} key frames, {t_k} coarse masks, {fused.shape[0]} maps")
    last = np.ascontiguousarray(coarse[-1]).astype(np.uint8)
    count, labels = cv2.connectedComponents(last, connectivity=8)
    up = upsample_bilinear(fused[-1:].float().cpu(), (height, width))[0].numpy()
    components = [labels == label for label in range(1, count)]
    scores = np.array([up[c].mean() for c in components], dtype=np.float32)
    order = np.argsort(-scores, kind="stable")
    masks = np.zeros((len(components), num_frames, height, width), dtype=bool)
    for k, index in enumerate(order):
        masks[k, key_frame_indices[-1]] = components[index]
    return masks, scores[order]


def _check_3d(x: torch.Tensor, name: str) -> None:
    if x.dim() != 3:
        raise ValueError(f"{name} must be (t, h, w); got {tuple(x.shape)}")
