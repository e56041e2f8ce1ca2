"""The MLLM adapter interface, the model_type -> adapter table, and ``load_mllm``.

An adapter hides one model family's visual tokenisation: it builds the prompt, runs the
prefill (and greedy generation) with the rollout capture active, and returns the rollout
values at the visual tokens reshaped to (t, h, w). Everything downstream is family-agnostic.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import DecafConfig
from ..loading import ModelLoadError, load_errors, resolve_model_source
from .registry import load_mllm_adapters


@dataclass
class PassMaps:
    """Result of one visual prompting pass."""

    maps: torch.Tensor  # (t, h, w) float32 cpu: raw rollout values at the visual tokens
    answers: list[str] = field(default_factory=list)  # generated answers ([] for prefill-only)

    @property
    def grid_hw(self) -> tuple[int, int]:
        """(h, w) token grid of the pass; a video pass's grid sizes the frame path (§2.3)."""
        return int(self.maps.shape[1]), int(self.maps.shape[2])


class UnsupportedModelError(ModelLoadError):
    """The checkpoint's architecture has no adapter."""


class MLLMAdapter(ABC):
    """One model family behind the interface the pipeline uses (docs/architecture.md)."""

    family: str = ""
    num_layers: int = 0  # LLM depth N
    start_layer: int = 0  # rollout start s (layers s .. N-1)

    @abstractmethod
    def video_pass(self, frames: Sequence[np.ndarray], text: str, generate: bool) -> PassMaps:
        """All frames as one video; maps (t, h, w), one per temporal token slot (Qwen: ceil(T / 2))."""

    @abstractmethod
    def frame_pass(
        self, frames: Sequence[np.ndarray], text: str, generate: bool,
        video_grid_hw: tuple[int, int] | None = None,
    ) -> PassMaps:
        """Each frame as its own image prompt; maps (T, h, w).

        video_grid_hw: the ``grid_hw`` of the clip's video pass, for families whose frame path is
        sized from it (Qwen: ``frame_resize_scale`` x per side); the others ignore it.
        """

    @abstractmethod
    def generate_text(self, text: str) -> str:
        """Text-only chat turn (P2); greedy."""

    @contextlib.contextmanager
    def sharing_prompt_prefixes(self, enabled: bool = True) -> Iterator[None]:
        """Prompts within the block may reuse each other's visual prefix (exact; see mllm/prefix.py).

        The default shares nothing: every prompt runs in full.
        """
        yield


_ADAPTERS: dict[str, type[MLLMAdapter]] = {}  # HF model_type -> adapter class


def register_adapter(*model_types: str) -> Callable[[type[MLLMAdapter]], type[MLLMAdapter]]:
    """Class decorator: map HF config ``model_type`` names to an adapter class."""

    def decorate(cls: type[MLLMAdapter]) -> type[MLLMAdapter]:
        for name in model_types:
            _ADAPTERS[name] = cls
        return cls

    return decorate


def supported_model_types() -> list[str]:
    """HF ``model_type`` names that have an adapter."""
    load_mllm_adapters()  # imported lazily: the adapters import transformers models
    return sorted(_ADAPTERS)


def adapter_for(model_type: str) -> type[MLLMAdapter]:
    """The adapter class for a config ``model_type``; UnsupportedModelError otherwise."""
    load_mllm_adapters()  # imported lazily: the adapters import transformers models
    if model_type not in _ADAPTERS:
        raise UnsupportedModelError(
            f"unsupported MLLM architecture '{model_type}'; supported model types: "
            f"{', '.join(sorted(_ADAPTERS))}")
    return _ADAPTERS[model_type]


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
