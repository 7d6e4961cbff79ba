"""Reward transfer: re-rendering evaluations with other SoundFonts, the paired table and its verdicts."""

import numpy as np
import pandas as pd
import pytest

from smart_core import results, transfer
from smart_core.reward import StandInScorer
from smart_core.soundfonts import SoundFontNotFound, available_soundfonts, resolve_soundfont


def test_the_transfer_fonts_are_every_installed_font_but_the_training_one(tiny_cfg):
    assert transfer.transfer_fonts(tiny_cfg) == {"fluidr3_gm": resolve_soundfont("fluidr3_gm")}  # tiny: one
    fonts = transfer.transfer_fonts(tiny_cfg.replace(transfer_soundfonts=""))
    assert transfer.training_font_name(tiny_cfg) == "timgm6mb" and "timgm6mb" not in fonts
    assert set(fonts) == set(available_soundfonts()) - {"timgm6mb"}
    assert resolve_soundfont(tiny_cfg.soundfont) not in fonts.values()
    # the set-up installs every Debian SoundFont the table uses: a missing one would shrink the table silently
    assert set(fonts) >= {"fluidr3_gm", "fluidr3_mono", "musescore"}
    chosen = transfer.transfer_fonts(tiny_cfg.replace(transfer_soundfonts=f"musescore, timgm6mb, {fonts['fluidr3_mono']}"))
    assert chosen == {"musescore": fonts["musescore"], "FluidR3Mono_GM": fonts["fluidr3_mono"]}  # not the training one
    with pytest.raises(SoundFontNotFound, match="nope"):
        transfer.transfer_fonts(tiny_cfg.replace(transfer_soundfonts="nope"))


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
    """A long score table: per font, tuned = base + gain (+ small noise), two seeds of n prompts; a
    gain may be a (seed 0, seed 1) pair."""
    rng = np.random.default_rng(0)
    rows = []
    for font, gain in gains.items():
        for seed in seeds:
            base = rng.normal(5, 1, n)
            tuned = base + (gain[seed] if isinstance(gain, tuple) else gain) + rng.normal(0, 0.05, n)
            for system, values in (("base", base), ("tuned", tuned)):
                rows.append(pd.DataFrame({"prompt": [f"p{i}" for i in range(n)], "standin": values,
                                          "run": "smart" if seed == 0 else f"smart_seed{seed}", "seed": seed,
                                          "system": system, "soundfont": font, "scorer": "standin",
                                          "output": np.arange(n)}))
    return pd.concat(rows, ignore_index=True)


def test_the_table_pools_replicates_and_judges_each_font_against_the_training_font():
    scores = _scores({"train": 1.0, "same": 1.0, "half": 0.5, "none": 0.0, "flipped": -1.0, "split": (1.0, -0.2)})
    table = transfer.transfer_table(scores, "train", "standin", "standin", {"standin": ["standin"]}, n_boot=200)
    rows = table.set_index("soundfont")
    assert set(table["run"]) == {"smart"} and (table["n_pairs"] == 48).all() and (table["n_seeds"] == 2).all()
    assert rows.loc["train", "heard_in_training"] and not rows.loc["same", "heard_in_training"]
    fonts = ["train", "same", "half", "none", "flipped", "split"]
    assert rows.loc[fonts, "change"].tolist() == ["up", "up", "up", "not significant", "down", "seeds disagree"]
    assert rows.loc[fonts, "verdict"].tolist() == [
        "survives", "survives", "survives", "not significant", "reversed", "seeds disagree"]
    assert rows.loc["half", "gain_retained"] == pytest.approx(0.5, abs=0.1)
    assert rows.loc["train", "gain_retained"] == pytest.approx(1.0)
    assert table["training_reward_axis"].all()
    # no gain on the training font: nothing to transfer, whatever the other fonts show
    flat = transfer.transfer_table(_scores({"train": 0.0, "other": 1.0}), "train", "standin", "standin",
                                   {"standin": ["standin"]}, n_boot=50)
    assert set(flat["verdict"]) == {"no gain to transfer"}
    # a fall on the training font that holds elsewhere survives too, and the text says it fell
    falling = transfer.transfer_table(_scores({"train": -1.0, "other": -0.8}), "train", "standin", "standin",
                                      {"standin": ["standin"]}, n_boot=50)
    assert falling["verdict"].tolist() == ["survives", "survives"]
    text = " ".join(results.transfer_sentences(falling, "standin", "standin", "no second judge here"))
    assert "a significant fall in every seed" in text and "survives on 1 of 1 unheard fonts" in text
    assert "No output was scored by a second judge (no second judge here)." in text
    alone = " ".join(results.transfer_sentences(falling[falling["heard_in_training"]], "standin", "standin"))
    assert "no other SoundFont is installed" in alone
    split = transfer.transfer_table(_scores({"train": (1.0, -0.2), "other": 1.0}), "train", "standin", "standin",
                                    {"standin": ["standin"]}, n_boot=50)
    text = " ".join(results.transfer_sentences(split, "standin", "standin"))
    assert "not in every seed's direction: no consistent change to transfer" in text


def test_the_collected_scores_are_reused_only_for_the_same_evaluations_fonts_and_judges(tiny_trained, monkeypatch):
    cfg = tiny_trained["cfg"].replace(cross_score_limit=2)
    scores = transfer.transfer_scores(cfg, ["smart"], StandInScorer(), progress=False)
    assert set(scores["soundfont"]) == {"timgm6mb", *transfer.transfer_fonts(cfg)}
    assert set(scores["system"]) == {"base", "tuned"} and len(scores) == 2 * cfg.eval_prompts * len(set(scores["soundfont"]))
    loaded, cross = transfer.load_scores(cfg, StandInScorer())
    pd.testing.assert_frame_equal(loaded, scores)
    assert cross is None
    calls = []
    monkeypatch.setattr(transfer, "collect", lambda *a, **k: calls.append(a) or scores)
    transfer.transfer_scores(cfg, ["smart"], StandInScorer(), progress=False)
    assert calls == []  # the same key: reused

    class AnotherJudge(StandInScorer):  # the same arithmetic under another name: a different key
        name = "another"

    transfer.transfer_scores(cfg, ["smart"], StandInScorer(), AnotherJudge(), progress=False)
    assert len(calls) == 1  # a cross scorer now: collected again
    assert transfer.load_scores(cfg, StandInScorer())[1]["backend"] == "another"
    transfer.transfer_scores(cfg, ["smart"], StandInScorer(), None, progress=False)
    assert len(calls) == 2  # and without it again: its rows are not kept


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
