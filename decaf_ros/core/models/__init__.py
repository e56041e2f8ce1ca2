"""MLLM adapters: one per model family, picked from the checkpoint's config (base.py)."""
from .base import (
    MLLMAdapter,
    PassMaps,
    UnsupportedModelError,
    adapter_for,
    load_mllm,
    register_adapter,
    rollout_start_layer,
    supported_model_types,
)

__all__ = [
    "MLLMAdapter",
    "PassMaps",
    "UnsupportedModelError",
    "adapter_for",
    "load_mllm",
    "register_adapter",
    "rollout_start_layer",
    "supported_model_types",
]
