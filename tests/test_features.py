import math

import muspy
import numpy as np
import pytest
import symusic

from smart_core.features import FEATURES, features_table, midi_features, pooled_note_values

MUSPY_METRICS = ("polyphony", "polyphony_rate", "empty_beat_rate", "scale_consistency", "pitch_class_entropy")


@pytest.mark.parametrize("name", ["c_major_scale", "two_tracks_tempo_change", "dense_long", "a4_one_second"])
def test_rate_metrics_equal_muspy_on_the_file(fixtures, name):
    path = fixtures / f"{name}.mid"
    ours = midi_features(path)
    music = muspy.read_midi(str(path))
    for metric in MUSPY_METRICS:
        assert ours[metric] == pytest.approx(getattr(muspy, metric)(music), nan_ok=True), metric
    assert set(ours) == set(FEATURES)


def test_known_values_of_the_scale(fixtures):
    f = midi_features(fixtures / "c_major_scale.mid")
    assert f["n_notes"] == 8 and f["pitch_range"] == 12 and f["velocity_range"] == 28
    assert f["polyphony_rate"] == 0 and f["empty_beat_rate"] == 0 and f["scale_consistency"] == 1.0
    assert f["duration_seconds"] == pytest.approx(8 * 60 / 90)


def test_score_bytes_and_path_agree(fixtures):
    path = fixtures / "two_tracks_tempo_change.mid"
    a = midi_features(path)
    b = midi_features(symusic.Score(str(path)))
    c = midi_features(path.read_bytes())
    for k in FEATURES:
        assert a[k] == pytest.approx(b[k], nan_ok=True) and a[k] == pytest.approx(c[k], nan_ok=True)
    assert a["n_tempo_changes"] == 1


def test_empty_piece_gives_zero_notes_and_nan_rates(fixtures):
    f = midi_features(fixtures / "no_notes.mid")
    assert f["n_notes"] == 0
    for k in MUSPY_METRICS + ("pitch_range", "velocity_range"):
        assert math.isnan(f[k])


def test_pooled_values(fixtures):
    pooled = pooled_note_values([fixtures / "c_major_scale.mid", fixtures / "no_notes.mid"])
    assert list(pooled["pitch"]) == [60, 62, 64, 65, 67, 69, 71, 72]
    assert np.allclose(pooled["ioi"], 60 / 90) and list(pooled["melodic_interval"]) == [2, 2, 1, 2, 2, 2, 1]


def test_features_table_joins_axes(fixtures):
    import pandas as pd

    samples = pd.DataFrame({"midi_path": [str(fixtures / "c_major_scale.mid"), str(fixtures / "no_notes.mid")],
                            "CE": [6.0, 2.0]})
    table = features_table(samples)
    assert list(table["n_notes"]) == [8, 0] and list(table["CE"]) == [6.0, 2.0]


def test_rate_metrics_against_values_worked_out_by_hand():
    """MusPy's definitions, applied by hand to a piece built here (480 ticks per beat, 4 beats):
    a C-E-G chord lasting an eighth, nothing in beat 1, D on beat 2, F#-A on beat 3."""
    score = symusic.Score(480)
    track = symusic.Track(program=0)
    for time, duration, pitch in [(0, 240, 60), (0, 240, 64), (0, 240, 67), (960, 480, 62), (1440, 480, 66),
                                  (1440, 480, 69)]:
        track.notes.append(symusic.Note(time, duration, pitch, 80))
    score.tracks.append(track)
    score.tempos.append(symusic.Tempo(0, 120.0))
    f = midi_features(score)
    # polyphony: pitches sounding, averaged over the steps where any sounds: (3*240 + 1*480 + 2*480) / 1200
    assert f["polyphony"] == pytest.approx(2160 / 1200)
    # polyphony rate: steps with more than 2 pitches (MusPy's threshold) over all 1920 steps
    assert f["polyphony_rate"] == pytest.approx(240 / 1920)
    # empty beats: a note covers its start beat through the beat its end falls in, of 1920 // 480 + 1 = 5
    # beats; only beat 1 is empty
    assert f["empty_beat_rate"] == pytest.approx(1 / 5)
    # six different pitch classes, once each; all six lie in G major
    assert f["pitch_class_entropy"] == pytest.approx(math.log2(6)) and f["scale_consistency"] == 1.0
    assert (f["n_notes"], f["pitch_range"]) == (6, 9)
