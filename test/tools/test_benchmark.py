"""decaf-bench at its tiniest setting: output structure only, never timing values."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from decaf_ros import benchmark
from decaf_ros.core.pipeline import GROUND_STAGES
from decaf_ros.devtools import real_size

MLLMS = sorted(real_size.published_mllms())
SAM2S = sorted(real_size.published_sam2())
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
    assert set(tiny["grounding"]["stages"]) == set(GROUND_STAGES)
    for name, stage in tiny["grounding"]["stages"].items():
        assert set(stage) == {"seconds", "rollout_s", "rss_peak_mb", "rss_delta_mb"}, name  # the schema, whole
        assert all(_number(value) for value in stage.values()), name
        assert name in printed
    assert "dense attn" not in printed
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
        assert _number(point["total_s"]) and set(point["stages"]) == set(GROUND_STAGES)
    assert "latency vs key frames" in printed and "latency vs resolution" in printed

    # real sizes on CPU are skipped with a reason, not attempted
    assert "skipped" in real and "--allow-cpu-real" in real["skipped"]
    assert "SKIPPED" in printed


def test_timing_hooks_are_removed_after_a_run() -> None:
    from decaf_ros.core.rollout import VMaxRollout

    before = (VMaxRollout.add_layer, VMaxRollout.add_layer_qk, VMaxRollout.last_token_row)
    timer = benchmark.RolloutTimer(stage_of=lambda: "x")
    with timer.installed():
        assert VMaxRollout.add_layer is not before[0]
        rollout = VMaxRollout(torch.ones(1, 8, dtype=torch.bool))
        rollout.add_layer(torch.rand(1, 2, 8, 8).softmax(-1))
        rollout.last_token_row()
    assert (VMaxRollout.add_layer, VMaxRollout.add_layer_qk, VMaxRollout.last_token_row) == before
    assert set(timer.rollout_s) == {"x"} and timer.shapes["x"] == [(1, 2, 8)]


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
        assert set(run["grounding"]["stages"]) == set(GROUND_STAGES)
        for name in ("p1_video", "p1_frames", "p3_video", "p3_frames"):
            assert run["grounding"]["counts"]["captures"][name], (run["name"], name)
        assert _number(run["grounding"]["total_s"]) and _number(run["tracking"]["per_frame_mean_s"])
        assert f"== {run['name']} on cpu" in printed


def test_model_set_names() -> None:
    tiny = list(benchmark.TINY_MLLMS)
    real_mllm, real_sam2 = MLLMS[-1], SAM2S[-1]
    sets = benchmark.parse_model_sets(f"tiny,tiny-all,real,{tiny[-1]},{real_mllm}:{real_sam2}")
    names = [m.name for m in sets]
    assert names[0] == "tiny" and sets[0] == benchmark.ModelSet("tiny", "tiny")  # the default family's
    assert names[1:1 + len(tiny)] == tiny
    assert [m.real for m in sets] == [False] * (1 + len(tiny)) + [True] * len(benchmark.REAL_PAIRS) + [False, True]
    assert names[-1] == f"{real_mllm}+{real_sam2}"




@pytest.mark.parametrize("name", MLLMS)
def test_real_build_wraps_each_family_in_its_adapter(name: str) -> None:
    """On the meta device: the family's model class and adapter, the rollout from half depth (§10)."""
    from decaf_ros.core.config import DecafConfig
    from decaf_ros.core.models import adapter_for

    _, published = real_size.published_mllms()[name]
    adapter = real_size.build_real_mllm(name, torch.device("meta"), torch.bfloat16, DecafConfig())
    model_type = real_size.mllm_model_type(name)
    assert isinstance(adapter, adapter_for(model_type))
    assert adapter.model.config.model_type == model_type
    assert (adapter.num_layers, adapter.start_layer) == (published.llm_layers, published.llm_layers // 2)
    # the tokenizer's ids fit in the published vocabulary the model keeps
    assert len(adapter.processor.tokenizer) < adapter.model.config.get_text_config().vocab_size


@pytest.mark.parametrize("name", MLLMS + SAM2S)
def test_published_configs_have_the_published_size(name: str) -> None:
    """Built on the meta device (no memory, no init): parameter count within 0.5% of the release."""
    from transformers import Sam2VideoModel

    from decaf_ros.core.models import adapter_for
    from decaf_ros.core.models.registry import SAM2_FAMILY, family_module

    with torch.device("meta"):
        if name in MLLMS:
            model_type = real_size.mllm_model_type(name)
            model = adapter_for(model_type)._hf_model_class(model_type)(real_size.mllm_config(name))
            published = real_size.published_mllms()[name][1]
        else:
            model = Sam2VideoModel(family_module(SAM2_FAMILY, "configs").video_config(name))
            published = real_size.published_sam2()[name]
    params = sum(p.numel() for p in model.parameters())
    assert params == pytest.approx(published.params, rel=5e-3)
