"""decaf-bench at its tiniest setting: output structure only, never timing values."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from decaf_ros import benchmark
from decaf_ros.core import model_configs

TINY_ARGS = ["--frames", "4", "--key-frames", "2", "--size", "64x48", "--video-max-tokens", "6",
             "--gen-tokens", "2", "--track-frames", "2", "--frame-batch", "2", "--threads", "1",
             "--device", "cpu"]


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_tiny_run_writes_json_and_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    argv = ["--models", "tiny,qwen2.5-vl-3b:sam2.1-hiera-tiny", "--tiny-dir", str(tmp_path / "models"),
            "--json", str(out), "--sweep", "--sweep-key-frames", "2,4", "--sweep-sizes", "64x48,96x64",
            *TINY_ARGS]
    assert benchmark.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(Path(out).read_text())
    assert {"meta", "runs"} <= set(report)
    tiny, real = report["runs"]

    # every stage of ground() has a time, a rollout share and a peak memory
    assert set(tiny["grounding"]["stages"]) == set(benchmark.STAGES)
    for name, stage in tiny["grounding"]["stages"].items():
        for key in ("seconds", "rollout_s", "attn_probs_s", "rss_peak_mb", "rss_delta_mb"):
            assert _number(stage[key]), (name, key)
        assert name in printed
    assert _number(tiny["grounding"]["total_s"])
    # the prompting passes run the rollout
    for name in ("p1_video", "p1_frames", "p3_video", "p3_frames"):
        assert tiny["grounding"]["counts"]["captures"][name], name

    tracking = tiny["tracking"]
    for key in ("start_s", "per_frame_mean_s", "per_frame_p50_s", "per_frame_max_s", "rss_peak_mb"):
        assert _number(tracking[key]), key
    assert tracking["frames"] == 2

    naive = tiny["naive_rollout"]
    assert [row["pass"] for row in naive] == ["p3_video", "p3_frames[batch 0]"]
    for row in naive:
        for key in ("streaming_s", "naive_s", "speedup", "max_rel_diff", "normwise_diff"):
            assert _number(row[key]), key
        assert row["normwise_diff"] < 1e-4  # same maths on the same input

    sweep = tiny["sweep"]
    assert [p["key_frames"] for p in sweep["key_frames"]] == [2, 4]
    assert [(p["width"], p["height"]) for p in sweep["resolution"]] == [(64, 48), (96, 64)]
    for point in sweep["key_frames"] + sweep["resolution"]:
        assert _number(point["total_s"]) and set(point["stages"]) == set(benchmark.STAGES)
    assert "latency vs key frames" in printed and "latency vs resolution" in printed

    # real sizes on CPU are skipped with a reason, not attempted
    assert "skipped" in real and "--allow-cpu-real" in real["skipped"]
    assert "SKIPPED" in printed


def test_timing_hooks_are_removed_after_a_run() -> None:
    from decaf_ros.core import capture
    from decaf_ros.core.rollout import VMaxRollout

    before = (VMaxRollout.add_layer, VMaxRollout.last_token_row, capture._causal_probs)
    timer = benchmark.RolloutTimer(stage_of=lambda: "x")
    with timer.installed():
        assert VMaxRollout.add_layer is not before[0]
        rollout = VMaxRollout(torch.ones(1, 8, dtype=torch.bool))
        rollout.add_layer(torch.rand(1, 2, 8, 8).softmax(-1))
        rollout.last_token_row()
    assert (VMaxRollout.add_layer, VMaxRollout.last_token_row, capture._causal_probs) == before
    assert timer.attn_probs_s == {}
    assert timer.rollout_s["x"] > 0 and timer.shapes["x"] == [(1, 2, 8)]


def test_tiny_all_runs_every_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``tiny-all``: one per-stage table per MLLM family, each with the tiny SAM2."""
    out = tmp_path / "bench.json"
    argv = ["--models", "tiny-all", "--tiny-dir", str(tmp_path / "models"), "--json", str(out), "--no-naive",
            *TINY_ARGS]
    assert benchmark.main(argv) == 0
    printed = capsys.readouterr().out
    runs = json.loads(out.read_text())["runs"]
    assert [run["name"] for run in runs] == list(benchmark.TINY_MLLMS)
    for run in runs:
        assert run["mllm"] in benchmark.TINY_MLLMS and run["sam2"] == "tiny", run["name"]
        assert run["rollout_start_layer"] == run["num_layers"] // 2
        assert set(run["grounding"]["stages"]) == set(benchmark.STAGES)
        for name in ("p1_video", "p1_frames", "p3_video", "p3_frames"):
            assert run["grounding"]["counts"]["captures"][name], (run["name"], name)
        assert _number(run["grounding"]["total_s"]) and _number(run["tracking"]["per_frame_mean_s"])
        assert f"== {run['name']} on cpu" in printed


