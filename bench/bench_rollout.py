#!/usr/bin/env python3
"""Benchmark: streaming one-row V-Max rollout vs the literal dense rollout of §4.

Variants (each runs in its own fresh subprocess so peak memory is not shared).
Fed with per-layer attention probabilities (B, H, L, L):
  naive_dense     all layers' attention held at once (what HF ``output_attentions=True``
                  returns) + dense Â and L×L×L products
  naive_layer     the same dense maths, but only one layer's attention exists at a time
  streaming       VMaxRollout.add_layer: one layer at a time, stores Ā_l (lower triangle),
                  one row backwards
Fed with per-layer post-RoPE Q (B, H, L, d) and K (B, Hkv, L, d), what the model hands its
attention function:
  naive_dense_qk  §4.2 literally: repeat_kv, dense fp32 probabilities of every layer (held at
                  once, as ``output_attentions``), then naive_dense
  streaming_qk    VMaxRollout.add_layer_qk: probabilities recomputed in row blocks, twice
                  (head weights, then head mean), never a whole (B, H, L, L) layer

Inputs: random, layer l drawn from its own seed, so every variant of a family sees identical
numbers; probability-fed streaming and per-layer variants regenerate each layer into one
reused buffer on the fly, Q/K-fed variants get each layer's Q/K fresh and drop it after use.
Generation is excluded from the timings; the Q/K variants' timings include computing the
probabilities, the part the probability-fed variants get for free.

Memory: peak resident set size (Linux VmHWM) of the worker minus its RSS after imports and
a warm-up, with the high-water mark reset right after that baseline (``/proc/self/clear_refs``;
falls back to ru_maxrss, which then also counts import-time peaks). This counts everything
the variant makes resident: the attention inputs it holds at once, its workspace and temporaries.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from decaf_ros.devtools.memory import rel_diff, reset_rss_peak, rss_mb, rss_peak_mb  # noqa: E402
from decaf_ros.core.rollout import VMaxRollout, naive_vmax_rollout  # noqa: E402

VARIANTS = ("streaming", "naive_layer", "naive_dense", "streaming_qk", "naive_dense_qk")
REFERENCE = {"streaming": "naive_dense", "naive_layer": "naive_dense", "naive_dense": "naive_dense",
             "streaming_qk": "naive_dense_qk", "naive_dense_qk": "naive_dense_qk"}
GEN_ROWS = 32  # rows generated at once: keeps generation temporaries to a few MB


# ---------------------------------------------------------------- inputs
def visual_mask(batch: int, length: int) -> torch.Tensor:
    """A Qwen-like layout: a short text prefix, a long visual span, then the question."""
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[:, int(0.05 * length): int(0.93 * length)] = True
    return mask


def fill_layer(buf: torch.Tensor, seed: int, layer: int) -> None:
    """Write layer ``layer``'s causal softmax probabilities into ``buf`` (B, H, L, L), in row blocks."""
    gen = torch.Generator().manual_seed(seed * 1000 + layer)
    b, h, length, _ = buf.shape
    cols = torch.arange(length)
    for r0 in range(0, length, GEN_ROWS):
        r1 = min(r0 + GEN_ROWS, length)
        scores = torch.randn(b, h, r1 - r0, length, generator=gen).mul_(2.0)
        above = cols[None, :] > torch.arange(r0, r1)[:, None]  # causal: key > query is masked
        scores.masked_fill_(above, float("-inf"))
        buf[:, :, r0:r1] = scores.softmax(dim=-1)


