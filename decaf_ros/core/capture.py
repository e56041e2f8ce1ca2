"""Rollout capture inside the LLM's attention (§4.2): one attention function, no model patching.

``decaf_rollout`` is registered with transformers' ``AttentionInterface`` and selected for
the text layers only (the vision tower keeps sdpa). Outside an active capture, on decode
steps and on layers below the rollout start it simply calls transformers' sdpa function.
During the first prefill of an active capture, on layers ≥ s, it hands the post-RoPE Q and
the (GQA-grouped) K to ``VMaxRollout.add_layer_qk``, which recomputes the fp32 probabilities
of §4.2 (plain causal mask, fp32 softmax) in row blocks, and computes the layer's real output
with the same sdpa function as every other call. Neither side ever holds a whole layer's
(B, H, L, L) attention: the rollout pays for it with a second QKᵀ, the output with nothing.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from .rollout import VMaxRollout, visual_span_mask

ATTN_NAME = "decaf_rollout"

_state = threading.local()  # the capture active in this thread (forward runs in the caller's thread)


@dataclass
class PrefixRollout:
    """What later prompts' rollouts reuse of a shared prompt prefix: its first ``length`` = P tokens.

    Filled by the first prompt's capture, per rollout layer l: the prefix rows' post-RoPE
    queries (B, H, P, d) in the model's dtype, and their V-Max sums Σ_{q<P} max_{k∈V} A_h[q, k]
    (B, H) fp32. The prefix keys are not kept here: a later prompt's attention receives them
    from the prefix's KV cache. Causal attention makes all of these depend on the prefix alone.
    """

    length: int
    queries: dict[int, torch.Tensor] = field(default_factory=dict)
    row_max_sums: dict[int, torch.Tensor] = field(default_factory=dict)

    def stored_bytes(self) -> int:
        tensors = list(self.queries.values()) + list(self.row_max_sums.values())
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class RolloutCapture:
    """Handle of one capture: ``row`` (B, L) fp32 is set when the context exits cleanly.

    With ``prefix`` and ``reuse_prefix=False`` the capture records the prefix's rollout state
    while the prompt runs in full; with ``reuse_prefix=True`` the prompt's forward runs only the
    tokens after the prefix (its attention gets the prefix keys from the KV cache) and the
    rollout completes the prefix rows from the recorded state.
    """

    visual_key_mask: torch.Tensor  # (B, L) bool, the set V of §4.3
    start_layer: int
    num_layers: int
    row_block: int = 512
    prefix: PrefixRollout | None = None
    reuse_prefix: bool = False
    rollout: VMaxRollout | None = None
    row: torch.Tensor | None = None
    layers_seen: list[int] = field(default_factory=list)
    finished: bool = False  # the first prefill has passed the last layer

    @property
    def seq_len(self) -> int:
        return int(self.visual_key_mask.shape[1])

    @property
    def query_rows(self) -> int:
        """Query rows of the captured forward: the whole prompt, or what follows a reused prefix."""
        return self.seq_len - (self.prefix.length if self.reuse_prefix else 0)

    def wants(self, layer_idx: int | None, q_len: int) -> bool:
        """Capture this call? Only the prompt's first forward (not decode steps), layers ≥ s."""
        if self.finished or layer_idx is None or q_len != self.query_rows:
            return False
        if self.layers_seen and layer_idx <= self.layers_seen[-1]:
            self.finished = True  # a second prefill started (e.g. a new generate call)
            return False
        return layer_idx >= self.start_layer

    def attend(self, module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
               value: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float,
               dropout: float = 0.0, **kwargs: Any) -> torch.Tensor:
        """Feed one layer's Q/K to the rollout; return the layer's sdpa output (B, L, H, D)."""
        if key.shape[2] != self.seq_len:
            raise RuntimeError(f"rollout capture needs the whole prompt's keys ({self.seq_len}); got "
                               f"{key.shape[2]} (a cached prefix it was not told about?)")
        if self.rollout is None:
            self.rollout = VMaxRollout(self.visual_key_mask.to(query.device), row_block=self.row_block)
        # K stays (B, Hkv, L, D): the rollout groups query heads per key head instead of repeat_kv
        self._add_layer(int(module.layer_idx), query, key, scaling)
        out, _ = sdpa_attention_forward(module, query, key, value, attention_mask,
                                        dropout=dropout, scaling=scaling, **kwargs)
        self.layers_seen.append(int(module.layer_idx))
        if module.layer_idx == self.num_layers - 1:
            self.finished = True
        return out

    def _add_layer(self, layer: int, query: torch.Tensor, key: torch.Tensor, scaling: float) -> None:
        prefix = self.prefix
        if prefix is None:
            self.rollout.add_layer_qk(query, key, scaling)
        elif self.reuse_prefix:
            if layer not in prefix.queries:
                raise RuntimeError(f"the shared prefix has no recorded state for layer {layer}")
            full = torch.cat([prefix.queries[layer].to(query.device, query.dtype), query], dim=2)
            self.rollout.add_layer_qk(full, key, scaling, prefix_rows=prefix.length,
                                      prefix_sums=prefix.row_max_sums[layer])
        else:
            prefix.row_max_sums[layer] = self.rollout.add_layer_qk(query, key, scaling, prefix_rows=prefix.length)
            prefix.queries[layer] = query[:, :, :prefix.length].clone()

    def finalize(self) -> None:
        expected = list(range(self.start_layer, self.num_layers))
        if self.layers_seen[: len(expected)] != expected:
            raise RuntimeError(
                f"rollout capture saw layers {self.layers_seen}, expected {expected}; is the text model "
                f"using attn_implementation='{ATTN_NAME}' (see attn_implementation_spec)?")
        self.row = self.rollout.last_token_row()
        self.rollout = None  # drop the stored per-layer means


