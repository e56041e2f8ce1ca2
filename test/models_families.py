"""Session-scoped fixtures for the tiny random Qwen3-VL and InternVL3 models.

Built once per session with ``save_pretrained`` and loaded back through ``load_mllm`` (the
family is picked from the saved config's ``model_type``), like a real checkpoint.
"""
from __future__ import annotations

import pytest

from models import build_tiny, load_tiny


@pytest.fixture(scope="session")
def tiny_qwen3_vl_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny Qwen3-VL (model + processor)."""
    from decaf_ros.core.tiny.qwen3_vl import build_tiny_qwen3_vl

    return build_tiny(tmp_path_factory, build_tiny_qwen3_vl, "tiny_qwen3_vl")


@pytest.fixture(scope="session")
def tiny_qwen3_vl_adapter(tiny_qwen3_vl_dir: str):
    """The Qwen3-VL adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    return load_tiny(tiny_qwen3_vl_dir)


@pytest.fixture(scope="session")
def tiny_internvl_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny InternVL3-style model (model + processor)."""
    from decaf_ros.core.tiny.internvl import build_tiny_internvl

    return build_tiny(tmp_path_factory, build_tiny_internvl, "tiny_internvl")


@pytest.fixture(scope="session")
def tiny_internvl_adapter(tiny_internvl_dir: str):
    """The InternVL adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    return load_tiny(tiny_internvl_dir)
