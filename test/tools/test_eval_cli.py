"""The evaluation loop end to end on synthetic datasets, with a stand-in pipeline planting masks."""
from __future__ import annotations

import hashlib
import json
import logging
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from decaf_ros.evaluation import cli, runner
from decaf_ros.evaluation.datasets import DATA_ROOT_ENV, iter_samples
from decaf_ros.evaluation.runner import DONE_MARKER, EvaluationError, PredictionPaths, format_table, run_evaluation
from decaf_ros.evaluation.synthetic import make_synthetic_dataset

KEY_FRAMES = [0, 2, 4]  # of 6 frames: coarse masks exist on these only


class PlantedPipeline:
    """Returns the ground truth (optionally transformed) of whichever clip it is shown."""

    def __init__(self, dataset, root, dense=lambda gt: gt, fail=False):
        self.gt = {self._key(s.load_frames(), s.expression): s.load_gt() for s in iter_samples(dataset, root)}
        self.dense, self.fail, self.calls = dense, fail, []

    @staticmethod
    def _key(frames, query):
        return hashlib.sha1(frames[0].tobytes()).hexdigest(), query

    def ground(self, frames, query, *, coarse_only=False):
        if self.fail:
            raise AssertionError("resumed run must not ground finished expressions")
        self.calls.append(query)
        gt = self.gt[self._key(frames, query)]
        fused = torch.zeros(len(KEY_FRAMES), 6, 8)
        for slot, frame in enumerate(KEY_FRAMES):
            ys, xs = np.nonzero(gt[frame])
            if len(ys):  # the attention peak sits on the object centre
                fused[slot, int(ys.mean() * 6 / gt.shape[1]), int(xs.mean() * 8 / gt.shape[2])] = 1.0
        return SimpleNamespace(masks=self.dense(gt), coarse_masks=gt[KEY_FRAMES], key_frame_indices=KEY_FRAMES,
                               fused=fused, obj_name="shape", timings={"total": 0.0})


@pytest.fixture()
def davis(tmp_path):
    return make_synthetic_dataset(tmp_path / "davis", "davis", n_videos=2, n_expressions=2)


def test_planted_ground_truth_scores_100(tmp_path, davis):
    out = tmp_path / "out"
    results = run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), show_progress=False)
    assert results["predicted"] == 4
    for mode in ("dense", "coarse"):
        assert results[mode] == {"J": 100.0, "F": 100.0, "J&F": 100.0, "n": 4}
        assert results[f"{mode}_missing"] == {"expressions": 0, "frames": 0}
    # Coarse masks are scored on the three key frames only, dense masks on all six.
    assert {e["n_frames"] for e in results["coarse_expressions"]} == {3}
    assert {e["n_frames"] for e in results["dense_expressions"]} == {6}
    assert results["keypoints"]["PP"]["PP@1"] == 100.0 and results["keypoints"]["skipped"] == 0
    png = out / "davis" / "vid0" / "0" / "00003.png"
    assert png.is_file() and not (out / "davis_coarse" / "vid0" / "0" / "00003.png").exists()
    saved = json.loads((out / "results_davis.json").read_text())
    assert saved["dense"]["J&F"] == 100.0


def test_empty_predictions_give_the_hand_computed_score(tmp_path, davis):
    # Only vid0's disc expression has an empty GT frame (the last one): J = F = 1/6 there, 0 elsewhere.
    pipeline = PlantedPipeline("davis", davis, dense=np.zeros_like)
    results = run_evaluation("davis", tmp_path / "out", davis, pipeline=pipeline, show_progress=False)
    assert [e["J"] for e in results["dense_expressions"]] == [16.67, 0.0, 0.0, 0.0]
    assert results["dense"]["J"] == pytest.approx(16.67 / 4)
    assert results["dense"]["J&F"] == pytest.approx(16.67 / 4)


def test_shifted_masks_keep_f_but_lose_j(tmp_path, davis):
    pipeline = PlantedPipeline("davis", davis, dense=lambda gt: np.roll(gt, 1, axis=2))
    results = run_evaluation("davis", tmp_path / "out", davis, pipeline=pipeline, show_progress=False)
    assert results["dense"]["F"] == 100.0  # 1 px is inside the tolerance of a 48x64 frame
    assert 50.0 < results["dense"]["J"] < 100.0


def test_resume_skips_complete_expressions(tmp_path, davis):
    out = tmp_path / "out"
    run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), show_progress=False)
    again = run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis, fail=True),
                           show_progress=False)
    assert again["predicted"] == 0 and again["dense"]["J&F"] == 100.0
    sample = list(iter_samples("davis", davis))[3]
    (PredictionPaths.of(out, sample).dense / DONE_MARKER).unlink()  # as if interrupted mid-write
    pipeline = PlantedPipeline("davis", davis)
    third = run_evaluation("davis", out, davis, pipeline=pipeline, show_progress=False)
    assert third["predicted"] == 1 and pipeline.calls == [sample.expression]


