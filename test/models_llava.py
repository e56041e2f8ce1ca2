"""Session fixtures for the tiny random LLaVA-OneVision (import the fixtures by name in a test module).

Built once with ``save_pretrained`` and loaded back through ``load_mllm`` (the real loading path).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from models import TINY_THREADS, tiny_config


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny LLaVA-OneVision (model + processor)."""
    from decaf_ros.core.tiny.llava_onevision import build_tiny_llava_onevision

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(TINY_THREADS)
    return str(build_tiny_llava_onevision(Path(tmp_path_factory.mktemp("tiny_llava_onevision"))))


@pytest.fixture(scope="session")
def tiny_llava_adapter(tiny_llava_dir: str):
    """The LLaVA-OneVision adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    from decaf_ros.core.mllm import load_mllm

    return load_mllm(tiny_llava_dir, device="cpu", dtype=torch.float32, config=tiny_config(tiny_llava_dir))
