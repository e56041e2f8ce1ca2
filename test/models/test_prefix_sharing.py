"""Exact prompt-prefix sharing (P1 -> P3) on every family's tiny model: same maps, less LLM work.

P3 reuses P1's visual prefix on the video path and on every frame batch: only its text goes
through the LLM (KV cache), the prefix rows' V-Max sums are reused and the prefix rows of Ā
recombined with P3's own head weights. The maps must equal the unshared computation to fp32
rounding; odd frame counts (Qwen's padded video, a short last frame batch) included.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from decaf_ros.core import prompts

P1 = prompts.object_class_prompt(prompts.normalize_expression("the red mug on the left"))
P3 = prompts.background_prompt("mug")
MAX_REL = 1e-5


def clip(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.integers(0, 256, (56, 84, 3), dtype=np.uint8) for _ in range(n)]


def run_prompts(adapter, frames, share: bool) -> dict:
    """P1 then P3 on both paths, as the pipeline orders them; -> maps/answers per pass."""
    with adapter.sharing_prompt_prefixes(share):
        p1_video = adapter.video_pass(frames, P1, generate=True)
        grid = p1_video.grid_hw
        out = {"p1_video": p1_video,
               "p1_frames": adapter.frame_pass(frames, P1, generate=True, video_grid_hw=grid),
               "p3_video": adapter.video_pass(frames, P3, generate=False),
               "p3_frames": adapter.frame_pass(frames, P3, generate=False, video_grid_hw=grid)}
    return out


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("num_frames", [5, 4])
def test_sharing_gives_the_unshared_maps_and_answers(tiny_mllm, num_frames):
    _, adapter = tiny_mllm
    frames = clip(num_frames)
    work = adapter.prefill_token_layers
    off = run_prompts(adapter, frames, share=False)
    work_off = adapter.prefill_token_layers - work
    work = adapter.prefill_token_layers
    on = run_prompts(adapter, frames, share=True)
    work_on = adapter.prefill_token_layers - work
    for name in off:
        assert on[name].maps.shape == off[name].maps.shape
        assert rel(on[name].maps, off[name].maps) <= MAX_REL, name
        assert on[name].answers == off[name].answers
    assert work_on < work_off


class ForwardLog:
    """Token ids reaching the VLM, token counts reaching its language model, vision-tower calls."""

    def __init__(self, adapter) -> None:
        model = adapter.model
        vision = getattr(model.model, "visual", None) or model.model.vision_tower
        self.ids: list[torch.Tensor] = []
        self.llm_tokens: list[int] = []
        self.vision_calls = 0
        self._handles = [
            model.register_forward_pre_hook(self._top, with_kwargs=True),
            model.model.language_model.register_forward_pre_hook(self._llm, with_kwargs=True),
            vision.register_forward_pre_hook(self._vision)]

    def _top(self, _m, _args, kwargs):
        self.ids.append(kwargs["input_ids"].clone())

    def _llm(self, _m, _args, kwargs):
        self.llm_tokens.append(int(kwargs["inputs_embeds"].shape[1]))

    def _vision(self, _m, _args):
        self.vision_calls += 1

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def test_p3_runs_only_its_suffix_through_the_llm(tiny_mllm):
    """With sharing, P3's one LLM forward gets exactly the tokens after P1's last visual token."""
    _, adapter = tiny_mllm
    frames = clip(4)
    full = ForwardLog(adapter)
    try:
        with adapter.sharing_prompt_prefixes(False):
            adapter.video_pass(frames, P3, generate=False)
    finally:
        full.close()
    (full_ids,) = full.ids
    with adapter.sharing_prompt_prefixes(True):
        adapter.video_pass(frames, P1, generate=True)
        shared = ForwardLog(adapter)
        try:
            adapter.video_pass(frames, P3, generate=False)
        finally:
            shared.close()
    (suffix,) = shared.ids
    visual = torch.isin(full_ids, torch.tensor([getattr(adapter, "video_token_id", -1), adapter.image_token_id]))
    last_visual = int(torch.nonzero(visual[0]).max())
    assert torch.equal(suffix, full_ids[:, last_visual + 1:])
    assert shared.llm_tokens == [suffix.shape[1]] and full.llm_tokens == [full_ids.shape[1]]
    assert shared.vision_calls == 0 and full.vision_calls >= 1


def test_a_prompt_on_other_frames_does_not_reuse_the_prefix(tiny_qwen_adapter):
    """Prefixes are matched by content: other pixels of the same size run in full."""
    adapter = tiny_qwen_adapter
    frames, other = clip(4), clip(6)[:4]
    with adapter.sharing_prompt_prefixes(True):
        adapter.video_pass(frames, P1, generate=True)
        log = ForwardLog(adapter)
        try:
            shared = adapter.video_pass(other, P3, generate=False)
        finally:
            log.close()
    with adapter.sharing_prompt_prefixes(False):
        alone = adapter.video_pass(other, P3, generate=False)
    assert log.vision_calls == 1 and log.llm_tokens == [log.ids[0].shape[1]]
    assert rel(shared.maps, alone.maps) <= MAX_REL


def test_sharing_blocks_do_not_nest(tiny_qwen_adapter):
    with tiny_qwen_adapter.sharing_prompt_prefixes(True):
        with pytest.raises(RuntimeError, match="already active"):
            with tiny_qwen_adapter.sharing_prompt_prefixes(True):
                pass


def test_p3_reuses_p1s_image_and_video_preprocessing(tiny_mllm, monkeypatch):
    """Inside a sharing block the processor preprocesses each frame batch and the video once."""
    _, adapter = tiny_mllm
    calls = {"images": 0, "videos": 0}
    for kind, sub in (("images", adapter.processor.image_processor), ("videos", adapter.processor.video_processor)):
        original = type(sub).__call__

        def counting(self, *args, _kind=kind, _original=original, **kwargs):
            calls[_kind] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(type(sub), "__call__", counting)
    frames = clip(5)  # frame batches of 2, 2, 1
    run_prompts(adapter, frames, share=False)
    unshared = dict(calls)
    calls.update(images=0, videos=0)
    run_prompts(adapter, frames, share=True)
    assert unshared == {"images": 6, "videos": 2}
    assert calls == {"images": 3, "videos": 1}
    assert "_process_images" not in vars(adapter.processor)  # the memo is gone after the block