def test_limit_and_coarse_only(tmp_path, davis):
    out = tmp_path / "out"
    results = run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), coarse_only=True,
                             limit=2, show_progress=False)
    assert "dense" not in results and results["coarse"]["n"] == 2
    assert not (out / "davis").exists()


def test_revos_groups_and_accuracy_robustness(tmp_path):
    root = make_synthetic_dataset(tmp_path / "revos", "revos", n_videos=2, n_expressions=2)
    results = run_evaluation("revos", tmp_path / "out", root, pipeline=PlantedPipeline("revos", root),
                             show_progress=False)
    dense = results["dense"]
    assert set(dense) == {"referring", "reasoning", "overall"}
    assert dense["referring"]["n"] == 2 and dense["reasoning"]["n"] == 2
    assert dense["overall"]["J&F"] == 100.0 and dense["overall"]["A"] == 100.0
    assert dense["overall"]["R"] == pytest.approx(100.0)
    assert "keypoints" not in results  # §8: no keypoint evaluation for ReVOS
    assert (tmp_path / "out" / "revos" / "synth" / "all" / "vid0" / "0" / "00000.png").is_file()


def test_eval_only_without_predictions_scores_zero(tmp_path, davis):
    out = tmp_path / "out"
    (out / "davis").mkdir(parents=True)
    results = run_evaluation("davis", out, davis, eval_only=True, show_progress=False)
    assert results["dense"]["J&F"] == 0.0 and results["dense_missing"]["expressions"] == 4
    assert "coarse" not in results  # no coarse folder at all


