"""The one tiny-model path: built once into a cache, the fallback and ``--tiny`` with one set of settings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from decaf_ros import cli
from decaf_ros.core.config import DecafConfig
from decaf_ros.core.loading import ModelLoadError
from decaf_ros.devtools import tiny_models
from decaf_ros.devtools.tiny_recipe import TinyModel
from common_fixtures import camera_pan

MISSING = "decaf-ros-test/not-a-cached-model"


@pytest.fixture
def tiny_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_qwen_dir: str, tiny_sam2_dir: Path) -> Path:
    """A tiny-model cache that already holds the session's builds (nothing is rebuilt)."""
    root = tmp_path / "tiny-models"
    root.mkdir()
    (root / tiny_models.tiny_mllms()[0].folder).symlink_to(tiny_qwen_dir)
    (root / tiny_models.tiny_sam2().folder).symlink_to(tiny_sam2_dir)
    monkeypatch.setattr(tiny_models, "tiny_model_dir", lambda: root)
    return root


def test_built_once_then_reused_and_no_scratch_left(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(folder: Path) -> Path:
        calls.append(folder)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        return folder

    model = TinyModel("toy", "toy_type", build)
    first = tiny_models.ensure_built(model, tmp_path)
    assert tiny_models.ensure_built(model, tmp_path) == first == str(tmp_path / "toy_type")
    assert len(calls) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["toy_type"]


def test_fallback_uses_the_tiny_models_with_the_reduced_settings_and_says_so(offline, tiny_cache) -> None:
    config = DecafConfig(mllm=MISSING, sam2=MISSING, device="cpu", dtype="float32", rollout_start_layer=1)
    with pytest.raises(ModelLoadError):
        tiny_models.load_pipeline(config)
    pipeline, warning = tiny_models.load_pipeline(config, allow_tiny_fallback=True)
    used = pipeline.config
    expected = (tiny_cache / tiny_models.tiny_mllms()[0].folder, tiny_cache / tiny_models.tiny_sam2().folder)
    assert (used.mllm, used.sam2) == tuple(str(folder) for folder in expected)
    assert {k: getattr(used, k) for k in tiny_models.TINY_SETTINGS} == tiny_models.TINY_SETTINGS
    assert used.rollout_start_layer is None and pipeline.mllm.start_layer == pipeline.mllm.num_layers // 2
    assert warning.startswith("USING TINY RANDOM MODELS") and MISSING in warning
    assert all(f"{k}={v}" in warning for k, v in tiny_models.TINY_SETTINGS.items())


def test_configured_models_load_without_a_warning(tiny_qwen_dir: str, tiny_sam2_dir: Path) -> None:
    config = DecafConfig(mllm=tiny_qwen_dir, sam2=str(tiny_sam2_dir), device="cpu", dtype="float32")
    pipeline, warning = tiny_models.load_pipeline(config, allow_tiny_fallback=True)
    assert warning is None and pipeline.config is config


def test_cli_tiny_flag_takes_the_same_path(tiny_cache, tmp_path: Path, capsys) -> None:
    import cv2

    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(camera_pan(6)):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert cli.main([str(folder), "the astronaut", "--tiny", "--coarse-only", "--key-frames", "2",
                     "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["key_frames"]) == tiny_models.TINY_SETTINGS["num_key_frames"]  # not the 2 asked for
    assert "USING TINY RANDOM MODELS" in capsys.readouterr().err
