"""Session-scoped pytest fixtures for the tiny random models (load with ``pytest_plugins = ["models"]``).

The tiny Qwen2.5-VL is built once per session with ``save_pretrained`` and loaded back with
``from_pretrained`` through ``decaf_ros.core.loading`` (the same path as a real checkpoint).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def build_tiny(tmp_path_factory: pytest.TempPathFactory, build: Callable[[Path], Path], name: str) -> str:
    """Build a tiny model offline into a fresh session folder ``name``; return the folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(TINY_THREADS)
    return str(build(Path(tmp_path_factory.mktemp(name))))


def load_tiny(folder: str, **overrides) -> Any:
    """The family's adapter on a tiny model through ``load_mllm`` (cpu, fp32, ``tiny_config``)."""
    from decaf_ros.core.mllm import load_mllm

    return load_mllm(folder, device="cpu", dtype=torch.float32, config=tiny_config(folder, **overrides))


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny Qwen2.5-VL (model + processor)."""
    from decaf_ros.core.tiny.qwen import build_tiny_qwen2_5_vl

    return build_tiny(tmp_path_factory, build_tiny_qwen2_5_vl, "tiny_qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_qwen_adapter(tiny_qwen_dir: str):
    """The Qwen2.5-VL adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    return load_tiny(tiny_qwen_dir)