def test_model_set_names() -> None:
    sets = benchmark.parse_model_sets("tiny,tiny-all,real,tiny-internvl,qwen3-vl-8b:sam2.1-hiera-large")
    names = [m.name for m in sets]
    assert names[0] == "tiny" and sets[0] == benchmark.ModelSet("tiny", "tiny")  # tiny stays Qwen2.5-VL
    assert names[1:6] == list(benchmark.TINY_MLLMS)
    assert [m.real for m in sets] == [False] * 6 + [True] * len(benchmark.REAL_PAIRS) + [False, True]
    assert names[-1] == "qwen3-vl-8b+sam2.1-hiera-large"


# §10 of the method notes: LLM depth and rollout start layer of every evaluated checkpoint (Qwen3-VL:
# 36 layers per its config.json, start at half depth like the others).
PUBLISHED_DEPTH = {"qwen2-vl-2b": (28, 14), "qwen2-vl-7b": (28, 14), "qwen2.5-vl-3b": (36, 18),
                   "qwen2.5-vl-7b": (28, 14), "qwen3-vl-4b": (36, 18), "qwen3-vl-8b": (36, 18),
                   "internvl3-2b": (28, 14), "internvl3-8b": (28, 14), "internvl3-14b": (48, 24),
                   "llava-ov-7b": (28, 14)}


def test_every_published_mllm_has_a_depth_entry() -> None:
    assert set(PUBLISHED_DEPTH) == set(model_configs.MLLM_CONFIGS)


@pytest.mark.parametrize("name", sorted(model_configs.MLLM_CONFIGS))
def test_real_build_wraps_each_family_in_its_adapter(name: str) -> None:
    """On the meta device: the family's model class and adapter, the rollout from half depth."""
    from decaf_ros.core.config import DecafConfig
    from decaf_ros.core.models import adapter_for

    adapter = benchmark.build_real_mllm(name, torch.device("meta"), torch.bfloat16, DecafConfig())
    model_type = model_configs.mllm_model_type(name)
    assert isinstance(adapter, adapter_for(model_type))
    assert adapter.model.config.model_type == model_type
    assert (adapter.num_layers, adapter.start_layer) == PUBLISHED_DEPTH[name]
    # the tokenizer's ids fit in the published vocabulary the model keeps
    assert len(adapter.processor.tokenizer) < adapter.model.config.get_text_config().vocab_size


@pytest.mark.parametrize("name", sorted(model_configs.MLLM_CONFIGS) + sorted(model_configs.SAM2_CONFIGS))
def test_published_configs_have_the_published_size(name: str) -> None:
    """Built on the meta device (no memory, no init): parameter count within 0.5% of the release."""
    from transformers import Sam2VideoModel

    from decaf_ros.core.models import adapter_for

    with torch.device("meta"):
        if name in model_configs.MLLM_CONFIGS:
            model_type = model_configs.mllm_model_type(name)
            model = adapter_for(model_type)._hf_model_class(model_type)(model_configs.mllm_config(name))
        else:
            model = Sam2VideoModel(model_configs.sam2_video_config(name))
    params = sum(p.numel() for p in model.parameters())
    assert params == pytest.approx(model_configs.PUBLISHED_PARAMS[name], rel=5e-3)
