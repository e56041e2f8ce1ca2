"""Map post-processing (§5) and coarse masks (§6) on hand-computed inputs."""
import math

import numpy as np
import pytest
import torch

from decaf_ros.core.fusion import (
    align_video_to_frames,
    coarse_masks,
    coarse_targets,
    contrast,
    fuse_maps,
    fuse_video_frame,
    gaussian_kernel,
    minmax_global,
    minmax_per_frame,
    smooth_maps,
    upsample_bilinear,
)

# k=3, σ=1: unnormalised centre 1, edge e^-0.5, corner e^-1; sum S = 1 + 4e^-0.5 + 4e^-1 ≈ 4.897640
S3 = 1 + 4 * math.exp(-0.5) + 4 * math.exp(-1.0)
CENTRE, EDGE, CORNER = 1 / S3, math.exp(-0.5) / S3, math.exp(-1.0) / S3  # ≈ 0.204180, 0.123841, 0.075114


def test_gaussian_kernel_k3_values():
    k = gaussian_kernel(3, 1.0)
    assert k.shape == (3, 3) and k.dtype == torch.float32
    assert float(k[1, 1]) == pytest.approx(0.2041799555, abs=1e-7)
    assert float(k[0, 1]) == pytest.approx(0.1238414904, abs=1e-7)
    assert float(k[0, 0]) == pytest.approx(0.0751136080, abs=1e-7)
    for i, j, expected in [(1, 1, CENTRE), (0, 1, EDGE), (1, 2, EDGE), (2, 2, CORNER), (2, 0, CORNER)]:
        assert float(k[i, j]) == pytest.approx(expected, rel=1e-6)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)


def test_gaussian_kernel_is_built_in_float32_like_the_reference():
    """Each k=3 weight is the float32 computation, one ulp below the float64 value rounded to float32.

    exp and the normalisation run in float32 (§5.2, §13 item 12); building the kernel in float64
    and casting would move every smoothed value by an ulp.
    """
    k = gaussian_kernel(3, 1.0).numpy()
    assert [float(k[1, 1]), float(k[0, 1]), float(k[0, 0])] == [
        0.20417994260787964, 0.12384139746427536, 0.07511360198259354]
    assert [float(np.float32(v)) for v in (CENTRE, EDGE, CORNER)] == [
        0.20417995750904083, 0.12384140491485596, 0.07511360943317413]


def test_gaussian_kernel_k7_symmetric_and_normalised():
    k = gaussian_kernel(7, 1.0)
    assert k.shape == (7, 7)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(k, k.flip(0)) and torch.equal(k, k.T)
    assert int(k.argmax()) == 24  # centre of 7×7
    with pytest.raises(ValueError):
        gaussian_kernel(4, 1.0)


def test_smoothing_zero_padding_attenuates_borders():
    out = smooth_maps(torch.ones(1, 5, 5), 3, 1.0)[0]
    assert float(out[2, 2]) == pytest.approx(1.0, abs=1e-6)  # interior: the full kernel
    # edge pixel loses one outer row of the kernel: corner + edge + corner
    assert float(out[0, 2]) == pytest.approx(1 - (2 * CORNER + EDGE), abs=1e-6)  # ≈ 0.725933
    # corner pixel keeps only centre + 2 edges + 1 corner
    assert float(out[0, 0]) == pytest.approx(CENTRE + 2 * EDGE + CORNER, abs=1e-6)  # ≈ 0.526975


def test_smoothing_is_per_frame():
    maps = torch.zeros(2, 3, 3)
    maps[0, 1, 1] = 1.0  # an impulse in frame 0 reproduces the kernel; frame 1 stays zero
    out = smooth_maps(maps, 3, 1.0)
    torch.testing.assert_close(out[0], gaussian_kernel(3, 1.0))
    assert torch.equal(out[1], torch.zeros(3, 3))


def test_contrast_clamps_both_sides():
    obj = torch.tensor([[[0.5, 0.1, 3.0]]])
    bg = torch.tensor([[[0.2, 0.4, 0.5]]])
    torch.testing.assert_close(contrast(obj, bg), torch.tensor([[[0.3, 0.0, 1.0]]]))


def test_minmax_global_and_flat():
    x = torch.tensor([[[1.0, 3.0]], [[5.0, 2.0]]])
    torch.testing.assert_close(minmax_global(x), torch.tensor([[[0.0, 0.5]], [[1.0, 0.25]]]))
    assert torch.equal(minmax_global(torch.full((2, 2, 2), 7.0)), torch.zeros(2, 2, 2))


def test_minmax_per_frame_and_flat_frame():
    x = torch.tensor([[[1.0, 3.0]], [[4.0, 4.0]], [[0.0, 10.0]]])
    expected = torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]], [[0.0, 1.0]]])
    torch.testing.assert_close(minmax_per_frame(x), expected)


