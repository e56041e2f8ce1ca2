"""COCO RLE codec and the four dataset readers, on tiny datasets written in the real layouts."""
from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

from decaf_ros.evaluation.datasets import (
    DATA_ROOT_ENV,
    LAYOUTS,
    DatasetError,
    decode_entry,
    iter_samples,
    load_data_file,
    resolve_root,
    rle_counts_from_string,
    rle_decode,
    rle_encode,
)
from decaf_ros.evaluation.synthetic import BOX, DISC, make_synthetic_dataset, render_video, video_name

# Masks with their COCO strings worked out by hand (column-major runs, first run background).
HAND_ENCODED = [
    (np.array([[0, 1], [1, 1], [0, 0]]), [1, 1, 1, 2, 1], "11110"),  # 4th run stored as 2 - 1
    (np.ones((5, 8)), [0, 40], "0X1"),  # 40 = 8 + 32: two 5-bit groups, 'X' = 48 + (8 | 0x20)
    (np.array([[0, 1, 1, 0], [1, 1, 1, 1]]), [1, 5, 1, 1], "151L"),  # 1 - 5 = -4: 'L' = 48 + (-4 & 31)
]


# ---------------------------------------------------------------------------------------- RLE
@pytest.mark.parametrize("mask, counts, text", HAND_ENCODED)
def test_rle_compressed_string_round_trip(mask, counts, text):
    assert rle_counts_from_string(text) == counts
    assert rle_counts_from_string(text.encode()) == counts  # pickles hold bytes
    assert rle_encode(mask) == {"size": list(mask.shape), "counts": text}
    np.testing.assert_array_equal(rle_decode({"size": list(mask.shape), "counts": text}), mask.astype(bool))


@pytest.mark.parametrize("mask, counts, text", HAND_ENCODED)
def test_rle_uncompressed_counts(mask, counts, text):
    np.testing.assert_array_equal(rle_decode({"size": list(mask.shape), "counts": counts}), mask.astype(bool))