def decaf_rollout_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention-function signature; q/k/v (B, heads, L, D), output (B, L, H, D)."""
    capture: RolloutCapture | None = getattr(_state, "capture", None)
    layer_idx = getattr(module, "layer_idx", None)
    if capture is not None and capture.wants(layer_idx, query.shape[2]):
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        # The rollout's plain causal mask ignores padding (§13 item 5): callers keep batches
        # unpadded. The output uses the model's own mask, exactly as the sdpa fallback below.
        return capture.attend(module, query, key, value, attention_mask, scale, dropout, **kwargs), None
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def register() -> None:
    """Register the attention function and its mask builder (sdpa's) with transformers."""
    AttentionInterface.register(ATTN_NAME, decaf_rollout_attention)
    # Without a mask entry transformers would build no mask at all for this name; sdpa's
    # mask (None when no padding, so sdpa can use is_causal) is what the fallback expects.
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, sdpa_mask)


register()


def attn_implementation_spec(vision: str = "sdpa") -> dict[str, str]:
    """``attn_implementation`` for ``from_pretrained``: capture in the text layers only."""
    return {"text_config": ATTN_NAME, "vision_config": vision, "": "sdpa"}


def enable_capture(model: torch.nn.Module) -> None:
    """Switch an already-loaded VLM's text layers to the capture attention."""
    vision = getattr(getattr(model.config, "vision_config", None), "_attn_implementation", None) or "sdpa"
    model.set_attn_implementation(attn_implementation_spec(vision))


def _text_config(model_or_adapter: Any) -> Any:
    model = getattr(model_or_adapter, "model", model_or_adapter)
    config = model.config
    return getattr(config, "text_config", config)


@contextlib.contextmanager
def capture_rollout(
    model_or_adapter: Any,
    token_is_visual: torch.Tensor,
    start_layer: int,
    span_rule: bool = True,
    row_block: int = 512,
    prefix: PrefixRollout | None = None,
    reuse_prefix: bool = False,
) -> Iterator[RolloutCapture]:
    """Capture the V-Max rollout of the next prefill; ``handle.row`` is (B, L) fp32 after exit.

    token_is_visual: (B, L) bool over the prompt. span_rule=True uses the contiguous span of
    item 0 as V (Qwen, LLaVA-OV, §4.3); False uses the exact positions (InternVL).
    prefix: record the rollout state of the prompt's first ``prefix.length`` tokens into it, or,
    with reuse_prefix, use the state recorded there while the forward runs only the rest.
    """
    text_config = _text_config(model_or_adapter)
    if text_config._attn_implementation != ATTN_NAME:
        raise RuntimeError(
            f"text attention is '{text_config._attn_implementation}', not '{ATTN_NAME}'; load the model "
            f"with attn_implementation=attn_implementation_spec() or call enable_capture(model)")
    num_layers = int(text_config.num_hidden_layers)
    if not 0 <= start_layer < num_layers:
        raise ValueError(f"start_layer must be in [0, {num_layers}); got {start_layer}")
    if getattr(_state, "capture", None) is not None:
        raise RuntimeError("a rollout capture is already active in this thread")
    if reuse_prefix and prefix is None:
        raise ValueError("reuse_prefix needs the recorded prefix")
    if prefix is not None and not 0 < prefix.length <= token_is_visual.shape[1] - int(reuse_prefix):
        raise ValueError(f"prefix of {prefix.length} tokens does not fit a prompt of {token_is_visual.shape[1]}")
    mask = visual_span_mask(token_is_visual) if span_rule else token_is_visual.to(torch.bool)
    handle = RolloutCapture(mask, int(start_layer), num_layers, row_block=row_block, prefix=prefix,
                            reuse_prefix=reuse_prefix)
    _state.capture = handle
    try:
        yield handle
    finally:
        _state.capture = None
    handle.finalize()
