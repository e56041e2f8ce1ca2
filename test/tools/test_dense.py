"""The dense references the rollout is checked against, checked in turn against torch's own attention."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decaf_ros.devtools.dense import causal_probs


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (6, 2), (4, 1)])
def test_causal_probs_reproduce_torch_causal_attention(heads: int, kv_heads: int) -> None:
    """P·V equals sdpa(is_causal) with K, V expanded in repeat_kv order; rows are distributions."""
    gen = torch.Generator().manual_seed(0)
    b, length, d, scaling = 2, 23, 8, 0.3
    q = torch.randn(b, heads, length, d, generator=gen, dtype=torch.float64) * 2
    k = torch.randn(b, kv_heads, length, d, generator=gen, dtype=torch.float64)
    v = torch.randn(b, kv_heads, length, d, generator=gen, dtype=torch.float64)
    probs = causal_probs(q, k, scaling)
    assert probs.dtype == torch.float32 and probs.shape == (b, heads, length, length)
    groups = heads // kv_heads
    expected = F.scaled_dot_product_attention(
        q, k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1), is_causal=True, scale=scaling)
    torch.testing.assert_close(probs.double() @ v.repeat_interleave(groups, 1), expected, rtol=1e-5, atol=1e-6)
    assert torch.all(probs.triu(1) == 0)  # nothing attends to a later key
    torch.testing.assert_close(probs.sum(-1), torch.ones(b, heads, length))


def test_causal_probs_refuse_non_dividing_key_heads() -> None:
    with pytest.raises(ValueError, match="divide"):
        causal_probs(torch.zeros(1, 3, 4, 2), torch.zeros(1, 2, 4, 2), 1.0)
