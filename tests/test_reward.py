import warnings

import numpy as np
import pandas as pd
import pytest
import symusic

from smart_core.render import FluidRenderer
from smart_core.errors import AssetUnavailable
from smart_core.reward import (AUDIOBOX_AXES, AudioboxScorer, StandInScorer, default_weights,
                               load_scorer, make_random_audiobox_checkpoint, scalar_reward)


def _score(notes, tempo=120.0):
    s = symusic.Score(480)
    t = symusic.Track(program=0)
    for n in notes:
        t.notes.append(symusic.Note(*n))
    s.tracks.append(t)
    s.tempos.append(symusic.Tempo(0, tempo))
    return s


@pytest.fixture(scope="module")
def clips():
    r = FluidRenderer("timgm6mb")
    return {
        "silence": r.render(_score([])),
        "one note": r.render(_score([(0, 240, 60, 80)])),
        "sparse": r.render(_score([(i * 960, 240, 60 + i % 5, 80) for i in range(10)])),
        "dense": r.render(_score([(i * 240, 480, p + (i % 4), 80) for i in range(40) for p in (40, 55, 64, 76)])),
    }


def test_standin_prefers_sustained_rich_active_audio(clips):
    scores = StandInScorer().score(list(clips.values()), 48_000)
    scores.index = list(clips)
    assert scores.loc["silence", "standin"] == 1.0
    assert scores.loc["silence", "standin"] < scores.loc["one note", "standin"] < scores.loc["sparse", "standin"] \
        < scores.loc["dense", "standin"]
    assert ((scores["standin"] >= 1) & (scores["standin"] <= 10)).all()


def test_standin_is_deterministic_and_never_named_like_audiobox(clips):
    s = StandInScorer()
    a = s.score(list(clips.values()), 48_000)
    b = s.score(list(clips.values()), 48_000)
    pd.testing.assert_frame_equal(a, b)
    assert not set(a.columns) & set(AUDIOBOX_AXES)
    assert default_weights(s) == {"standin": 0.1}


def test_scalar_reward_replaces_nonfinite_values_and_counts_them():
    scores = pd.DataFrame({"CE": [5.0, np.nan, np.inf, 7.0], "PQ": [1.0, 1.0, 1.0, 1.0]})
    reward, bad = scalar_reward(scores, {"CE": 0.1}, fallback=-1.0)
    assert np.allclose(reward, [0.5, -1.0, -1.0, 0.7]) and bad.tolist() == [False, True, True, False]
    weighted, _ = scalar_reward(scores, {"CE": 0.05, "PQ": 0.5})
    assert np.isclose(weighted[0], 0.75)
    with pytest.raises(KeyError, match="does not produce"):
        scalar_reward(scores, {"standin": 1.0})


def test_missing_audiobox_weights(monkeypatch, tmp_path):
    monkeypatch.delenv("SMART_AUDIOBOX_CKPT", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AssetUnavailable, match="SMART_AUDIOBOX_CKPT"):
        load_scorer("audiobox")
    with pytest.warns(UserWarning, match="STAND-IN"):
        assert isinstance(load_scorer("auto"), StandInScorer)
    with pytest.raises(AssetUnavailable, match="does not exist"):
        load_scorer("audiobox", checkpoint=str(tmp_path / "missing.pt"))


@pytest.fixture(scope="module")
def audiobox(tmp_path_factory):
    """The real Audiobox architecture with random weights, loaded by the package's own loader."""
    ckpt = make_random_audiobox_checkpoint(tmp_path_factory.mktemp("abx") / "checkpoint.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_scorer("audiobox", checkpoint=str(ckpt), device="cpu")


def test_audiobox_loads_through_the_package_and_scores_four_axes(audiobox, clips):
    assert isinstance(audiobox, AudioboxScorer)
    assert sum(p.numel() for p in audiobox.model.parameters()) > 90e6  # WavLM base + heads
    audio = [clips["sparse"], clips["dense"]]
    ours = audiobox.score(audio, 48_000)
    assert list(ours.columns) == list(AUDIOBOX_AXES) and len(ours) == 2 and np.isfinite(ours.values).all()
    # same numbers as the package's own forward
    reference = audiobox.score_reference(audio, 48_000)
    assert np.abs(ours.values - reference.values).max() < 1e-3
    # deterministic, and a clip's score does not depend on its batch
    again = audiobox.score(audio, 48_000)
    single = audiobox.score([clips["dense"]], 48_000)
    assert np.allclose(ours.values, again.values)
    assert np.abs(single.values[0] - ours.values[1]).max() < 1e-4


def test_audiobox_via_environment_variable(monkeypatch, audiobox):
    monkeypatch.setenv("SMART_AUDIOBOX_CKPT", audiobox.checkpoint)
    from smart_core.assets import resolve_audiobox

    asset = resolve_audiobox()
    assert str(asset.path) == audiobox.checkpoint and asset.layout == "checkpoint.pt" and asset.source == "path"
