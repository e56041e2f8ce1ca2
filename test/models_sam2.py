"""The tiny random SAM2 video model, built once per test session and saved like a real checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_sam2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding a save_pretrained tiny SAM2 video model + processor (load with from_pretrained)."""
    from decaf_ros.core.tiny.sam2 import build_tiny_sam2

    return build_tiny_sam2(tmp_path_factory.mktemp("tiny_sam2"))
