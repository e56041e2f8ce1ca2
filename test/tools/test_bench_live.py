"""bench/bench_live.py and bench/gpu_live.sh at the smoke size: the report's fields, never its values."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_live.py"
IDENTITY_FLAGS = ("coarse_masks_identical", "dense_masks_identical", "kept_identical", "answers_identical")
SUMMARY_FIELDS = ("mllm_s", "mllm_cpu_s", "sam2_s", "goal_to_coarse_s", "goal_to_dense_s",
                  "goal_to_coarse_cpu_s", "goal_to_dense_cpu_s")


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_live", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_report(report: dict, ratio_keys: tuple[str, ...]) -> None:
    for key in ratio_keys:
        assert _positive(report[key]), f"{key} = {report[key]!r}"
    assert 0.0 <= report["shared_row_max_rel_diff"] < 1.0  # computed from both runs' rows
    for key in IDENTITY_FLAGS:
        assert isinstance(report[key], bool), key
    for mode in ("off", "on"):
        summary = report[mode]
        assert all(_positive(summary[name]) for name in SUMMARY_FIELDS), summary
        assert summary["goal_to_coarse_s"] <= summary["goal_to_dense_s"]
        assert summary["prefill_token_layers"] > 0 and summary["rollout_rows"] > 0
        assert summary["tracklets"] >= 1  # the smoke model's F has peaks: SAM2 ran
    # the same work was measured: one rollout row per pass and frame batch in both runs
    assert report["off"]["rollout_rows"] == report["on"]["rollout_rows"]
    assert report["on"]["tracking"]["frames"] == 2 and _positive(report["on"]["tracking"]["frames_per_s"])


def test_bench_live_smoke_reports_every_ratio_and_identity_field(tmp_path, capsys):
    bench = _load_script()
    out = tmp_path / "live.json"
    assert bench.main(["--smoke", "--track-frames", "2", "--tiny-dir", str(tmp_path / "models"),
                       "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    check_report(report, bench.RATIO_KEYS)
    assert report["settings"]["key_frames"] == 3 and report["models"]["mllm"] == "mid"
    printed = capsys.readouterr().out
    for text in ("MLLM stage s", "prefill token-layers", "SAM2 encoder calls", "goal -> coarse s", "identical?"):
        assert text in printed


def test_gpu_live_script_smoke_runs_from_the_working_tree(tmp_path):
    """The GPU script's own path at CPU size: plain python + PYTHONPATH, no installed package needed."""
    bench = _load_script()
    out = tmp_path / "gpu_live.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHON"] = sys.executable
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_live.sh"), "--smoke", "--tiny-dir", str(tmp_path / "models"),
         "--json", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    check_report(report, bench.RATIO_KEYS)
    assert "goal -> dense s" in done.stdout and "tracking" in done.stdout
