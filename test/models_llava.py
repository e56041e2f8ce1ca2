"""Session fixtures for the tiny random LLaVA-OneVision (import the fixtures by name in a test module).

Built once with ``save_pretrained`` and loaded back through ``load_mllm`` (the real loading path).
"""
from __future__ import annotations

import pytest

from models import build_tiny, load_tiny


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a deterministic tiny LLaVA-OneVision (model + processor)."""
    from decaf_ros.core.tiny.llava_onevision import build_tiny_llava_onevision

    return build_tiny(tmp_path_factory, build_tiny_llava_onevision, "tiny_llava_onevision")


@pytest.fixture(scope="session")
def tiny_llava_adapter(tiny_llava_dir: str):
    """The LLaVA-OneVision adapter on the tiny model (cpu, fp32, rollout from layer 2 of 4)."""
    return load_tiny(tiny_llava_dir)
