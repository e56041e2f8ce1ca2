"""Model-source resolution, offline errors, device/dtype choice, adapter registry."""
from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from decaf_ros.core.loading import ModelLoadError, pick_device, pick_dtype, resolve_model_source
from decaf_ros.core.models import (
    UnsupportedModelError,
    adapter_for,
    load_mllm,
    rollout_start_layer,
    supported_model_types,
)
from common_fixtures import tiny_config

MISSING_ID = "decaf-ros-test/not-a-cached-model"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Hub offline and an empty cache, whatever the environment says."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def test_local_folder_is_used_as_is(tiny_qwen_dir: str) -> None:
    assert resolve_model_source(tiny_qwen_dir) == str(Path(tiny_qwen_dir).resolve())


def test_folder_without_config_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="config.json"):
        resolve_model_source(str(tmp_path))


def test_missing_folder_is_an_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_source(str(tmp_path / "nope" / "model"))


def test_offline_hub_id_names_model_and_how_to_provide_it(offline) -> None:
    with pytest.raises(ModelLoadError) as info:
        resolve_model_source(MISSING_ID)
    message = str(info.value)
    assert MISSING_ID in message
    assert f"hf download {MISSING_ID} --local-dir" in message
    assert "cache" in message


def test_load_mllm_offline_raises_model_load_error(offline) -> None:
    with pytest.raises(ModelLoadError, match="hf download"):
        load_mllm(MISSING_ID, device="cpu", dtype=torch.float32, config=tiny_config(MISSING_ID))


def test_unsupported_architecture_lists_supported(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(UnsupportedModelError) as info:
        load_mllm(str(tmp_path), device="cpu", dtype=torch.float32, config=tiny_config(str(tmp_path)))
    assert "bert" in str(info.value) and "qwen2_5_vl" in str(info.value)
    assert isinstance(info.value, ModelLoadError)


def test_registry_knows_qwen2_5_vl() -> None:
    assert "qwen2_5_vl" in supported_model_types()
    assert adapter_for("qwen2_5_vl").family == "qwen2_5_vl"


def test_rollout_start_layer_default_and_validation() -> None:
    assert rollout_start_layer(28, None) == 14
    assert rollout_start_layer(36, None) == 18
    assert rollout_start_layer(4, 3) == 3
    with pytest.raises(ValueError, match="4 layers"):
        rollout_start_layer(4, 4)


def test_configured_start_layer_beyond_depth_fails_at_load(tiny_qwen_dir: str) -> None:
    with pytest.raises(ValueError, match="rollout_start_layer"):
        load_mllm(tiny_qwen_dir, "cpu", torch.float32, tiny_config(tiny_qwen_dir, rollout_start_layer=9))


def test_pick_device_and_dtype() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("auto", "cuda") == torch.bfloat16
    assert pick_dtype("float16", "cpu") == torch.float16
    with pytest.raises(ValueError):
        pick_dtype("int8", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA"):
            pick_device("cuda")
