"""The MLLM adapter interface, the registry of model families, and ``load_mllm``.

An adapter hides one model family's visual tokenisation: it builds the prompt, runs the
prefill (and greedy generation) with the rollout capture active, and returns the rollout
values at the visual tokens reshaped to (t, h, w). Everything downstream is family-agnostic.
"""
from __future__ import annotations

import contextlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import DecafConfig
from ..loading import ModelLoadError, load_errors, resolve_model_source


@dataclass
class PassMaps:
    """Result of one visual prompting pass."""

    maps: torch.Tensor  # (t, h, w) float32 cpu: raw rollout values at the visual tokens
    answers: list[str] = field(default_factory=list)  # generated answers ([] for prefill-only)


class UnsupportedModelError(ModelLoadError):
    """The checkpoint's architecture has no adapter."""


class MLLMAdapter(ABC):
    """One model family behind the interface the pipeline uses (docs/architecture.md)."""

    family: str = ""
    num_layers: int = 0  # LLM depth N
    temporal_merge: int = 1  # video frames fused per temporal token slot (2 for Qwen)
    start_layer: int = 0  # rollout start s (layers s .. N-1)
    last_video_grid_hw: tuple[int, int] | None = None  # (gh, gw) token grid of the last video pass

    @abstractmethod
    def video_pass(self, frames: Sequence[np.ndarray], text: str, generate: bool) -> PassMaps:
        """All frames as one video; maps (ceil(T / temporal_merge), h, w)."""

    @abstractmethod
    def frame_pass(
        self, frames: Sequence[np.ndarray], text: str, generate: bool,
        video_grid_hw: tuple[int, int] | None = None,
    ) -> PassMaps:
        """Each frame as its own image prompt; maps (T, h, w)."""

    @abstractmethod
    def generate_text(self, text: str) -> str:
        """Text-only chat turn (P2); greedy."""

    @contextlib.contextmanager
    def sharing_prompt_prefixes(self, enabled: bool = True) -> Iterator[None]:
        """Prompts within the block may reuse each other's visual prefix (exact; see mllm/prefix.py).

        The default shares nothing: every prompt runs in full.
        """
        yield


_REGISTRY: dict[str, type[MLLMAdapter]] = {}
# Modules that register the built-in families when imported (kept lazy: they import transformers models).
_BUILTIN_MODULES = (
    "decaf_ros.core.models.qwen2_5_vl.adapter",
    "decaf_ros.core.models.llava_onevision.adapter",
    "decaf_ros.core.models.qwen3_vl.adapter",
    "decaf_ros.core.models.internvl.adapter",
)


def register_adapter(*model_types: str) -> Callable[[type[MLLMAdapter]], type[MLLMAdapter]]:
    """Class decorator: map HF config ``model_type`` names to an adapter class."""

    def decorate(cls: type[MLLMAdapter]) -> type[MLLMAdapter]:
        for name in model_types:
            _REGISTRY[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def supported_model_types() -> list[str]:
    """HF ``model_type`` names that have an adapter."""
    _load_builtins()
    return sorted(_REGISTRY)


def adapter_for(model_type: str) -> type[MLLMAdapter]:
    """The adapter class for a config ``model_type``; UnsupportedModelError otherwise."""
    _load_builtins()
    if model_type not in _REGISTRY:
        raise UnsupportedModelError(
            f"unsupported MLLM architecture '{model_type}'; supported model types: "
            f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[model_type]


def rollout_start_layer(num_layers: int, configured: int | None) -> int:
    """s = N // 2 by default (§4.1); a configured s must be a valid layer index."""
    if configured is None:
        return num_layers // 2
    if not 0 <= configured < num_layers:
        raise ValueError(f"rollout_start_layer={configured} but the LLM has {num_layers} layers "
                         f"(valid: 0 .. {num_layers - 1})")
    return int(configured)


def load_mllm(
    path_or_id: str,
    device: torch.device | str,
    dtype: torch.dtype,
    config: DecafConfig,
) -> MLLMAdapter:
    """Load a supported MLLM from a hub id or a local folder; the family comes from its config."""
    from transformers import AutoConfig

    source = resolve_model_source(path_or_id)
    with load_errors(path_or_id):
        hf_config = AutoConfig.from_pretrained(source)
    cls = adapter_for(hf_config.model_type)
    return cls.from_pretrained(source, hf_config=hf_config, device=torch.device(device),
                               dtype=dtype, config=config)
