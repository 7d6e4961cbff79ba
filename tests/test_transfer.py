"""Reward transfer: re-rendering evaluations with other SoundFonts, the paired table and its verdicts."""

import numpy as np
import pandas as pd
import pytest

from smart_core import transfer
from smart_core.reward import StandInScorer
from smart_core.soundfonts import available_soundfonts, resolve_soundfont


def test_the_transfer_fonts_are_every_installed_font_but_the_training_one(tiny_cfg):
    fonts = transfer.transfer_fonts(tiny_cfg)
    assert transfer.training_font_name(tiny_cfg) == "timgm6mb" and "timgm6mb" not in fonts
    assert set(fonts) == set(available_soundfonts()) - {"timgm6mb"}
    assert resolve_soundfont(tiny_cfg.soundfont) not in fonts.values()
    # the set-up installs every Debian SoundFont the table uses: a missing one would shrink the table silently
    assert set(fonts) >= {"fluidr3_gm", "fluidr3_mono", "musescore"}


def test_rescoring_with_the_training_font_gives_the_recorded_scores_and_is_cached(tiny_trained, monkeypatch):
    cfg = tiny_trained["cfg"]
    folder = tiny_trained["run"].eval_dir("final")
    scores = transfer.rescore(cfg, [folder], cfg.soundfont, StandInScorer(), progress=False)[folder]
    recorded = transfer.recorded_scores(folder, list(StandInScorer.axes))
    pd.testing.assert_frame_equal(scores, recorded)  # the same MIDI, font and scorer: the same numbers
    other = transfer.rescore(cfg, [folder], "fluidr3_mono", StandInScorer(), limit=3, progress=False)[folder]
    assert len(other) == 3 and other["prompt"].tolist() == recorded["prompt"].head(3).tolist()
    assert not np.allclose(other["standin"], recorded["standin"].head(3))  # another piano sounds different
    monkeypatch.setattr(transfer, "RenderPool", lambda *a, **k: pytest.fail("rendered again"))
    again = transfer.rescore(cfg, [folder], "fluidr3_mono", StandInScorer(), limit=3, progress=False)[folder]
    pd.testing.assert_frame_equal(again, other)


def _scores(gains: dict[str, float], n: int = 24, seeds=(0, 1)) -> pd.DataFrame:
    """A long score table: per font, tuned = base + gain (+ small noise), two seeds of n prompts."""
    rng = np.random.default_rng(0)
    rows = []
    for font, gain in gains.items():
        for seed in seeds:
            base = rng.normal(5, 1, n)
            tuned = base + gain + rng.normal(0, 0.05, n)
            for system, values in (("base", base), ("tuned", tuned)):
                rows.append(pd.DataFrame({"prompt": [f"p{i}" for i in range(n)], "standin": values,
                                          "run": "smart" if seed == 0 else f"smart_seed{seed}", "seed": seed,
                                          "system": system, "soundfont": font, "scorer": "standin",
                                          "output": np.arange(n)}))
    return pd.concat(rows, ignore_index=True)


def test_the_table_pools_replicates_and_judges_each_font_against_the_training_font():
    scores = _scores({"train": 1.0, "same": 1.0, "half": 0.5, "none": 0.0, "flipped": -1.0})
    table = transfer.transfer_table(scores, "train", "standin", "standin", {"standin": ["standin"]}, n_boot=200)
    rows = table.set_index("soundfont")
    assert set(table["run"]) == {"smart"} and (table["n_pairs"] == 48).all() and (table["n_seeds"] == 2).all()
    assert rows.loc["train", "heard_in_training"] and not rows.loc["same", "heard_in_training"]
    assert rows.loc[["train", "same", "half", "none", "flipped"], "verdict"].tolist() == [
        "survives", "survives", "survives", "not significant", "reversed"]
    assert rows.loc["half", "gain_retained"] == pytest.approx(0.5, abs=0.1)
    assert rows.loc["train", "gain_retained"] == pytest.approx(1.0)
    assert table["training_reward_axis"].all()
    # no gain on the training font: nothing to transfer, whatever the other fonts show
    flat = transfer.transfer_table(_scores({"train": 0.0, "other": 1.0}), "train", "standin", "standin",
                                   {"standin": ["standin"]}, n_boot=50)
    assert set(flat["verdict"]) == {"no gain to transfer"}


@pytest.mark.slow
def test_a_standin_run_is_cross_scored_by_audiobox_when_its_weights_are_in_the_cache(tiny_trained, offline_hub):
    from smart_core.stages import cross_scorer_for

    cfg = tiny_trained["cfg"].replace(cross_score_limit=2)
    cross = cross_scorer_for(cfg, StandInScorer())
    assert cross is not None and cross.name == "audiobox"
    sets = transfer.paired_sets(cfg, ["smart"])
    scores = transfer.collect(cfg, sets, StandInScorer(), cross, progress=False)
    audiobox = scores[scores["scorer"] == "audiobox"]
    assert len(audiobox) == 2 * 2 and audiobox[["CE", "CU", "PC", "PQ"]].notna().all().all()
    assert set(audiobox["soundfont"]) == {"timgm6mb"}
    axes = {"standin": list(StandInScorer.axes), "audiobox": ["CE", "CU", "PC", "PQ"]}
    table = transfer.transfer_table(scores, "timgm6mb", "standin", "standin", axes, n_boot=20)
    cross_rows = table[table["scorer_role"] == "cross-scored"]
    assert cross_rows["axis"].tolist() == ["CE", "CU", "PC", "PQ"] and cross_rows["gain_retained"].isna().all()
