"""decaf-segment writes what it promises, and refuses bad input with a clear message."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from decaf_ros import cli
from decaf_ros.core.loading import ModelLoadError
from common_fixtures import camera_pan


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def tiny_args(tiny_qwen_dir, tiny_sam2_dir) -> list[str]:
    return ["--mllm", tiny_qwen_dir, "--sam2", str(tiny_sam2_dir), "--device", "cpu", "--dtype", "float32",
            "--key-frames", "4", "--max-new-tokens", "4", "--video-max-tokens", "6"]


def test_cli_writes_masks_overlays_and_summary(tmp_path, tiny_qwen_dir, tiny_sam2_dir):
    frames = camera_pan(6)
    folder = write_frames(tmp_path / "clip", frames)
    out = tmp_path / "out"
    code = cli.main([str(folder), "the astronaut", "--out", str(out), *tiny_args(tiny_qwen_dir, tiny_sam2_dir)])
    assert code == 0
    masks = sorted((out / "masks").glob("*.png"))
    assert [m.stem for m in masks] == [f"{i:05d}" for i in range(6)]
    for path in masks:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == frames[0].shape[:2] and set(np.unique(mask)) <= {0, 255}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_frames"] == 6 and summary["query"] == "the astronaut"
    assert len(summary["mask_area_px"]) == 6 and summary["num_targets"] >= 1
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    video.release()
    strip = cv2.imread(str(out / "overlay_key_frames.png"))
    assert strip.shape == (frames[0].shape[0], 4 * frames[0].shape[1], 3)


def test_cli_coarse_only_writes_key_frames(tmp_path, tiny_qwen_dir, tiny_sam2_dir):
    folder = write_frames(tmp_path / "clip", camera_pan(6))
    out = tmp_path / "out"
    assert cli.main([str(folder), "the astronaut", "--out", str(out), "--coarse-only",
                     *tiny_args(tiny_qwen_dir, tiny_sam2_dir)]) == 0
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == ["00000", "00001", "00003", "00005"]
    assert json.loads((out / "summary.json").read_text())["coarse_only"] is True


def test_cli_reads_a_video_file(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = camera_pan(4)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    read, names = cli.read_frames(path)
    assert len(read) == 4 and read[0].shape == frames[0].shape and names[0] == "00000"


@pytest.mark.parametrize("case,message", [
    ("missing", "input not found"),
    ("empty_folder", "no image files"),
    ("bad_video", "cannot read any frame"),
    ("empty_query", "query is empty"),
    ("mixed_sizes", "one size"),
])
def test_cli_reports_bad_input(tmp_path, capsys, case, message, tiny_qwen_dir, tiny_sam2_dir):
    query = "the mug"
    source = tmp_path / "missing"
    if case == "empty_folder":
        source.mkdir()
    elif case == "bad_video":
        source = tmp_path / "broken.mp4"
        source.write_bytes(b"not a video at all")
    elif case == "empty_query":
        source, query = write_frames(tmp_path / "clip", camera_pan(2)), "   "
    elif case == "mixed_sizes":
        source = write_frames(tmp_path / "clip", camera_pan(2))
        cv2.imwrite(str(source / "00009.png"), np.zeros((10, 12, 3), np.uint8))
    code = cli.main([str(source), query, "--out", str(tmp_path / "out"), *tiny_args(tiny_qwen_dir, tiny_sam2_dir)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_variant_options_reach_the_config(tmp_path, monkeypatch):
    seen = []

    def capture(config, load_sam2=True):
        seen.append(config)
        raise ModelLoadError("not loading models in this test")

    monkeypatch.setattr(cli.DecafPipeline, "from_config", staticmethod(capture))
    folder = write_frames(tmp_path / "clip", camera_pan(2))
    args = [str(folder), "the astronaut", "--out", str(tmp_path / "out")]
    assert cli.main(args) == 2
    assert cli.main([*args, "--prompt-object-version", "2", "--prompt-choice-version", "1",
                     "--prompt-background-version", "3", "--image-processor-backend", "torchvision"]) == 2
    variants = [(c.prompt_object_version, c.prompt_choice_version, c.prompt_background_version,
                 c.image_processor_backend) for c in seen]
    assert variants == [(0, 0, 0, "pil"), (2, 1, 3, "torchvision")]
    assert [(c.share_prompt_prefix, c.share_sam2_features) for c in seen] == [(True, True)] * 2
    assert cli.main([*args, "--no-share-prompt-prefix", "--no-share-sam2-features"]) == 2
    assert (seen[-1].share_prompt_prefix, seen[-1].share_sam2_features) == (False, False)
    with pytest.raises(SystemExit):
        cli.main([*args, "--prompt-object-version", "4"])
