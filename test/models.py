"""Session-scoped pytest fixtures for the tiny random models (load with ``pytest_plugins = ["models"]``).

The tiny Qwen2.5-VL is built once per session with ``save_pretrained`` and loaded back with
``from_pretrained`` through ``decaf_ros.core.loading`` (the same path as a real checkpoint).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from decaf_ros.core.config import DecafConfig

# The tiny models are far too small for intra-op threads to pay off; on shared 2-core CI
# machines two threads spinning against other processes made a 0.08 s pass take 3 s.
TINY_THREADS = 1


def tiny_config(folder: str, **overrides) -> DecafConfig:
    """Settings that keep tiny-model passes fast: small token budget, short answers."""
    base = dict(mllm=folder, device="cpu", dtype="float32", video_max_tokens=6,
                max_new_tokens=4, frame_batch_size=2)
    base.update(overrides)
    return DecafConfig(**base)


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny Qwen2.5-VL (model + processor)."""
    from decaf_ros.core.tiny.qwen import build_tiny_qwen2_5_vl

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(TINY_THREADS)
    return str(build_tiny_qwen2_5_vl(Path(tmp_path_factory.mktemp("tiny_qwen2_5_vl"))))


@pytest.fixture(scope="session")
def tiny_qwen_adapter(tiny_qwen_dir: str):
    """The Qwen2.5-VL adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    from decaf_ros.core.mllm import load_mllm

    config = tiny_config(tiny_qwen_dir)
    return load_mllm(tiny_qwen_dir, device="cpu", dtype=torch.float32, config=config)
