"""Evaluation sets (files, key, reuse), the diversity sweep along a run, and the prompt overlap."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from smart_core.evaluate import diversity_sweep, evaluate_model, evaluation_key, prompt_overlap
from smart_core.features import FEATURES
from smart_core.midi import as_score, n_notes
from smart_core.render_pool import RenderPool, RenderSettings
from smart_core.reward import StandInScorer
from smart_core.runs import RunDir

DIVERSITY_COLUMNS = ["distinct_1", "distinct_2", "distinct_3", "distinct_4", "pairwise_distance", "vendi",
                     "vendi_profile", "prompt_dependence"]


def test_an_evaluation_folder_holds_table_features_midi_and_its_key_and_is_reused(tiny_trained):
    cfg, run = tiny_trained["cfg"], tiny_trained["run"]
    final = run.final_checkpoint(cfg.for_run("smart"))
    folder, table = run.eval_dir("final"), tiny_trained["tuned_eval"]

    assert len(table) == cfg.eval_prompts
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "samples.parquet"), table)
    midis = sorted((folder / "midi").glob("*.mid"))
    assert [Path(p) for p in table["midi_path"]] == midis  # one file per row, in row order
    assert [n_notes(as_score(p.read_bytes())) for p in midis] == table["n_notes"].tolist()
    features = pd.read_parquet(folder / "features.parquet")
    assert features["prompt"].tolist() == table["prompt"].tolist()
    assert set(FEATURES) | set(StandInScorer.axes) | {"reward"} <= set(features.columns)
    info = json.loads((folder / "info.json").read_text())
    assert info["key"] == evaluation_key(cfg, final, StandInScorer(), cfg.eval_prompts)
    assert info["n_prompts"] == cfg.eval_prompts and info["reward"]["backend"] == "standin"

    stamp = (folder / "info.json").stat().st_mtime_ns
    again = evaluate_model(cfg, final, folder, StandInScorer(), progress=False)
    pd.testing.assert_frame_equal(again, table)
    assert (folder / "info.json").stat().st_mtime_ns == stamp  # reused, not re-sampled


def test_an_evaluation_folder_with_another_key_is_replaced_whole(tiny_cfg, tiny_base_model, tmp_path):
    cfg = tiny_cfg.replace(render_workers=1)
    folder = tmp_path / "eval"
    (folder / "midi").mkdir(parents=True)
    (folder / "midi" / "00009.mid").write_bytes(b"left over")
    (folder / "samples.parquet").write_bytes(b"stale")
    (folder / "info.json").write_text(json.dumps({"key": {"model_sha256": "another model"}}))

    table = evaluate_model(cfg, tiny_base_model, folder, StandInScorer(), n_prompts=2, progress=False)
    assert len(table) == 2 and sorted(p.name for p in (folder / "midi").iterdir()) == ["00000.mid", "00001.mid"]
    assert json.loads((folder / "info.json").read_text())["key"] == evaluation_key(cfg, tiny_base_model,
                                                                                   StandInScorer(), 2)


def test_the_diversity_sweep_has_step_0_and_every_checkpoint(tiny_trained):
    cfg, run, sweep = tiny_trained["cfg"], tiny_trained["run"], tiny_trained["sweep"]
    # step 0 is the base model; checkpoint_every=2, and the last step always has one
    assert sweep["step"].tolist() == [0] + [s for s, _ in run.checkpoints()] == [0, 2, cfg.for_run("smart").steps]
    assert (sweep["run"] == "smart").all()
    for column in ["reward_mean", "n_notes_mean", *DIVERSITY_COLUMNS]:
        assert column in sweep.columns, column
    assert sweep["reward_mean"].between(0.1, 1.0).all()  # stand-in / 10, the stand-in being in 1..10
    for n in (1, 2, 3, 4):
        assert sweep[f"distinct_{n}"].between(0, 1).all()
    pd.testing.assert_frame_equal(pd.read_parquet(run.eval_dir("diversity") / "sweep.parquet"), sweep)


def test_the_diversity_sweep_computes_only_the_steps_its_cache_lacks(tiny_trained, tmp_path):
    cfg, sweep = tiny_trained["cfg"], tiny_trained["sweep"]
    run = RunDir(tmp_path / "smart")
    shutil.copytree(tiny_trained["run"].path, run.path)  # a copy: the shared run stays as it is
    cache = run.eval_dir("diversity") / "sweep.parquet"
    marked = sweep[sweep["step"] != 2].assign(vendi=-1.0)  # cached rows are taken as they are
    marked.to_parquet(cache, index=False)

    with RenderPool(RenderSettings.from_config(cfg), 1) as pool:
        resumed = diversity_sweep(cfg.for_run("smart"), run.path, cfg.base_model_source, StandInScorer(), pool,
                                  progress=False)
    assert resumed["step"].tolist() == [0, 2, 4]
    assert resumed.loc[resumed["step"] != 2, "vendi"].tolist() == [-1.0, -1.0]
    fresh, original = resumed[resumed["step"] == 2].iloc[0], sweep[sweep["step"] == 2].iloc[0]
    for column in ["reward_mean", "n_notes_mean", *DIVERSITY_COLUMNS]:  # same seeds, same samples
        assert fresh[column] == pytest.approx(original[column], rel=1e-6, nan_ok=True), column
    pd.testing.assert_frame_equal(pd.read_parquet(cache), resumed)


def test_prompt_overlap_counts_evaluation_prompts_seen_in_training():
    train = pd.Series(["a", "b", "b", "c", "a"])
    evaluation = pd.DataFrame({"prompt": ["a", "c", "d", "e", "a"]})
    assert prompt_overlap(train, evaluation) == {"eval_prompts": 5, "distinct_train_prompts": 3,
                                                 "eval_prompts_seen_in_training": 3, "fraction": 0.6}
    assert prompt_overlap(pd.Series(["x"]), evaluation)["eval_prompts_seen_in_training"] == 0
