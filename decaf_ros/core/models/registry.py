"""The registry of model families: one folder each under ``decaf_ros/core/models/``.

An MLLM family folder holds
  ``adapter.py``  its ``MLLMAdapter`` subclass, registered for the family's HF ``model_type``
                  names with ``@register_adapter`` — the only module the runtime imports;
  ``tiny.py``     ``TINY``: its tiny random models (``TinyModel``, built offline with
                  ``save_pretrained``), and ``real_size_processor``: its processor recipe at the
                  real checkpoints' image geometry;
  ``configs.py``  ``PUBLISHED``: the published real-size architectures, as data.
The SAM2 folder holds ``segmenter.py``, ``tiny.py`` and ``configs.py`` the same way.

``tiny.py`` and ``configs.py`` are development assets: the tests, the benchmarks and the
executables' tiny-model fallback reach them through ``family_module``; the runtime library never
imports them (a test checks). Adding a family is one new folder and its name in ``MLLM_FAMILIES``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# Folder names, in the order the loader, the tests and the benchmark visit them.
MLLM_FAMILIES: tuple[str, ...] = ("qwen2_5_vl", "qwen3_vl", "internvl", "llava_onevision")
SAM2_FAMILY = "sam2"

# The family of the default checkpoint (``config.DEFAULT_MLLM``): the tiny-model fallback and the
# benchmark's "tiny" set use its first tiny model.
DEFAULT_MLLM_FAMILY = "qwen2_5_vl"

RUNTIME_MODULES = {"mllm": "adapter", "sam2": "segmenter"}
DEV_MODULES = ("tiny", "configs")


def family_module(family: str, part: str) -> ModuleType:
    """The ``part`` module (adapter, segmenter, tiny, configs) of the ``family`` folder."""
    if family not in (*MLLM_FAMILIES, SAM2_FAMILY):
        raise KeyError(f"unknown model family '{family}'; registered: {', '.join((*MLLM_FAMILIES, SAM2_FAMILY))}")
    return importlib.import_module(f"{__package__}.{family}.{part}")


def load_mllm_adapters() -> None:
    """Import every MLLM family's adapter module, which registers its model types."""
    for family in MLLM_FAMILIES:
        family_module(family, RUNTIME_MODULES["mllm"])
