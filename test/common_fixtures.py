"""The test suite's fixtures, in one module (registered by ``conftest.py`` with ``pytest_plugins``).

Every tiny random model the registered families offer (``core/models/<family>/tiny.py``) is
built at most once per session with ``save_pretrained`` and loaded back with ``from_pretrained``
through ``load_mllm`` (the same path as a real checkpoint). ``tiny_mllm`` runs a test once per
tiny MLLM of every family; the named fixtures give the quirk tests their family's model.
Shared clips and the ROS node harness fixture live here too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from skimage import data

from decaf_ros.core.config import DecafConfig
from decaf_ros.devtools.tiny_models import tiny_mllms, tiny_sam2
from decaf_ros.devtools.tiny_recipe import TinyModel

# The tiny models are far too small for intra-op threads to pay off; on shared 2-core CI
# machines two threads spinning against other processes made a 0.08 s pass take 3 s.
TINY_THREADS = 1
TINY_MLLMS = {model.name: model for model in tiny_mllms()}  # registry order


def tiny_config(folder: str, **overrides) -> DecafConfig:
    """Settings that keep tiny-model passes fast: small token budget, short answers."""
    base = dict(mllm=folder, device="cpu", dtype="float32", video_max_tokens=6,
                max_new_tokens=4, frame_batch_size=2)
    base.update(overrides)
    return DecafConfig(**base)


def load_tiny(folder: str, **overrides) -> Any:
    """The family's adapter on a tiny model through ``load_mllm`` (cpu, fp32, ``tiny_config``)."""
    from decaf_ros.core.models import load_mllm

    return load_mllm(folder, device="cpu", dtype=torch.float32, config=tiny_config(folder, **overrides))


class TinyBuilds:
    """Each tiny model built (and its adapter loaded) on first request, then reused."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._factory = tmp_path_factory
        self._dirs: dict[str, str] = {}
        self._adapters: dict[str, Any] = {}

    def folder(self, model: TinyModel) -> str:
        if model.name not in self._dirs:
            torch.set_num_threads(TINY_THREADS)
            self._dirs[model.name] = str(model.build(Path(self._factory.mktemp(f"tiny_{model.folder}"))))
        return self._dirs[model.name]

    def mllm_dir(self, name: str) -> str:
        return self.folder(TINY_MLLMS[name])

    def adapter(self, name: str) -> Any:
        """The adapter on tiny MLLM ``name`` (cpu, fp32, rollout from layer 2 of 4)."""
        if name not in self._adapters:
            self._adapters[name] = load_tiny(self.mllm_dir(name))
        return self._adapters[name]


@pytest.fixture(scope="session")
def tiny_builds(tmp_path_factory: pytest.TempPathFactory) -> TinyBuilds:
    return TinyBuilds(tmp_path_factory)


@pytest.fixture(scope="session", params=list(TINY_MLLMS))
def tiny_mllm(request: pytest.FixtureRequest, tiny_builds: TinyBuilds) -> tuple[str, Any]:
    """(folder, adapter) of each tiny MLLM of every registered family, one test run per model."""
    return tiny_builds.mllm_dir(request.param), tiny_builds.adapter(request.param)


@pytest.fixture(scope="session")
def tiny_sam2_dir(tiny_builds: TinyBuilds) -> Path:
    """Folder holding a save_pretrained tiny SAM2 video model + processor (load with from_pretrained)."""
    return Path(tiny_builds.folder(tiny_sam2()))


# Named models for the per-family quirk tests (and for tests that need one real adapter).
@pytest.fixture(scope="session")
def tiny_qwen_dir(tiny_builds: TinyBuilds) -> str:
    return tiny_builds.mllm_dir("qwen2.5-vl")


@pytest.fixture(scope="session")
def tiny_qwen_adapter(tiny_builds: TinyBuilds) -> Any:
    return tiny_builds.adapter("qwen2.5-vl")


@pytest.fixture(scope="session")
def tiny_qwen3_vl_dir(tiny_builds: TinyBuilds) -> str:
    return tiny_builds.mllm_dir("qwen3-vl")


@pytest.fixture(scope="session")
def tiny_qwen3_vl_adapter(tiny_builds: TinyBuilds) -> Any:
    return tiny_builds.adapter("qwen3-vl")


@pytest.fixture(scope="session")
def tiny_internvl_dir(tiny_builds: TinyBuilds) -> str:
    return tiny_builds.mllm_dir("internvl")


@pytest.fixture(scope="session")
def tiny_internvl_adapter(tiny_builds: TinyBuilds) -> Any:
    return tiny_builds.adapter("internvl")


@pytest.fixture(scope="session")
def tiny_llava_dir(tiny_builds: TinyBuilds) -> str:
    return tiny_builds.mllm_dir("llava-ov")


@pytest.fixture(scope="session")
def tiny_llava_adapter(tiny_builds: TinyBuilds) -> Any:
    return tiny_builds.adapter("llava-ov")


# ----------------------------------------------------------------------------- ROS node
@pytest.fixture
def make_harness(rclpy_context):
    """``make(**kwargs)`` -> a ``node_harness.Harness`` (a DecafNode driven over real rclpy); all closed after."""
    from node_harness import Harness

    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        harness = Harness(rclpy_context, **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


# ----------------------------------------------------------------------------- hub
@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hub offline and an empty cache, whatever the environment says (a lookup fails at once)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


# ----------------------------------------------------------------------------- clips
PAN_H, PAN_W = 56, 84


def camera_pan(n: int) -> list[np.ndarray]:
    """A short (PAN_H, PAN_W) clip panning over a real photograph."""
    photo = data.astronaut()  # (512, 512, 3) uint8
    return [np.ascontiguousarray(photo[100 + 4 * i:100 + 4 * i + PAN_H, 150 + 6 * i:150 + 6 * i + PAN_W])
            for i in range(n)]


def random_clip(n: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """``n`` random uint8 RGB frames of ``size`` (H, W)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]