def layer_qk(args, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer ``layer``'s Q (B, H, L, d) and K (B, Hkv, L, d), fp32.

    Q is scaled so the scores Q·K/sqrt(d) have std ~2, as peaked as the probability inputs.
    """
    gen = torch.Generator().manual_seed(args.seed * 1000 + 500 + layer)
    q = torch.randn(args.batch, args.heads, args.length, args.head_dim, generator=gen).mul_(2.0)
    k = torch.randn(args.batch, args.kv_heads, args.length, args.head_dim, generator=gen)
    return q, k


def dense_probs_from_qk(q: torch.Tensor, k: torch.Tensor, scaling: float) -> torch.Tensor:
    """§4.2 as the reference code does it: GQA-expand K, dense fp32 causal softmax -> (B, H, L, L)."""
    from transformers.integrations.sdpa_attention import repeat_kv

    # the dense path the capture ran before add_layer_qk
    from decaf_ros.core.capture import _causal_probs

    return _causal_probs(q, repeat_kv(k, q.shape[1] // k.shape[1]), scaling)


# ---------------------------------------------------------------- workers
def run_streaming(args, mask, reset_ok):
    buf = torch.empty(args.batch, args.heads, args.length, args.length)
    rollout = VMaxRollout(mask, row_block=args.row_block)
    compute = 0.0
    for layer in range(args.layers):
        fill_layer(buf, args.seed, layer)
        t0 = time.perf_counter()
        rollout.add_layer(buf)
        compute += time.perf_counter() - t0
    t0 = time.perf_counter()
    row = rollout.last_token_row()
    compute += time.perf_counter() - t0
    return row, compute, {"stored_mean_mb": rollout.stored_bytes() / 2**20}


def run_naive_layer(args, mask, reset_ok):
    buf = torch.empty(args.batch, args.heads, args.length, args.length)
    gen_time = 0.0

    def layers():
        nonlocal gen_time
        for layer in range(args.layers):
            t0 = time.perf_counter()
            fill_layer(buf, args.seed, layer)
            gen_time += time.perf_counter() - t0
            yield buf

    t0 = time.perf_counter()
    row = naive_vmax_rollout(layers(), mask)
    return row, time.perf_counter() - t0 - gen_time, {}


def run_naive_dense(args, mask, reset_ok):
    layers = []
    for layer in range(args.layers):
        buf = torch.empty(args.batch, args.heads, args.length, args.length)
        fill_layer(buf, args.seed, layer)
        layers.append(buf)
    t0 = time.perf_counter()
    row = naive_vmax_rollout(layers, mask)
    return row, time.perf_counter() - t0, {}


def run_streaming_qk(args, mask, reset_ok):
    rollout = VMaxRollout(mask, row_block=args.row_block)
    scaling = args.head_dim ** -0.5
    compute = 0.0
    for layer in range(args.layers):
        q, k = layer_qk(args, layer)
        t0 = time.perf_counter()
        rollout.add_layer_qk(q, k, scaling)
        compute += time.perf_counter() - t0
        del q, k  # the model's Q/K of one layer at a time
    t0 = time.perf_counter()
    row = rollout.last_token_row()
    compute += time.perf_counter() - t0
    scratch_mb = args.batch * args.heads * min(args.row_block, args.length) * args.length * 4 / 2**20
    return row, compute, {"stored_mean_mb": rollout.stored_bytes() / 2**20, "scratch_mb": scratch_mb}


def run_naive_dense_qk(args, mask, reset_ok):
    scaling = args.head_dim ** -0.5
    layers, compute = [], 0.0
    for layer in range(args.layers):
        q, k = layer_qk(args, layer)
        t0 = time.perf_counter()
        layers.append(dense_probs_from_qk(q, k, scaling))
        compute += time.perf_counter() - t0
        del q, k
    t0 = time.perf_counter()
    row = naive_vmax_rollout(layers, mask)
    return row, compute + time.perf_counter() - t0, {}


def worker(args) -> None:
    torch.set_num_threads(args.threads)
    mask = visual_mask(args.batch, args.length)
    # warm-up so lazily initialised thread pools and kernels are part of the baseline
    small = torch.rand(1, 2, 64, 64).softmax(-1)
    naive_vmax_rollout([small, small], torch.ones(1, 64, dtype=torch.bool))
    roll = VMaxRollout(torch.ones(1, 64, dtype=torch.bool))
    roll.add_layer(small)
    roll.last_token_row()
    if args.worker.endswith("_qk"):  # also import and warm up the Q/K paths before the baseline
        q, k = torch.randn(1, 4, 64, 8), torch.randn(1, 2, 64, 8)
        naive_vmax_rollout([dense_probs_from_qk(q, k, 0.3)], torch.ones(1, 64, dtype=torch.bool))
        roll = VMaxRollout(torch.ones(1, 64, dtype=torch.bool), row_block=16)
        roll.add_layer_qk(q, k, 0.3)
        roll.last_token_row()
        del q, k
    del small, roll
    baseline_mb = rss_mb()
    reset_ok = reset_rss_peak()
    run = {"streaming": run_streaming, "naive_layer": run_naive_layer, "naive_dense": run_naive_dense,
           "streaming_qk": run_streaming_qk, "naive_dense_qk": run_naive_dense_qk}[args.worker]
    row, seconds, extra = run(args, mask, reset_ok)
    peak_mb = rss_peak_mb()  # process lifetime peak when the reset was refused
    torch.save(row, args.out_row)
    report = {
        "variant": args.worker, "seconds": seconds,
        "peak_mb": peak_mb - baseline_mb, "baseline_mb": baseline_mb,
        "hwm_reset": reset_ok, **extra,
    }
    print(json.dumps(report))


# ---------------------------------------------------------------- driver
def spawn(variant: str, args, row_path: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--out-row", row_path,
           "--length", str(args.length), "--heads", str(args.heads), "--layers", str(args.layers),
           "--batch", str(args.batch), "--seed", str(args.seed), "--row-block", str(args.row_block),
           "--threads", str(args.threads), "--head-dim", str(args.head_dim),
           "--kv-heads", str(args.kv_heads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--length", type=int, default=3000, help="sequence length L")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--layers", type=int, default=14, help="rollout layers (s .. N-1)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--head-dim", type=int, default=128, help="d of the Q/K-fed variants")
    p.add_argument("--kv-heads", type=int, default=2,
                   help="K heads of the Q/K-fed variants (GQA; 2 as Qwen2.5-VL-3B)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--row-block", type=int, default=512)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out-row", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    variants = [v for v in args.variants.split(",") if v]
    input_mb = args.batch * args.heads * args.length ** 2 * 4 / 2**20
    print(f"V-Max rollout benchmark: B={args.batch} H={args.heads} L={args.length} "
          f"layers={args.layers} fp32, {args.threads} CPU thread(s), row_block={args.row_block}")
    print(f"one layer of attention = {input_mb:.0f} MiB; all layers = {input_mb * args.layers:.0f} MiB")
    results, rows = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            path = os.path.join(tmp, f"{variant}.pt")
            results[variant] = spawn(variant, args, path)
            rows[variant] = torch.load(path)
            print(f"  done: {variant} ({results[variant]['seconds']:.2f} s)", flush=True)

    print()
    print(f"{'variant':<15} {'time s':>8} {'peak MiB':>10} {'reference':>15} {'speedup':>8} "
          f"{'mem ratio':>9} {'max rel diff':>13} {'normwise':>10}")
    for variant in variants:
        r = results[variant]
        ref_name = REFERENCE[variant] if REFERENCE[variant] in results else variant
        ref = results[ref_name]
        r["reference"] = ref_name
        r["speedup_vs_ref"] = ref["seconds"] / r["seconds"]
        r["memory_ratio_vs_ref"] = ref["peak_mb"] / max(r["peak_mb"], 1e-9)
        r["max_rel_diff_vs_ref"], r["normwise_diff_vs_ref"] = rel_diff(rows[variant], rows[ref_name])
        print(f"{variant:<15} {r['seconds']:>8.2f} {r['peak_mb']:>10.0f} {ref_name:>15} "
              f"{r['speedup_vs_ref']:>7.1f}x {r['memory_ratio_vs_ref']:>8.1f}x "
              f"{r['max_rel_diff_vs_ref']:>13.2e} {r['normwise_diff_vs_ref']:>10.2e}")
    print("\nratios and differences are relative to the reference of the same input family "
          "(probability-fed or Q/K-fed).")
    print("time: rollout computation only (input generation excluded; the Q/K variants include "
          "computing the probabilities).")
    print("peak MiB: peak RSS above the post-import baseline, i.e. attention inputs held at once "
          "+ workspace + temporaries" + ("" if all(r["hwm_reset"] for r in results.values())
                                         else " (ru_maxrss fallback: may include import peaks)") + ".")
    if "streaming" in results:
        s = results["streaming"]
        print(f"streaming keeps {s['stored_mean_mb']:.0f} MiB of Ā blocks + one {input_mb:.0f} MiB layer buffer.")
    if "streaming_qk" in results:
        s = results["streaming_qk"]
        qk_mb = args.batch * (args.heads + args.kv_heads) * args.length * args.head_dim * 4 / 2**20
        print(f"streaming_qk keeps {s['stored_mean_mb']:.0f} MiB of Ā blocks + a {s['scratch_mb']:.0f} MiB "
              f"row-block buffer; one layer's Q/K = {qk_mb:.0f} MiB.")
    if args.json:
        payload = {"config": {k: getattr(args, k) for k in
                              ("length", "heads", "kv_heads", "head_dim", "layers", "batch", "seed",
                               "row_block", "threads")},
                   "results": results}
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
