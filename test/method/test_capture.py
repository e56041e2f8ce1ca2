"""The rollout capture attention vs. a dense reference from eager attention probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from decaf_ros.core import capture
from decaf_ros.core.capture import attn_implementation_spec, capture_rollout
from decaf_ros.core.rollout import naive_vmax_rollout, visual_span_mask

START = 2  # of 4 tiny text layers


def _load(folder: str, text_attn: str):
    from transformers import Qwen2_5_VLForConditionalGeneration

    spec = {"text_config": text_attn, "vision_config": "sdpa", "": "sdpa"}
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, attn_implementation=spec).eval()


@pytest.fixture(scope="module")
def tiny_models(tiny_qwen_dir: str):
    from transformers import AutoProcessor

    return {
        "processor": AutoProcessor.from_pretrained(tiny_qwen_dir),
        "capture": _load(tiny_qwen_dir, capture.ATTN_NAME),
        "sdpa": _load(tiny_qwen_dir, "sdpa"),
        "eager": _load(tiny_qwen_dir, "eager"),
    }


@pytest.fixture(scope="module")
def video_inputs(tiny_models):
    """A 4-frame 56x84 clip as a video prompt: 2 temporal slots of 2x3 tokens."""
    processor = tiny_models["processor"]
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (4, 56, 84, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "which object? "}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], videos=[clip], return_tensors="pt",
                     videos_kwargs={"do_resize": False, "cap_pixels_per_frame": False})


def _visual(tiny_models, inputs) -> torch.Tensor:
    return inputs["input_ids"] == tiny_models["capture"].config.video_token_id


def dense_reference(attentions, key_mask: torch.Tensor) -> torch.Tensor:
    """§4.3-4.4 literally, in float64: V-Max weights, head mean / H, 0.5 identity mix, full products."""
    product = None
    for attn in attentions:
        attn = attn.double()
        heads, length = attn.shape[1], attn.shape[-1]
        row_max = attn.masked_fill(~key_mask[:, None, None, :], 0.0).amax(-1)  # (B, H, L)
        w = row_max.mean(-1)
        w_hat = w / w.amax(-1, keepdim=True)
        mean = (w_hat[:, :, None, None] * attn).sum(1) / heads
        a_hat = 0.5 * mean + 0.5 * torch.eye(length, dtype=torch.float64)
        product = a_hat if product is None else a_hat @ product
    return product[:, -1, :]


def test_captured_row_matches_dense_reference(tiny_models, video_inputs) -> None:
    visual = _visual(tiny_models, video_inputs)
    with torch.no_grad():
        with capture_rollout(tiny_models["capture"], visual, START) as handle:
            tiny_models["capture"](**video_inputs)
        eager = tiny_models["eager"](**video_inputs, output_attentions=True)
    attentions = eager.attentions[START:]
    assert len(eager.attentions) == 4 and attentions[0].shape[1] == 4  # all query heads (GQA expanded)
    key_mask = visual_span_mask(visual)
    reference = dense_reference(attentions, key_mask).float()
    scale = reference.abs().max()
    torch.testing.assert_close(handle.row, reference, rtol=1e-5, atol=1e-5 * float(scale))
    torch.testing.assert_close(handle.row, naive_vmax_rollout(attentions, key_mask),
                               rtol=1e-5, atol=1e-5 * float(scale))
    assert handle.row.dtype == torch.float32 and handle.row.shape == visual.shape
    # The attention must not be near-uniform, or the comparison would prove little.
    assert float(handle.row[0, visual[0]].std()) > 1e-3 * float(handle.row[0, visual[0]].mean())


def test_outputs_unchanged_by_capture(tiny_models, video_inputs) -> None:
    visual = _visual(tiny_models, video_inputs)
    with torch.no_grad():
        with capture_rollout(tiny_models["capture"], visual, START):
            captured = tiny_models["capture"](**video_inputs).logits
        plain = tiny_models["capture"](**video_inputs).logits  # no capture: sdpa fallback
        sdpa = tiny_models["sdpa"](**video_inputs).logits
        eager = tiny_models["eager"](**video_inputs).logits
    torch.testing.assert_close(plain, sdpa, rtol=0, atol=0)
    scale = float(sdpa.abs().max())
    torch.testing.assert_close(captured, sdpa, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(captured, eager, rtol=1e-5, atol=1e-5 * scale)


def test_generate_counts_only_the_first_prefill(tiny_models, video_inputs) -> None:
    visual = _visual(tiny_models, video_inputs)
    greedy = dict(max_new_tokens=4, do_sample=False, num_beams=1)
    with torch.no_grad():
        with capture_rollout(tiny_models["capture"], visual, START) as prefill_only:
            tiny_models["capture"](**video_inputs)
        with capture_rollout(tiny_models["capture"], visual, START) as during_generate:
            generated = tiny_models["capture"].generate(**video_inputs, **greedy)
        reference = tiny_models["sdpa"].generate(**video_inputs, **greedy)
    assert during_generate.layers_seen == [2, 3]
    torch.testing.assert_close(during_generate.row, prefill_only.row, rtol=0, atol=0)
    assert torch.equal(generated, reference)


class _LargestTensors(TorchDispatchMode):
    """Records the largest storage (in elements) produced by any op run under the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.untyped_storage().nbytes() // t.element_size())
        return out


