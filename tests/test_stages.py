"""The stages behind the notebooks: what training_stage records, and that every stage reuses what
it finished (and only while its key still holds)."""

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from smart_core.evaluate import base_eval_dir, evaluation_key
from smart_core.model import load_pretrained
from smart_core.reward import StandInScorer, describe_scorer
from smart_core.stages import soundfont_table, training_stage, unconditional_samples


class StandInWithWeightsFile(StandInScorer):
    """The stand-in recording a weights file of its own, as Audiobox does: another scorer record
    (the caches key on it), the same scores."""

    def __init__(self, sha256: str):
        super().__init__()
        self.sha256 = sha256

    def describe(self) -> dict:
        return describe_scorer(self, asset={"sha256": self.sha256})


def _mtimes(paths) -> dict:
    return {p: p.stat().st_mtime_ns for p in paths}


def test_training_stage_returns_and_records_what_the_run_was_compared_with(tiny_trained, tiny_base_model):
    cfg, run = tiny_trained["cfg"], tiny_trained["run"]
    assert {"run", "base_eval", "tuned_eval", "sweep", "overlap"} <= set(tiny_trained)
    assert run.path == cfg.profile_dir / "smart" and run.is_complete(cfg.for_run("smart"))
    assert len(run.steps()) == cfg.for_run("smart").steps == 4
    meta = run.meta

    # the base evaluation it was compared with: the shared folder for this key, holding that table
    scorer = StandInScorer()
    folder = base_eval_dir(cfg, evaluation_key(cfg, cfg.base_model_source, scorer, cfg.eval_prompts))
    assert meta["base_eval_dir"] == folder.name and (folder / "info.json").exists()  # a name: runs/ may move
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "samples.parquet"), tiny_trained["base_eval"])
    assert set(tiny_trained["base_eval"]["model"]) == {str(tiny_base_model)}
    final = run.final_checkpoint(cfg.for_run("smart"))
    assert set(tiny_trained["tuned_eval"]["model"]) == {str(final)}
    assert len(tiny_trained["base_eval"]) == len(tiny_trained["tuned_eval"]) == cfg.eval_prompts
    assert meta["eval_prompt_overlap"] == tiny_trained["overlap"]

    # the scorer, in the run and in the profile's record that every figure reads
    assert meta["reward"]["backend"] == "standin" and meta["reward"] == scorer.describe()
    assert json.loads((cfg.profile_dir / "reward.json").read_text()) == scorer.describe()

    # the base model it started from, with the sha256 of its weights
    asset = meta["base_model_asset"]
    assert Path(asset["path"]).resolve() == Path(tiny_base_model).resolve()
    weights = Path(tiny_base_model) / asset["weights_file"]
    assert asset["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_training_stage_again_retrains_and_re_evaluates_nothing(tiny_trained):
    cfg, run = tiny_trained["cfg"], tiny_trained["run"]
    logs = sorted((run.path / "log").glob("*.parquet"))
    assert len([p for p in logs if p.name.startswith("steps-")]) == 4
    done = logs + [cfg.profile_dir / "eval" / run.meta["base_eval_dir"] / "info.json", run.eval_dir("final") / "info.json",
                   run.eval_dir("diversity") / "sweep.parquet", *(f / "trainer_state.pt" for _, f in run.checkpoints())]
    before = _mtimes(done)
    steps = run.steps()

    again = training_stage(cfg, "smart", progress=False)

    assert _mtimes(done) == before
    pd.testing.assert_frame_equal(again["run"].steps(), steps)
    for name in ("base_eval", "tuned_eval", "sweep"):
        pd.testing.assert_frame_equal(again[name], tiny_trained[name], obj=name)
    assert again["overlap"] == tiny_trained["overlap"]


@pytest.fixture(scope="module")
def base_model(tiny_base_model):
    return load_pretrained(tiny_base_model).eval()


def test_unconditional_samples_are_cached_and_redrawn_when_model_or_scorer_changes(tiny_cfg, base_model, tmp_path):
    cfg = tiny_cfg.replace(runs_dir=str(tmp_path), unconditional_samples=2, render_workers=1)
    path = cfg.base_model_dir / "unconditional_samples.parquet"
    sidecar = path.with_suffix(".json")

    first = unconditional_samples(cfg, base_model, "sha-a", StandInScorer())
    assert len(first) == 2 and set(first["prompt"]) == {"BOS_None"}
    for p in first["midi_path"]:
        assert Path(p).parent == cfg.base_model_dir / "samples" and Path(p).exists()
    assert (first["reward"] == 0.1 * first["standin"]).all()
    stamp = _mtimes([path, sidecar])

    pd.testing.assert_frame_equal(unconditional_samples(cfg, base_model, "sha-a", StandInScorer()), first)
    assert _mtimes([path, sidecar]) == stamp  # reused

    unconditional_samples(cfg, base_model, "sha-b", StandInScorer())
    assert json.loads(sidecar.read_text())["key"]["model_sha256"] == "sha-b"  # another model: drawn again
    other = StandInWithWeightsFile("f" * 64)
    again = unconditional_samples(cfg, base_model, "sha-b", other)
    assert json.loads(sidecar.read_text())["key"]["reward"] == {"sha256": "f" * 64}  # another scorer: again
    pd.testing.assert_frame_equal(again, first)  # same seed, same (stand-in) scores


def test_soundfont_table_is_cached_and_rescored_when_the_scorer_changes(tiny_cfg, tiny_corpus, tmp_path):
    cfg = tiny_cfg.replace(runs_dir=str(tmp_path), soundfont_pieces=2, render_workers=1)
    path = cfg.profile_dir / "soundfonts.parquet"
    sidecar = path.with_suffix(".json")

    table = soundfont_table(cfg, tiny_corpus, StandInScorer())
    # compare_soundfonts is off in tiny: one row, the configured font; a stand-in has no "average"
    assert table["soundfont"].tolist() == [cfg.soundfont] and table["pieces"].tolist() == [2]
    assert list(table.columns) == ["soundfont", "pieces", *StandInScorer.axes]
    assert 1 <= table.loc[0, "standin"] <= 10
    key = json.loads(sidecar.read_text())["key"]
    assert key["reward"] == "standin" and len(key["pieces"]) == 2
    stamp = _mtimes([path, sidecar])

    pd.testing.assert_frame_equal(soundfont_table(cfg, tiny_corpus, StandInScorer()), table)
    assert _mtimes([path, sidecar]) == stamp  # reused

    rescored = soundfont_table(cfg, tiny_corpus, StandInWithWeightsFile("e" * 64))
    assert json.loads(sidecar.read_text())["key"]["reward"] == {"sha256": "e" * 64}
    pd.testing.assert_frame_equal(rescored, table)  # the same audio, the same (stand-in) scores
