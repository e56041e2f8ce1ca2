"""Helpers the adapter tests share: random clips, planted rollout rows and their expected maps.

A planted row replaces the rollout values by a code of each visual token's true place
(t·10⁴ + row·100 + col), so a correct reshape must reproduce the code grid exactly.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from decaf_ros.core.models import hf_adapter

# (inputs, token_id) -> (B, L) per-token codes; only the visual tokens' codes are kept.
TokenCodes = Callable[[Any, int], torch.Tensor]


def random_clip(n: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """``n`` random uint8 RGB frames of ``size`` (H, W)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def grid_codes(t: int, h: int, w: int, t_step: int = 1) -> torch.Tensor:
    """(t, h, w) grid of the code t·t_step·10⁴ + row·100 + col."""
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return (tt * t_step * 10_000 + hh * 100 + ww).float()


def plant_row(adapter: Any, monkeypatch: pytest.MonkeyPatch, codes: TokenCodes) -> None:
    """The adapter's real pass runs, then its rollout row is replaced by ``codes``.

    Text tokens get -1, so any of them leaking into a map shows.
    """
    original = adapter._run

    def planted(inputs: Any, token_id: int, generate: bool) -> tuple[torch.Tensor, list[str]]:
        _, answers = original(inputs, token_id, generate)
        code = codes(inputs, token_id).float()
        return torch.where(inputs["input_ids"] == token_id, code, torch.full_like(code, -1.0)), answers

    monkeypatch.setattr(adapter, "_run", planted)


def record_capture(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, bool]]:
    """Record (visual mask, span_rule) of every rollout capture the adapters open."""
    seen: list[tuple[torch.Tensor, bool]] = []
    real = hf_adapter.capture_rollout

    def recording(model, token_is_visual, start_layer, span_rule=True, **kwargs):
        seen.append((token_is_visual.clone(), span_rule))
        return real(model, token_is_visual, start_layer, span_rule=span_rule, **kwargs)

    monkeypatch.setattr(hf_adapter, "capture_rollout", recording)
    return seen


def assert_generation_is_deterministic(adapter: Any, frames: list[np.ndarray], text: str) -> Any:
    """Two greedy video passes agree, and their map is the prefill-only one; returns the first."""
    first = adapter.video_pass(frames, text, generate=True)
    second = adapter.video_pass(frames, text, generate=True)
    prefill = adapter.video_pass(frames, text, generate=False)
    assert len(first.answers) == 1 and first.answers == second.answers
    torch.testing.assert_close(first.maps, second.maps, rtol=0, atol=0)
    torch.testing.assert_close(first.maps, prefill.maps, rtol=0, atol=0)  # map independent of answer
    return first


def decode(adapter: Any, ids: torch.Tensor) -> str:
    """Token ids as text, special tokens included."""
    return adapter.processor.tokenizer.decode(ids, skip_special_tokens=False)


def assert_batching_keeps_maps(adapter: Any, monkeypatch: pytest.MonkeyPatch, frames: list[np.ndarray],
                               **frame_pass_kwargs: Any) -> None:
    """The frame path gives the same maps in batches of the configured size and one by one."""
    batched = adapter.frame_pass(frames, "which object? ", False, **frame_pass_kwargs)
    monkeypatch.setattr(adapter, "config", adapter.config.with_overrides(frame_batch_size=1))
    single = adapter.frame_pass(frames, "which object? ", False, **frame_pass_kwargs)
    torch.testing.assert_close(batched.maps, single.maps, rtol=1e-5, atol=1e-7)
