"""The test suite's fixtures, in one module (registered by ``conftest.py`` with ``pytest_plugins``).

Every tiny random model (each MLLM family and SAM2) is built once per session with
``save_pretrained`` and loaded back with ``from_pretrained`` through ``decaf_ros.core.loading``
(the same path as a real checkpoint). Shared clips live here too.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from skimage import data

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
    from decaf_ros.core.models import load_mllm

    return load_mllm(folder, device="cpu", dtype=torch.float32, config=tiny_config(folder, **overrides))


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny Qwen2.5-VL (model + processor)."""
    from decaf_ros.core.models.qwen2_5_vl.tiny import build_tiny_qwen2_5_vl

    return build_tiny(tmp_path_factory, build_tiny_qwen2_5_vl, "tiny_qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_qwen_adapter(tiny_qwen_dir: str):
    """The Qwen2.5-VL adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    return load_tiny(tiny_qwen_dir)


@pytest.fixture(scope="session")
def tiny_qwen3_vl_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny Qwen3-VL (model + processor)."""
    from decaf_ros.core.models.qwen3_vl.tiny import build_tiny_qwen3_vl

    return build_tiny(tmp_path_factory, build_tiny_qwen3_vl, "tiny_qwen3_vl")


@pytest.fixture(scope="session")
def tiny_qwen3_vl_adapter(tiny_qwen3_vl_dir: str):
    """The Qwen3-VL adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    return load_tiny(tiny_qwen3_vl_dir)


@pytest.fixture(scope="session")
def tiny_internvl_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny InternVL3-style model (model + processor)."""
    from decaf_ros.core.models.internvl.tiny import build_tiny_internvl

    return build_tiny(tmp_path_factory, build_tiny_internvl, "tiny_internvl")


@pytest.fixture(scope="session")
def tiny_internvl_adapter(tiny_internvl_dir: str):
    """The InternVL adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    return load_tiny(tiny_internvl_dir)


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny LLaVA-OneVision (model + processor)."""
    from decaf_ros.core.models.llava_onevision.tiny import build_tiny_llava_onevision

    return build_tiny(tmp_path_factory, build_tiny_llava_onevision, "tiny_llava_onevision")


@pytest.fixture(scope="session")
def tiny_llava_adapter(tiny_llava_dir: str):
    """The LLaVA-OneVision adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    return load_tiny(tiny_llava_dir)


@pytest.fixture(scope="session")
def tiny_sam2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding a save_pretrained tiny SAM2 video model + processor (load with from_pretrained)."""
    from decaf_ros.core.models.sam2.tiny import build_tiny_sam2

    return build_tiny_sam2(tmp_path_factory.mktemp("tiny_sam2"))


# ----------------------------------------------------------------------------- clips
PAN_H, PAN_W = 56, 84


def camera_pan(n: int) -> list[np.ndarray]:
    """A short (PAN_H, PAN_W) clip panning over a real photograph."""
    photo = data.astronaut()  # (512, 512, 3) uint8
    return [np.ascontiguousarray(photo[100 + 4 * i:100 + 4 * i + PAN_H, 150 + 6 * i:150 + 6 * i + PAN_W])
            for i in range(n)]
