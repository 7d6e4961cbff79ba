"""Runs are complete only when their final checkpoint exists and matches their config; everything
else is resumed, remade or refused in one line. Also make clean-runs and the pipeline's digests."""

import json
import shutil
import sqlite3

import pandas as pd
import pytest

from smart_core.errors import RunMismatch
from smart_core.grpo import train
from smart_core.pipeline import artifact_digest
from smart_core.runs import IncompleteRun, RunDir, clean_runs


def test_a_finished_run_missing_its_final_checkpoint_is_resumed_not_presented(tiny_cfg, tiny_base_model):
    cfg = tiny_cfg.replace(steps=4, checkpoint_every=2)
    run = train(cfg, "complete_check", tiny_base_model, progress=False)
    rewards = run.steps()["reward_mean"].tolist()
    final = run.final_checkpoint(cfg)
    shutil.rmtree(final)
    assert not run.is_complete(cfg)
    with pytest.raises(IncompleteRun, match="no final checkpoint"):
        run.final_checkpoint(cfg)  # never an earlier checkpoint in its place
    run = train(cfg, "complete_check", tiny_base_model, progress=False)
    assert run.final_checkpoint(cfg) == final and run.is_complete(cfg)
    assert run.steps()["reward_mean"].tolist() == rewards  # resumed from step 2, exactly as before


def test_a_changed_config_is_refused_in_one_line_naming_the_keys(tiny_cfg, tiny_base_model):
    cfg = tiny_cfg.replace(steps=2, checkpoint_every=2)
    train(cfg, "mismatch", tiny_base_model, progress=False)
    with pytest.raises(RunMismatch, match=r"lr \(stored 0.001, asked 0.5\)") as err:
        train(cfg.replace(lr=0.5), "mismatch", tiny_base_model, progress=False)
    assert "\n" not in str(err.value)
    # render_workers changes speed, not results: not a difference
    train(cfg.replace(render_workers=1), "mismatch", tiny_base_model, progress=False)


def test_the_command_line_override_wins_over_the_named_runs_preset(tiny_cfg):
    assert tiny_cfg.for_run("long").steps == 6
    cfg = tiny_cfg.with_cli_overrides(["steps=8", "beta=0.0"])
    assert cfg.for_run("long").steps == 8 and cfg.for_run("smart").beta == 0.0
    assert cfg.for_run("long_beta0").beta == 0.0 and tiny_cfg.for_run("smart").beta == 0.04


def test_a_half_written_checkpoint_is_ignored_and_removed(tmp_path):
    run = RunDir(tmp_path / "run")
    good = run.checkpoint_dir(2)
    good.mkdir(parents=True)
    (good / "trainer_state.pt").write_bytes(b"x")
    half = good.with_name("step-000004.tmp")
    half.mkdir()
    (half / "trainer_state.pt").write_bytes(b"")
    assert run.checkpoints() == [(2, good)] and not half.exists()


def _study_with_ratings(root, n):
    private = root / "study" / "private"
    private.mkdir(parents=True)
    with sqlite3.connect(private / "ratings.sqlite") as con:
        con.execute("CREATE TABLE ratings (participant TEXT, stimulus TEXT, rating INT, rated_at TEXT)")
        con.executemany("INSERT INTO ratings VALUES (?, ?, ?, ?)", [("p", f"s{i}", 5, f"t{i}") for i in range(n)])
    con.close()
    return private / "ratings.sqlite"


def test_clean_runs_keeps_studies_holding_ratings(tmp_path):
    runs = tmp_path / "runs"
    db = _study_with_ratings(runs / "small", 3)
    _study_with_ratings(runs / "tiny", 0)
    (runs / "small" / "smart" / "log").mkdir(parents=True)
    (runs / "small" / "smart" / "log" / "steps-000001.parquet").write_bytes(b"x")
    kept = clean_runs(runs)
    assert kept == [runs / "small" / "study"] and db.exists()
    assert not (runs / "small" / "smart").exists() and not (runs / "tiny").exists()
    clean_runs(runs, delete_ratings=True)
    assert not runs.exists()


