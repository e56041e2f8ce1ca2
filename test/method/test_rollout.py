"""V-Max rollout (§4): streaming one-row rollout == literal dense transcription."""
import pytest
import torch

from decaf_ros.core.rollout import VMaxRollout, visual_span_mask, vmax_head_weights
from decaf_ros.devtools.dense import causal_probs, naive_vmax_rollout


def random_causal_attention(b: int, h: int, length: int, seed: int) -> torch.Tensor:
    """(B, H, L, L) fp32 rows softmax-normalised under a causal mask."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, h, length, length, generator=gen) * 2.0
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)


def span(b: int, length: int, start: int, stop: int) -> torch.Tensor:
    mask = torch.zeros(b, length, dtype=torch.bool)
    mask[:, start:stop] = True
    return mask


def max_rel_err(fast: torch.Tensor, ref: torch.Tensor) -> float:
    return float(((fast - ref).abs() / ref.abs().clamp_min(1e-30)).max())


@pytest.mark.parametrize("b,h,length,n_layers,vis,row_block", [
    (1, 4, 37, 1, (5, 30), 8),
    (2, 3, 64, 3, (10, 50), 16),
    (3, 2, 50, 5, (20, 21), 7),
    (1, 5, 96, 4, (30, 80), 512),
    (2, 4, 33, 2, (0, 33), 1),
])
def test_streaming_equals_naive(b, h, length, n_layers, vis, row_block):
    layers = [random_causal_attention(b, h, length, seed=100 + i) for i in range(n_layers)]
    mask = span(b, length, *vis)
    ref = naive_vmax_rollout(layers, mask)
    rollout = VMaxRollout(mask, row_block=row_block)
    for attn in layers:
        rollout.add_layer(attn)
    fast = rollout.last_token_row()
    assert fast.shape == (b, length) and fast.dtype == torch.float32
    assert max_rel_err(fast, ref) <= 1e-5
    # reading the row twice gives the same answer (state is not consumed)
    assert torch.equal(fast, rollout.last_token_row())


def test_streaming_equals_naive_exact_per_item_mask():
    """InternVL-style masks: non-contiguous and different per item (same count)."""
    b, h, length = 2, 3, 40
    layers = [random_causal_attention(b, h, length, seed=7 + i) for i in range(3)]
    mask = torch.zeros(b, length, dtype=torch.bool)
    mask[0, [5, 6, 7, 12, 13, 20]] = True
    mask[1, [8, 9, 15, 16, 17, 30]] = True
    ref = naive_vmax_rollout(layers, mask)
    rollout = VMaxRollout(mask, row_block=6)
    for attn in layers:
        rollout.add_layer(attn)
    assert max_rel_err(rollout.last_token_row(), ref) <= 1e-5


def test_streaming_accepts_bf16_and_casts_to_fp32():
    layers = [random_causal_attention(1, 2, 24, seed=3 + i).bfloat16() for i in range(2)]
    mask = span(1, 24, 4, 20)
    ref = naive_vmax_rollout(layers, mask)  # casts the same bf16 values to fp32
    rollout = VMaxRollout(mask, row_block=5)
    for attn in layers:
        rollout.add_layer(attn)
    out = rollout.last_token_row()
    assert out.dtype == torch.float32
    assert max_rel_err(out, ref) <= 1e-5


def planted_attention() -> torch.Tensor:
    """B=1, H=2, L=3; visual keys V = {1}. Causal rows.

    head 0: rows [1,0,0], [0.2,0.8,0], [0.1,0.6,0.3] -> m = (0, 0.8, 0.6), w0 = 1.4/3
    head 1: rows [1,0,0], [0.6,0.4,0], [0.5,0.2,0.3] -> m = (0, 0.4, 0.2), w1 = 0.6/3
    ŵ = (1, 0.6/1.4) = (1, 3/7)
    """
    a = torch.zeros(1, 2, 3, 3)
    a[0, 0] = torch.tensor([[1.0, 0, 0], [0.2, 0.8, 0], [0.1, 0.6, 0.3]])
    a[0, 1] = torch.tensor([[1.0, 0, 0], [0.6, 0.4, 0], [0.5, 0.2, 0.3]])
    return a


def test_head_weights_planted():
    attn = planted_attention()
    mask = torch.tensor([[False, True, False]])
    w = vmax_head_weights(attn, mask)
    torch.testing.assert_close(w, torch.tensor([[1.0, 3.0 / 7.0]]), rtol=1e-6, atol=1e-7)
    # the row-blocked computation gives the same weights
    torch.testing.assert_close(vmax_head_weights(attn, mask, row_block=1), w)


def test_single_layer_divides_by_h_and_mixes_identity():
    """One layer: r = 0.5·Ā[L-1] + 0.5·e_{L-1}, Ā = (ŵ0 A0 + ŵ1 A1) / H with H = 2 (not Σŵ)."""
    attn = planted_attention()
    mask = torch.tensor([[False, True, False]])
    w1 = 3.0 / 7.0
    # Ā[2] = ([0.1, 0.6, 0.3] + 3/7 [0.5, 0.2, 0.3]) / 2
    mean_last = (torch.tensor([0.1, 0.6, 0.3]) + w1 * torch.tensor([0.5, 0.2, 0.3])) / 2
    expected = 0.5 * mean_last + 0.5 * torch.tensor([0.0, 0.0, 1.0])
    rollout = VMaxRollout(mask)
    rollout.add_layer(attn)
    out = rollout.last_token_row()[0]
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(naive_vmax_rollout([attn], mask)[0], expected, rtol=1e-6, atol=1e-7)
    # dividing by Σŵ = 1 + 3/7 instead of H = 2 would give a different row
    wrong = 0.5 * (mean_last * 2 / (1 + w1)) + 0.5 * torch.tensor([0.0, 0.0, 1.0])
    assert not torch.allclose(out, wrong, atol=1e-4)


def test_no_renormalisation_rows_lose_mass():
    """Each layer keeps 0.5 + 0.5·Σ_h ŵ_h/H of the mass: below 1 when mean ŵ < 1."""
    attn = planted_attention()
    mask = torch.tensor([[False, True, False]])
    mean_w = (1.0 + 3.0 / 7.0) / 2
    rollout = VMaxRollout(mask)
    rollout.add_layer(attn)
    rollout.add_layer(attn)
    total = float(rollout.last_token_row().sum())
    assert total == pytest.approx((0.5 + 0.5 * mean_w) ** 2, rel=1e-6)
    assert total < 1.0


def test_zero_visual_attention_gives_zero_weights():
    attn = planted_attention()
    mask = torch.tensor([[False, False, False]])
    assert torch.equal(vmax_head_weights(attn, mask), torch.zeros(1, 2))
    rollout = VMaxRollout(mask)
    rollout.add_layer(attn)
    out = rollout.last_token_row()
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 0.5]]))
    torch.testing.assert_close(naive_vmax_rollout([attn], mask), out)


def test_lower_triangle_storage_is_about_half():
    length, block = 64, 8
    mask = span(1, length, 10, 50)
    rollout = VMaxRollout(mask, row_block=block)
    rollout.add_layer(random_causal_attention(1, 2, length, seed=1))
    full = length * length * 4
    assert rollout.stored_bytes() == sum((r0 + block) * block for r0 in range(0, length, block)) * 4
    assert rollout.stored_bytes() < 0.6 * full


def test_visual_span_mask_uses_item_zero_span():
    is_visual = torch.tensor([
        [False, True, False, True, False, False],
        [False, False, False, False, True, True],
    ])
    expected_row = torch.tensor([False, True, True, True, False, False])
    out = visual_span_mask(is_visual)
    assert torch.equal(out, expected_row.expand(2, -1))
    assert not visual_span_mask(torch.zeros(2, 4, dtype=torch.bool)).any()


def test_errors():
    mask = span(1, 5, 1, 3)
    rollout = VMaxRollout(mask)
    with pytest.raises(RuntimeError):
        rollout.last_token_row()
    with pytest.raises(ValueError):
        rollout.add_layer(torch.zeros(1, 2, 6, 6))
    with pytest.raises(ValueError):
        naive_vmax_rollout([], mask)


# ---------------------------------------------------------------- Q/K route (§4.5)
def random_qk(b: int, h: int, hkv: int, length: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-RoPE-like Q (B, H, L, d) and K (B, Hkv, L, d); scores of std ~2 give peaked rows."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, length, d, generator=gen) * 2.0
    k = torch.randn(b, hkv, length, d, generator=gen)
    return q, k


@pytest.mark.parametrize("b,h,hkv,length,d,n_layers,vis,row_block", [
    (1, 4, 4, 37, 16, 2, (5, 30), 8),     # K already expanded
    (2, 6, 2, 50, 8, 3, (10, 41), 7),     # GQA, row block not dividing L
    (3, 4, 1, 33, 32, 2, (12, 13), 5),    # MQA, one visual token
    (1, 8, 2, 64, 16, 2, (20, 44), 512),  # one block holds the whole layer
    (2, 2, 1, 29, 8, 2, (0, 29), 1),      # row by row; every key visual
])
def test_qk_route_equals_probability_route(b, h, hkv, length, d, n_layers, vis, row_block):
    mask = span(b, length, *vis)
    scaling = d ** -0.5
    layers = [random_qk(b, h, hkv, length, d, seed=40 + i) for i in range(n_layers)]
    via_probs, via_qk = VMaxRollout(mask, row_block=row_block), VMaxRollout(mask, row_block=row_block)
    for q, k in layers:
        via_probs.add_layer(causal_probs(q, k, scaling))
        via_qk.add_layer_qk(q, k, scaling)
    expected, out = via_probs.last_token_row(), via_qk.last_token_row()
    assert out.shape == (b, length) and out.dtype == torch.float32
    assert max_rel_err(out, expected) <= 1e-5
    for w_qk, w_probs in zip(via_qk.head_weights, via_probs.head_weights):
        torch.testing.assert_close(w_qk, w_probs, rtol=1e-5, atol=1e-7)
    assert via_qk.stored_bytes() == via_probs.stored_bytes()  # same lower-triangular layout


def test_qk_route_per_item_mask_bf16_and_row_block_override():
    """InternVL-style exact masks, bf16 inputs (cast exactly to fp32), a per-call row block."""
    b, h, hkv, length, d = 2, 4, 2, 40, 16
    mask = torch.zeros(b, length, dtype=torch.bool)
    mask[0, [5, 6, 7, 12, 13, 20]] = True
    mask[1, [8, 9, 15, 16, 17, 30]] = True
    layers = [tuple(t.bfloat16() for t in random_qk(b, h, hkv, length, d, seed=9 + i)) for i in range(2)]
    ref = naive_vmax_rollout([causal_probs(q, k, d ** -0.5) for q, k in layers], mask)
    rollout = VMaxRollout(mask, row_block=512)
    for q, k in layers:
        rollout.add_layer_qk(q, k, d ** -0.5, row_block=6)
    assert max_rel_err(rollout.last_token_row(), ref) <= 1e-5


def test_qk_route_accepts_transposed_views():
    """transformers hands (B, L, H, d) tensors transposed to (B, H, L, d): non-contiguous."""
    b, h, hkv, length, d = 1, 4, 2, 24, 8
    q, k = random_qk(b, h, hkv, length, d, seed=3)
    q_t, k_t = q.transpose(1, 2).contiguous().transpose(1, 2), k.transpose(1, 2).contiguous().transpose(1, 2)
    mask = span(b, length, 4, 20)
    a, c = VMaxRollout(mask, row_block=5), VMaxRollout(mask, row_block=5)
    a.add_layer_qk(q, k, 0.3)
    c.add_layer_qk(q_t, k_t, 0.3)
    torch.testing.assert_close(a.last_token_row(), c.last_token_row(), rtol=1e-6, atol=0)


def test_qk_route_never_builds_a_layer_of_attention(monkeypatch):
    """Every tensor the Q/K route allocates is at most one row block of all heads."""
    from torch.utils._python_dispatch import TorchDispatchMode

    b, h, hkv, length, d, block = 1, 4, 2, 48, 8, 8
    largest = [0]

    class LargestOutput(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    largest[0] = max(largest[0], t.untyped_storage().nbytes() // 4)
            return out

    q, k = random_qk(b, h, hkv, length, d, seed=5)
    rollout = VMaxRollout(span(b, length, 10, 40), row_block=block)
    with LargestOutput():
        rollout.add_layer_qk(q, k, d ** -0.5)
    assert largest[0] <= b * h * block * length  # the scratch block; a layer is B·H·L·L
    assert largest[0] < b * h * length * length


def test_qk_route_errors():
    mask = span(1, 6, 1, 3)
    with pytest.raises(ValueError, match="causal"):
        VMaxRollout(mask, causal=False).add_layer_qk(torch.zeros(1, 2, 6, 4), torch.zeros(1, 2, 6, 4), 0.5)
    with pytest.raises(ValueError, match="Hkv"):
        VMaxRollout(mask).add_layer_qk(torch.zeros(1, 4, 6, 4), torch.zeros(1, 3, 6, 4), 0.5)
    with pytest.raises(ValueError, match="query"):
        VMaxRollout(mask).add_layer_qk(torch.zeros(1, 2, 7, 4), torch.zeros(1, 2, 7, 4), 0.5)


@pytest.mark.parametrize("prefix,row_block", [(30, 8), (16, 8), (1, 512), (44, 7)])
def test_shared_prefix_rows_reused_by_another_prompt_give_the_unshared_row(prefix, row_block):
    """Two prompts sharing their first P rows of Q/K (causal: those rows depend on the prefix alone).

    The first records the prefix rows' V-Max sums while it runs in full; the second, with its own
    different suffix and length, reuses them and must equal its own unshared rollout.
    """
    b, h, hkv, d = 2, 4, 2, 8
    first_len, second_len = 50, 46
    mask = span(b, second_len, 3, 28)
    scaling = d ** -0.5
    layers = []
    for i in range(2):
        q1, k1 = random_qk(b, h, hkv, first_len, d, seed=70 + i)
        q2, k2 = random_qk(b, h, hkv, second_len, d, seed=80 + i)
        q2[:, :, :prefix], k2[:, :, :prefix] = q1[:, :, :prefix], k1[:, :, :prefix]
        layers.append(((q1, k1), (q2, k2)))
    recorder = VMaxRollout(span(b, first_len, 3, 28), row_block=row_block)
    unshared, shared = VMaxRollout(mask, row_block=row_block), VMaxRollout(mask, row_block=row_block)
    for (q1, k1), (q2, k2) in layers:
        sums = recorder.add_layer_qk(q1, k1, scaling, prefix_rows=prefix)
        assert sums.shape == (b, h) and sums.dtype == torch.float32
        probs = causal_probs(q2, k2, scaling)[:, :, :prefix]
        expected_sums = probs[..., mask[0]].amax(-1).sum(-1)  # Σ_{q<P} max_{k∈V} A_h[q, k]
        torch.testing.assert_close(sums, expected_sums, rtol=1e-6, atol=1e-7)
        assert unshared.add_layer_qk(q2, k2, scaling) is None
        shared.add_layer_qk(q2, k2, scaling, prefix_rows=prefix, prefix_sums=sums)
    assert max_rel_err(shared.last_token_row(), unshared.last_token_row()) <= 1e-6
    for a, c in zip(shared.head_weights, unshared.head_weights):
        torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-8)


def test_shared_prefix_argument_errors():
    mask = span(1, 6, 1, 3)
    q, k = torch.zeros(1, 2, 6, 4), torch.zeros(1, 2, 6, 4)
    with pytest.raises(ValueError, match="prefix_rows"):
        VMaxRollout(mask).add_layer_qk(q, k, 0.5, prefix_rows=7)
    with pytest.raises(ValueError, match="prefix_rows"):
        VMaxRollout(mask).add_layer_qk(q, k, 0.5, prefix_sums=torch.zeros(1, 2))