def test_align_video_odd_and_even_frame_counts():
    video = torch.arange(4.0).reshape(4, 1, 1)
    even = align_video_to_frames(video, 8)
    assert even.flatten().tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    odd = align_video_to_frames(video, 7)
    assert odd.flatten().tolist() == [0, 0, 1, 1, 2, 2, 3]
    same = align_video_to_frames(video, 4)  # LLaVA / InternVL: one slot per frame
    assert same.flatten().tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        align_video_to_frames(video, 12)


def test_bilinear_2x2_to_4x4_align_corners_false():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    # source coordinate of output i: (i + 0.5)/2 - 0.5 -> -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1])
    # so weights along each axis are 0, 0.25, 0.75, 1 and out[i, j] = c[j] + 2 c[i]
    expected = torch.tensor([[
        [0.0, 0.25, 0.75, 1.0],
        [0.5, 0.75, 1.25, 1.5],
        [1.5, 1.75, 2.25, 2.5],
        [2.0, 2.25, 2.75, 3.0],
    ]])
    torch.testing.assert_close(upsample_bilinear(maps, (4, 4)), expected)
    # fusion with a zero frame map: average halves, then global min–max divides by 1.5
    fused = fuse_video_frame(maps, torch.zeros(1, 4, 4))
    torch.testing.assert_close(fused, expected / 3.0)


def test_fuse_maps_chain_planted():
    """Two key frames, one video slot (Qwen), zero background: F is the fused normalised contrast."""
    obj_video = torch.zeros(1, 3, 3)
    obj_video[0, 1, 1] = 2.0
    obj_frame = torch.zeros(2, 3, 3)
    obj_frame[0, 0, 0] = 1.0
    obj_frame[1, 2, 2] = 4.0
    zeros_v, zeros_f = torch.zeros_like(obj_video), torch.zeros_like(obj_frame)
    out = fuse_maps(obj_video, zeros_v, obj_frame, zeros_f, k_video=3, k_frame=3, sigma=1.0)
    kernel = gaussian_kernel(3, 1.0)
    video = kernel / kernel.max()  # smoothed impulse, global min–max (min is the corner, >0)
    video = (video - video.min()) / (video.max() - video.min())
    frame0 = torch.zeros(3, 3)
    frame0[:2, :2] = kernel[1:, 1:]  # impulse at the corner: zero padding cuts the kernel
    frame0 = frame0 / frame0.max()
    frame1 = frame0.flip(0).flip(1)
    fused = torch.stack([(video + frame0) / 2, (video + frame1) / 2])
    fused = (fused - fused.min()) / (fused.max() - fused.min())
    torch.testing.assert_close(out, fused)
    assert float(out.max()) == pytest.approx(1.0)


def test_otsu_recovers_planted_region_and_keeps_empty_frames_empty():
    rng = np.random.default_rng(0)
    fused = rng.choice([0.05, 0.1, 0.15], size=(2, 12, 16)).astype(np.float32)
    region = np.zeros((12, 16), dtype=bool)
    region[3:8, 5:11] = True
    fused[0][region] = rng.choice([0.85, 0.9, 0.95], size=int(region.sum()))
    fused[1] = 0.0
    masks = coarse_masks(torch.from_numpy(fused), (12, 16))
    assert masks.shape == (2, 12, 16) and masks.dtype == bool
    assert np.array_equal(masks[0], region)
    assert not masks[1].any()


def test_coarse_masks_upsample_to_output_size():
    fused = torch.zeros(1, 2, 2)
    fused[0, 0, 0] = 1.0
    masks = coarse_masks(fused, (8, 6))
    assert masks.shape == (1, 8, 6)
    assert masks[0, 0, 0] and not masks[0, 7, 5]


def test_coarse_targets_are_the_last_key_frames_components_ranked_by_mean_f():
    fused = torch.zeros(2, 8, 8)
    fused[1, 1:3, 1:3] = 1.0  # strong blob
    fused[1, 5:7, 5:7] = 0.6  # weaker blob
    fused[0, 4, 4] = 1.0  # earlier key frame: not a target
    coarse = np.zeros((2, 8, 8), dtype=bool)
    coarse[0, 4, 4] = True
    coarse[1, 1:3, 1:3] = True
    coarse[1, 5:7, 5:7] = True
    masks, scores = coarse_targets(fused, coarse, key_frame_indices=[0, 4], num_frames=5)
    assert masks.shape == (2, 5, 8, 8) and masks.dtype == bool
    assert scores.dtype == np.float32
    assert np.allclose(scores, [1.0, 0.6])
    assert masks[0, 4, 1:3, 1:3].all() and masks[0, 4].sum() == 4
    assert masks[1, 4, 5:7, 5:7].all() and masks[1, 4].sum() == 4
    assert not masks[:, :4].any()  # only the last key frame (clip frame 4) holds targets


def test_coarse_targets_of_an_empty_mask_are_none():
    masks, scores = coarse_targets(torch.zeros(1, 4, 4), np.zeros((1, 4, 4), bool), [0], 1)
    assert masks.shape == (0, 1, 4, 4) and scores.shape == (0,)