def test_rle_random_round_trip_with_large_runs():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (37, 53), (300, 700)]:
        mask = rng.random(shape) < 0.3
        mask[: shape[0] // 2] = False  # long background runs need several 5-bit groups
        np.testing.assert_array_equal(rle_decode(rle_encode(mask)), mask)


def test_rle_wrong_total_raises():
    with pytest.raises(DatasetError):
        rle_decode({"size": [2, 2], "counts": [1, 1]})


def test_decode_entry_none_and_lists():
    assert decode_entry(None) is None and decode_entry([]) is None
    a, b = np.zeros((3, 3), bool), np.zeros((3, 3), bool)
    a[0, 0], b[2, 2] = True, True
    union = decode_entry([rle_encode(a), rle_encode(b)])
    assert union.sum() == 2 and union[0, 0] and union[2, 2]


# ---------------------------------------------------------------------------------------- readers
def expected_gt(layout, video_index, objects):
    _, masks = render_video(video_index)
    return np.logical_or.reduce([masks[o] for o in objects])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_reader_yields_samples_with_the_rendered_ground_truth(tmp_path, layout):
    root = make_synthetic_dataset(tmp_path / layout, layout, n_videos=2, n_expressions=3)
    samples = list(iter_samples(layout, root))
    assert [(s.video, s.exp_id) for s in samples] == [
        (video_name(layout, v), e) for v in range(2) for e in ("0", "1", "2")]
    first = samples[0]
    assert first.dataset == layout and first.expression.startswith("the red disc")
    assert first.frame_names == tuple(f"{i:05d}" for i in range(6))
    gt = first.load_gt()
    assert gt.shape == (6, 48, 64) and gt.dtype == bool
    np.testing.assert_array_equal(gt, expected_gt(layout, 0, [DISC]))
    assert not gt[-1].any()  # the disc has left the picture: a None entry in the mask dict
    np.testing.assert_array_equal(samples[5].load_gt(), expected_gt(layout, 1, [DISC, BOX]))  # union
    frames = first.load_frames()
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    disc_pixels = frames[0][gt[0]]
    assert disc_pixels[:, 0].mean() > 150 and disc_pixels[:, 2].mean() < 100  # RGB order, red disc


def test_revos_type_ids_and_foreground(tmp_path):
    root = make_synthetic_dataset(tmp_path, "revos", n_videos=1, n_expressions=2)
    samples = list(iter_samples("revos", root))
    assert [s.type_id for s in samples] == [0, 1]
    assert samples[0].video == "synth/all/vid0"  # nested video folder
    assert samples[0].frame_paths()[0].is_file()
    foreground = samples[0].foreground_loader()
    np.testing.assert_array_equal(foreground, expected_gt("revos", 0, [DISC, BOX]))


def test_davis_sequential_anno_ids_follow_sorted_order(tmp_path):
    root = make_synthetic_dataset(tmp_path, "davis", n_videos=2, n_expressions=2)
    masks = load_data_file(root / LAYOUTS["davis"].masks)
    assert sorted(masks, key=int) == ["0", "1", "2", "3"]
    samples = list(iter_samples("davis", root))
    # id 2 = third expression in (sorted video, sorted exp id) order = vid1 / "0" = the disc.
    np.testing.assert_array_equal(samples[2].load_gt(), expected_gt("davis", 1, [DISC]))
    assert all(s.type_id is None and s.foreground_loader is None for s in samples)


def test_samples_are_lazy(tmp_path):
    root = make_synthetic_dataset(tmp_path, "mevis", n_videos=1)
    (root / LAYOUTS["mevis"].masks).write_text("{}")  # only read when a GT is asked for
    sample = next(iter_samples("mevis", root))
    with pytest.raises(DatasetError, match="anno_id"):
        sample.load_gt()


# ---------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_missing_mask_file_is_named(tmp_path, layout):
    root = make_synthetic_dataset(tmp_path, layout, n_videos=1)
    missing = root / LAYOUTS[layout].masks
    missing.unlink()
    with pytest.raises(DatasetError, match=str(missing.name)):
        next(iter_samples(layout, root))


def test_missing_meta_and_folder_are_named(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        next(iter_samples("davis", tmp_path / "nowhere"))
    root = make_synthetic_dataset(tmp_path / "d", "revos", n_videos=1)
    (root / "meta_expressions_valid_.json").unlink()
    with pytest.raises(DatasetError, match="meta_expressions_valid_.json"):
        next(iter_samples("revos", root))


def test_malformed_meta_raises(tmp_path):
    root = make_synthetic_dataset(tmp_path, "reasonvos", n_videos=1)
    (root / "meta_expressions_v2.json").write_text('{"not_videos": {}}')
    with pytest.raises(DatasetError, match="videos"):
        next(iter_samples("reasonvos", root))


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "mask_dict.pkl"
    path.write_bytes(pickle.dumps({"0": [print]}))
    with pytest.raises(DatasetError, match="refusing"):
        load_data_file(path)


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    assert resolve_root("revos") == tmp_path / "ReVOS"
    assert resolve_root("revos", "/data/x") == tmp_path.__class__("/data/x")
    monkeypatch.delenv(DATA_ROOT_ENV)
    with pytest.raises(DatasetError, match=DATA_ROOT_ENV):
        resolve_root("davis")
    with pytest.raises(DatasetError, match="unknown dataset"):
        resolve_root("kitti", tmp_path)


def test_frames_unpacked_into_the_root_are_found(tmp_path):
    root = make_synthetic_dataset(tmp_path, "revos", n_videos=1)
    (root / "JPEGImages" / "synth").rename(root / "synth")
    (root / "JPEGImages").rmdir()
    sample = next(iter_samples("revos", root))
    assert sample.frame_dir == root / "synth/all/vid0" and len(sample.load_frames()) == 6


def test_missing_frames_folder_is_named(tmp_path):
    root = make_synthetic_dataset(tmp_path, "mevis", n_videos=1)
    shutil.rmtree(root / "valid_u/JPEGImages")
    with pytest.raises(DatasetError, match="JPEGImages"):
        next(iter_samples("mevis", root))


def test_frame_names_with_extension():
    from decaf_ros.evaluation.datasets import frame_file, frame_stem
    assert frame_file("00001") == "00001.jpg" and frame_file("00001.jpg") == "00001.jpg"
    assert frame_stem("00001.jpg") == "00001" and frame_stem("a.b") == "a.b"
