"""Overlay drawing: tint inside the mask only, contour on its edge, strips scaled to the width limit."""
from __future__ import annotations

import numpy as np
import pytest

from decaf_ros.core.overlay import PALETTE, draw_overlay, image_strip


def test_tint_is_applied_inside_the_mask_only():
    frame = np.full((60, 80, 3), 100, dtype=np.uint8)
    mask = np.zeros((1, 60, 80), dtype=bool)
    mask[0, 20:40, 30:50] = True
    out = draw_overlay(frame, mask, alpha=0.5)
    expected = np.round(0.5 * 100 + 0.5 * np.array(PALETTE[0])).astype(np.uint8)
    assert np.array_equal(out[30, 40], expected)  # interior: blended, away from the contour
    assert np.array_equal(out[5, 5], frame[5, 5])  # far outside: untouched
    assert np.array_equal(out[20, 30], np.array(PALETTE[0], dtype=np.uint8))  # on the outline
    assert np.array_equal(frame[30, 40], [100, 100, 100])  # input not modified


def test_empty_masks_leave_the_frame_unchanged_and_labels_are_safe():
    frame = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    assert np.array_equal(draw_overlay(frame, np.zeros((2, 40, 50), dtype=bool), ["a", "b"]), frame)
    mask = np.zeros((1, 40, 50), dtype=bool)
    mask[0, 10:30, 10:30] = True
    out = draw_overlay(frame, mask, ["\u00e9t\u00e9 \u2014 mug"])  # non-ASCII label must not raise
    assert out.shape == frame.shape


def test_image_strip_tiles_and_scales_to_the_width_limit():
    tiles = [np.zeros((30, 40, 3), dtype=np.uint8)] * 4
    assert image_strip(tiles).shape == (30, 160, 3)
    assert image_strip(tiles, max_width=80).shape == (15, 80, 3)
    with pytest.raises(ValueError):
        image_strip([])