def test_no_layer_of_per_head_attention_is_ever_built(tiny_models, video_inputs, monkeypatch) -> None:
    """Inside captured layers (rollout + real output) no op makes a (B, H, L, L)-sized tensor."""
    modes: list[_LargestTensors] = []
    original = capture.RolloutCapture.attend

    def spy(self, module, query, *args, **kwargs):
        modes.append(_LargestTensors())
        with modes[-1]:
            out = original(self, module, query, *args, **kwargs)
        b, heads, length, head_dim = query.shape
        modes[-1].layer = b * heads * length * length
        modes[-1].per_token = b * heads * length * head_dim  # Q-sized tensors (query copies, output)
        return out

    monkeypatch.setattr(capture.RolloutCapture, "attend", spy)
    row_block = 8  # well below the tiny prompt's length, so one block is far from a layer
    visual = _visual(tiny_models, video_inputs)
    with torch.no_grad(), capture_rollout(tiny_models["capture"], visual, START, row_block=row_block) as handle:
        tiny_models["capture"](**video_inputs)
    assert len(modes) == 2 and handle.row is not None
    b, length = visual.shape
    heads = tiny_models["capture"].config.text_config.num_attention_heads
    assert length > 4 * row_block
    for mode in modes:
        assert mode.layer == b * heads * length * length
        # the rollout's one-block buffer, or tensors the size of Q; never a layer's L×L maps
        assert mode.largest <= max(b * heads * row_block * length, mode.per_token) < mode.layer


def test_capture_requires_the_capture_attention(tiny_models, video_inputs) -> None:
    with pytest.raises(RuntimeError, match=capture.ATTN_NAME):
        with capture_rollout(tiny_models["sdpa"], _visual(tiny_models, video_inputs), START):
            pass


def test_capture_validates_start_layer_and_completeness(tiny_models, video_inputs) -> None:
    visual = _visual(tiny_models, video_inputs)
    with pytest.raises(ValueError, match="start_layer"):
        with capture_rollout(tiny_models["capture"], visual, 4):
            pass
    with pytest.raises(RuntimeError, match="expected"):
        with capture_rollout(tiny_models["capture"], visual, START):
            pass  # no forward: nothing captured


def test_attn_spec_keeps_vision_on_sdpa(tiny_models) -> None:
    config = tiny_models["capture"].config
    assert attn_implementation_spec()["text_config"] == capture.ATTN_NAME
    assert config.text_config._attn_implementation == capture.ATTN_NAME
    assert config.vision_config._attn_implementation == "sdpa"
