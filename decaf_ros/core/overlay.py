"""Human-readable pictures of a result: tinted masks, contours and labels (OpenCV)."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Distinct, colour-blind-friendly tints (Okabe-Ito), RGB.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
    (0, 114, 178), (213, 94, 0), (204, 121, 167),
)


def draw_overlay(
    frame: np.ndarray,
    target_masks: np.ndarray,
    labels: Sequence[str] = (),
    alpha: float = 0.45,
) -> np.ndarray:
    """Tint each target's mask on an RGB frame, outline it and write its label.

    frame: (H, W, 3) uint8 RGB; target_masks: (K, H, W) bool. Returns a new (H, W, 3) uint8 RGB image.
    """
    out = frame.copy()
    for k, mask in enumerate(target_masks):
        if not mask.any():
            continue
        color = PALETTE[k % len(PALETTE)]
        tint = np.empty_like(out)
        tint[:] = color
        blended = cv2.addWeighted(out, 1.0 - alpha, tint, alpha, 0.0)
        out[mask] = blended[mask]
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, 2)
        if k < len(labels) and labels[k]:
            _draw_label(out, labels[k], mask, color)
    return out


def _draw_label(image: np.ndarray, text: str, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    """Write text just above the mask's bounding box, kept inside the image."""
    # OpenCV's Hershey fonts draw ASCII only; anything else would show as '?'.
    text = "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in text)
    ys, xs = np.nonzero(mask)
    x, y = int(xs.min()), int(ys.min())
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    y = max(y - 4, th + 2)
    x = min(max(x, 0), max(image.shape[1] - tw - 2, 0))
    cv2.rectangle(image, (x, y - th - 2), (x + tw + 2, y + baseline), color, thickness=-1)
    cv2.putText(image, text, (x + 1, y - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)


def image_strip(images: Sequence[np.ndarray], max_width: int = 2048) -> np.ndarray:
    """Tile same-size RGB images side by side, scaled so the strip is at most max_width wide."""
    if not images:
        raise ValueError("image_strip needs at least one image")
    strip = np.concatenate(list(images), axis=1)
    if strip.shape[1] > max_width:
        scale = max_width / strip.shape[1]
        size = (max_width, max(1, round(strip.shape[0] * scale)))
        strip = cv2.resize(strip, size, interpolation=cv2.INTER_AREA)
    return strip
