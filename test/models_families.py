"""Session-scoped fixtures for the tiny random Qwen3-VL and InternVL3 models.

Built once per session with ``save_pretrained`` and loaded back through ``load_mllm`` (the
family is picked from the saved config's ``model_type``), like a real checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from models import TINY_THREADS, tiny_config


def _load(folder: str, **overrides):
    from decaf_ros.core.mllm import load_mllm

    return load_mllm(folder, device="cpu", dtype=torch.float32, config=tiny_config(folder, **overrides))


@pytest.fixture(scope="session")
def tiny_qwen3_vl_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny Qwen3-VL (model + processor)."""
    from decaf_ros.core.tiny.qwen3_vl import build_tiny_qwen3_vl

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(TINY_THREADS)
    return str(build_tiny_qwen3_vl(Path(tmp_path_factory.mktemp("tiny_qwen3_vl"))))


@pytest.fixture(scope="session")
def tiny_qwen3_vl_adapter(tiny_qwen3_vl_dir: str):
    """The Qwen3-VL adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    return _load(tiny_qwen3_vl_dir)


@pytest.fixture(scope="session")
def tiny_internvl_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny InternVL3-style model (model + processor)."""
    from decaf_ros.core.tiny.internvl import build_tiny_internvl

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(TINY_THREADS)
    return str(build_tiny_internvl(Path(tmp_path_factory.mktemp("tiny_internvl"))))


@pytest.fixture(scope="session")
def tiny_internvl_adapter(tiny_internvl_dir: str):
    """The InternVL adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    return _load(tiny_internvl_dir)