def test_cli_eval_only_prints_table(tmp_path, davis, capsys, monkeypatch):
    out = tmp_path / "out"
    run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), show_progress=False)
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))  # default folder name for davis is davis17
    (tmp_path / "davis").rename(tmp_path / "davis17")
    assert cli.main(["--dataset", "davis", "--out", str(out), "--eval-only", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Ref-DAVIS" in printed and "100.0 (100.0, 100.0)" in printed and "PP@1 100.00" in printed


def test_cli_reports_dataset_errors(tmp_path, capsys):
    code = cli.main(["--dataset", "davis", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                     "--eval-only", "--no-progress"])
    assert code == 2 and "dataset folder not found" in capsys.readouterr().err


def test_cli_roots_per_dataset():
    roots = cli.parse_roots(["davis=/a", "revos=/b"], ["davis", "revos", "mevis"])
    assert roots == {"davis": "/a", "revos": "/b", "mevis": None}
    assert cli.parse_roots(["/only"], ["mevis"]) == {"mevis": "/only"}


def test_table_layout_follows_table_2():
    summary = {"J": 70.0, "F": 80.0, "J&F": 75.0, "n": 1}
    table = format_table([
        {"dataset": "revos", "dense": {"referring": summary, "reasoning": summary, "overall": summary}},
        {"dataset": "davis", "dense": summary, "coarse": summary},
    ])
    header = table.splitlines()[0]
    assert header.index("Ref-DAVIS") < header.index("ReVOS overall") < header.index("ReVOS referring")
    assert table.count("75.0 (70.0, 80.0)") == 5 and "DecAF coarse" in table


# ---------------------------------------------------------------------------------------- §9.1 mask counts
def test_gt_mask_count_mismatch_is_handled_per_expression(tmp_path, davis, caplog):
    """Fewer GT masks than frames: that expression scores 0; more: the first T are used; never an abort."""
    out = tmp_path / "out"
    run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), show_progress=False)
    masks_file = davis / "valid" / "mask_dict.pkl"
    masks = pickle.loads(masks_file.read_bytes())
    masks["0"] = masks["0"][:-1]  # vid0 / exp 0: 5 masks for 6 frames
    masks["3"] = masks["3"] + [masks["3"][0]]  # vid1 / exp 1: 7 masks for 6 frames
    masks_file.write_bytes(pickle.dumps(masks))
    with caplog.at_level(logging.WARNING):
        results = run_evaluation("davis", out, davis, eval_only=True, show_progress=False)
    dense = results["dense_expressions"]
    assert [(e["video"], e["exp_id"], e["JF"]) for e in dense] == [
        ("vid0", "0", 0.0), ("vid0", "1", 100.0), ("vid1", "0", 100.0), ("vid1", "1", 100.0)]
    assert results["dense"]["J&F"] == 75.0 and results["coarse"]["J&F"] == 75.0
    assert results["gt_mismatch"] == [{"video": "vid0", "exp_id": "0", "anno_id": 0, "masks": 5, "frames": 6}]
    assert [r["PP"]["PP@1"] for r in results["keypoints_expressions"]] == [0.0, 100.0, 100.0, 100.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("anno_id 0 has 5 masks for 6 frames" in w and "scores 0" in w for w in warnings)
    assert any("anno_id 3 has 7 masks for 6 frames: using the first 6" in w for w in warnings)


# ---------------------------------------------------------------------------------------- sharding
def test_three_shards_merged_equal_one_run(tmp_path, capsys):
    root = make_synthetic_dataset(tmp_path / "davis", "davis", n_videos=3, n_expressions=3)
    shifted = lambda gt: np.roll(gt, 2, axis=2)  # noqa: E731  (J varies per expression)
    whole = run_evaluation("davis", tmp_path / "one", root, pipeline=PlantedPipeline("davis", root, shifted),
                           show_progress=False)
    out, calls = tmp_path / "sharded", []
    for index in range(3):
        pipeline = PlantedPipeline("davis", root, shifted)
        shard = run_evaluation("davis", out, root, pipeline=pipeline, num_shards=3, shard_index=index,
                               show_progress=False)
        assert shard["positions"] == list(range(index, 9, 3))
        calls += pipeline.calls
        again = run_evaluation("davis", out, root, pipeline=PlantedPipeline("davis", root, fail=True),
                               num_shards=3, shard_index=index, show_progress=False)
        assert again["predicted"] == 0  # each shard resumes on its own
    expressions = [s.expression for s in iter_samples("davis", root)]
    assert sorted(calls) == sorted(expressions)  # every expression grounded once, by one shard
    assert not (out / "results_davis.json").exists()
    assert cli.main(["--dataset", "davis", "--out", str(out), "--merge", "--num-shards", "3"]) == 0
    merged = json.loads((out / "results_davis.json").read_text())
    for key in ("dense", "coarse", "keypoints", "dense_expressions", "coarse_expressions",
                "keypoints_expressions", "dense_missing", "positions", "n_expressions"):
        assert merged[key] == json.loads(json.dumps(whole[key])), key
    assert len({(e["video"], e["exp_id"]) for e in merged["dense_expressions"]}) == 9
    assert 0 < merged["dense"]["J"] < 100
    assert format_table([merged]) in capsys.readouterr().out
    assert format_table([merged]) == format_table([whole])


def test_merge_refuses_missing_or_foreign_shards(tmp_path, davis, capsys):
    out = tmp_path / "out"
    for index in (0, 2):
        run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), num_shards=3,
                       shard_index=index, show_progress=False)
    assert cli.main(["--dataset", "davis", "--out", str(out), "--merge", "--num-shards", "3"]) == 2
    assert "shard 1 of 3 has no results" in capsys.readouterr().err
    run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), num_shards=3, shard_index=1,
                   limit=3, show_progress=False)  # another expression list
    assert cli.main(["--dataset", "davis", "--out", str(out), "--merge", "--num-shards", "3"]) == 2
    assert "different runs" in capsys.readouterr().err
    with pytest.raises(EvaluationError, match="shard-index"):
        run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), num_shards=3,
                       shard_index=3, show_progress=False)


def test_predictions_of_other_settings_are_not_mixed(tmp_path, davis):
    out = tmp_path / "out"
    run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), limit=1, show_progress=False)
    with pytest.raises(EvaluationError, match="prompt_object_version"):
        run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis),
                       settings={"prompt_object_version": 2}, show_progress=False)


def test_cli_variant_options_reach_the_pipeline(tmp_path, davis, monkeypatch):
    seen = []

    def build(mllm, sam2, device, dtype, coarse_only, settings):
        seen.append(dict(settings))
        return PlantedPipeline("davis", davis)

    monkeypatch.setattr(runner, "build_pipeline", build)
    out = tmp_path / "out"
    assert cli.main(["--dataset", "davis", "--root", str(davis), "--out", str(out), "--no-progress",
                     "--prompt-choice-version", "2", "--image-processor-backend", "torchvision",
                     "--no-share-sam2-features"]) == 0
    assert seen == [{"prompt_object_version": 0, "prompt_choice_version": 2, "prompt_background_version": 0,
                     "image_processor_backend": "torchvision", "share_prompt_prefix": True,
                     "share_sam2_features": False}]
    recorded = json.loads((out / "settings_davis.json").read_text())
    assert recorded["prompt_choice_version"] == 2 and recorded["mllm"] == "Qwen/Qwen2.5-VL-7B-Instruct"
