import numpy as np
import pytest
import symusic

from smart_core.diversity import (average_pianoroll, diversity_report, distinct_n, mean_pairwise_distance, pianoroll,
                                  profile, prompt_dependence, vendi_score)


def random_piece(seed, n=40):
    rng = np.random.default_rng(seed)
    s = symusic.Score(480)
    t = symusic.Track(program=0)
    for i in range(n):
        t.notes.append(symusic.Note(int(rng.integers(0, 16 * 480)), int(rng.integers(60, 960)), int(rng.integers(30, 100)),
                                    int(rng.integers(30, 120))))
    t.notes.append(symusic.Note(16 * 480, 240, 60, 60))  # every piece reaches 16 beats
    s.tracks.append(t)
    return s


@pytest.fixture(scope="module")
def pieces():
    return [random_piece(i) for i in range(12)]


def mixes(pieces, k):
    """k copies of piece 0 replace the last k pieces: more copies, less diversity."""
    return pieces[: len(pieces) - k] + [pieces[0]] * k


def test_distinct_n_properties():
    same = [[1, 2, 3, 4, 5]] * 5
    rng = np.random.default_rng(0)
    rand = [list(rng.integers(0, 400, 50)) for _ in range(5)]
    for n in (1, 2, 3, 4):
        assert distinct_n(same, n) == pytest.approx(1 / 5)
        assert distinct_n(rand, n) > 0.8 if n > 1 else distinct_n(rand, n) > 0.5
    values = [distinct_n(rand[: 5 - k] + [rand[0]] * k, 3) for k in range(5)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_pairwise_distance_and_vendi_properties(pieces):
    identical = np.stack([profile(pieces[0])] * 6)
    assert mean_pairwise_distance(identical) == 0
    assert vendi_score(identical) == pytest.approx(1.0)
    profiles = np.stack([profile(p) for p in pieces])
    assert mean_pairwise_distance(profiles) > 0.2
    assert vendi_score(profiles) > 2.0
    assert vendi_score(np.eye(5)) == pytest.approx(5.0)
    dist = [mean_pairwise_distance(np.stack([profile(p) for p in mixes(pieces, k)])) for k in range(0, 12, 2)]
    vendi = [vendi_score(np.stack([profile(p) for p in mixes(pieces, k)])) for k in range(0, 12, 2)]
    assert all(a >= b for a, b in zip(dist, dist[1:])) and all(a >= b for a, b in zip(vendi, vendi[1:]))


def test_prompt_dependence():
    a, b = np.zeros(4), np.ones(4)
    fixed = np.stack([a, a, b, b])
    assert prompt_dependence(fixed, ["p", "p", "q", "q"]) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    free = rng.normal(size=(40, 4))
    assert abs(prompt_dependence(free, ["p", "q"] * 20)) < 0.15


def test_pianoroll_drops_short_pieces_and_averages(pieces, fixtures):
    roll = pianoroll(pieces[0])
    assert roll.shape == (88, 192) and roll.max() == 1
    assert pianoroll(fixtures / "a4_one_second.mid") is None  # 2 beats < 16
    mean, used, dropped = average_pianoroll(pieces[:3] + [fixtures / "a4_one_second.mid"])
    assert (used, dropped) == (3, 1) and mean.shape == (88, 192) and 0 <= mean.min() and mean.max() <= 1
    same, _, _ = average_pianoroll([pieces[0]] * 4)
    assert np.array_equal(same, roll)  # identical pieces give a sharp (binary) average


def test_report_has_every_metric(pieces):
    tokens = [[1, 2, 3, 4, i] for i in range(4)]
    report = diversity_report(tokens, pieces[:4], ["a", "a", "b", "b"])
    for key in ("distinct_1", "distinct_4", "pairwise_distance", "vendi", "prompt_dependence"):
        assert key in report and np.isfinite(report[key])