def test_artifact_digest_sees_deleted_evaluations_and_new_ratings(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "samples.parquet").write_bytes(b"x")
    db = _study_with_ratings(tmp_path, 2)
    paths = [tmp_path / "eval", tmp_path / "study"]
    before = artifact_digest(paths)
    assert artifact_digest(paths) == before
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO ratings VALUES ('q', 's9', 4, 't9')")
    con.close()
    after_rating = artifact_digest(paths)
    assert after_rating != before
    shutil.rmtree(tmp_path / "eval")
    assert artifact_digest(paths) != after_rating


def test_the_evaluation_cache_is_keyed_by_model_and_settings(tiny_cfg, tiny_base_model):
    from smart_core.evaluate import base_eval_dir, evaluate_model, evaluation_key
    from smart_core.reward import StandInScorer

    scorer, cfg = StandInScorer(), tiny_cfg.replace(eval_prompts=2)
    first = evaluate_model(cfg, tiny_base_model, None, scorer, progress=False)
    folder = base_eval_dir(cfg, evaluation_key(cfg, tiny_base_model, scorer, 2))
    stamp = (folder / "info.json").stat().st_mtime_ns
    pd.testing.assert_frame_equal(evaluate_model(cfg, tiny_base_model, None, scorer, progress=False), first)
    assert (folder / "info.json").stat().st_mtime_ns == stamp  # reused
    longer = cfg.replace(max_completion_tokens=24)
    evaluate_model(longer, tiny_base_model, None, scorer, progress=False)
    other = base_eval_dir(longer, evaluation_key(longer, tiny_base_model, scorer, 2))
    assert other != folder and json.loads((other / "info.json").read_text())["key"]["max_completion_tokens"] == 24


def test_a_run_resumes_only_with_the_reward_it_started_with(tiny_cfg, tiny_base_model):
    from smart_core.grpo import check_reward

    cfg = tiny_cfg.replace(steps=2, checkpoint_every=1)
    run = train(cfg, "reward_switch", tiny_base_model, progress=False, stop_after_step=1)
    check_reward(run, run.meta["reward"])  # the same scorer resumes
    with pytest.raises(RunMismatch, match="started with the standin reward .* would resume with audiobox"):
        check_reward(run, {"backend": "audiobox", "asset": {"sha256": "0" * 64}})


def test_reward_weights_naming_a_missing_axis_are_refused_before_training(tiny_cfg, tiny_base_model):
    from smart_core.errors import ConfigError

    with pytest.raises(ConfigError, match="reward_weights name CE, which the standin scorer does not produce"):
        train(tiny_cfg.replace(reward_weights={"CE": 0.1}), "bad_weights", tiny_base_model, progress=False)


def test_reproduce_passes_every_user_override_even_the_profiles_own_value():
    from smart_core.config import Config
    from smart_core.pipeline import steps

    cfg = Config.from_profile("small").with_cli_overrides(["steps=40"])  # small's own value: still the user's
    assert all(params["overrides"] == {"steps": 40} for _, _, params in steps(cfg))


def test_the_commit_is_dirty_for_changed_code_not_for_changed_outputs(tmp_path, monkeypatch):
    """Writing figures/ or the README's generated section is what making results does: it must not
    mark the results as made by uncommitted code; an edit to the package must."""
    import subprocess

    from smart_core import runs

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "smart_core").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "smart_core" / "stats.py").write_text("x = 1\n")
    (tmp_path / "figures" / "claims.csv").write_text("a\n1\n")
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "start")
    monkeypatch.setattr(runs, "REPO_ROOT", tmp_path)
    clean = runs.git_commit()
    assert len(clean) == 40 and not clean.endswith("-dirty")
    (tmp_path / "figures" / "claims.csv").write_text("a\n2\n")
    assert runs.git_commit() == clean
    (tmp_path / "smart_core" / "stats.py").write_text("x = 2\n")
    assert runs.git_commit() == clean + "-dirty"
