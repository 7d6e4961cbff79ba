import numpy as np
import pytest
import symusic

from smart_core.diversity import (average_pianoroll, bootstrap_indices, diversity_report, distinct_n,
                                  mean_pairwise_distance, pianoroll, profile, prompt_dependence, vendi_score)


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


def one_note_piece(beats_long: float, pitch: int = 60, tpq: int = 480) -> symusic.Score:
    """A piece of one note from beat 0, `beats_long` beats long (0: a piece without notes)."""
    s = symusic.Score(tpq)
    t = symusic.Track(program=0)
    if beats_long:
        t.notes.append(symusic.Note(0, int(beats_long * tpq), pitch, 80))
    s.tracks.append(t)
    return s


def test_pianoroll_drops_short_pieces_unless_padded(pieces, fixtures):
    roll = pianoroll(pieces[0])
    assert roll.shape == (88, 192) and roll.max() == 1
    assert pianoroll(fixtures / "a4_one_second.mid") is None  # 2 beats < 16
    padded = pianoroll(fixtures / "a4_one_second.mid", pad=True)
    assert padded.shape == (88, 192) and padded[69 - 21, :24].all() and not padded[:, 24:].any()  # A4, 2 beats


def test_every_piece_counts_in_the_average_roll_short_ones_as_silence(fixtures):
    full, short, empty = one_note_piece(16), one_note_piece(4), one_note_piece(0)
    mean, n = average_pianoroll([full, short, empty])
    assert n == 3 and mean.shape == (88, 192)
    row = mean[60 - 21]
    # beats 0-4: the full piece and the short one sound; beats 4-16: the short one is silence
    assert np.allclose(row[:48], 2 / 3) and np.allclose(row[48:], 1 / 3)
    assert not np.delete(mean, 60 - 21, axis=0).any()
    # a real short file (2 beats of A4) among longer pieces: counted, silent after beat 2
    mean, n = average_pianoroll([full, fixtures / "a4_one_second.mid"])
    assert n == 2 and np.allclose(mean[69 - 21, :24], 0.5) and not mean[69 - 21, 24:].any()
    assert np.allclose(mean[60 - 21], 0.5)


def test_identical_pieces_average_to_their_own_roll(pieces):
    same, n = average_pianoroll([pieces[0]] * 4)
    assert n == 4 and np.array_equal(same, pianoroll(pieces[0]))  # a sharp (binary) average
    mean, n = average_pianoroll(pieces[:3])
    assert n == 3 and 0 <= mean.min() and mean.max() <= 1


def test_report_has_every_metric(pieces):
    tokens = [[1, 2, 3, 4, i] for i in range(4)]
    report = diversity_report(tokens, pieces[:4], ["a", "a", "b", "b"])
    for key in ("distinct_1", "distinct_4", "pairwise_distance", "vendi", "prompt_dependence"):
        assert key in report and np.isfinite(report[key])
    assert not any(k.endswith("_ci_low") for k in report)  # no intervals unless asked for


METRICS = ("distinct_1", "distinct_2", "distinct_3", "distinct_4", "pairwise_distance", "vendi", "vendi_profile",
           "prompt_dependence")


@pytest.fixture(scope="module")
def sampled(pieces):
    """12 pieces, 3 prompts x 4 samples; token sequences that share some n-grams."""
    rng = np.random.default_rng(3)
    tokens = [list(rng.integers(0, 12, 30)) for _ in pieces]
    return tokens, pieces, [f"prompt{i // 4}" for i in range(len(pieces))]


def test_bootstrap_intervals_hold_each_estimate_and_are_seeded(sampled):
    tokens, midis, prompts = sampled
    report = diversity_report(tokens, midis, prompts, n_boot=200, seed=0)
    point = diversity_report(tokens, midis, prompts)
    for m in METRICS:
        assert report[m] == pytest.approx(point[m])  # the estimate is the full set's
        low, high = report[f"{m}_ci_low"], report[f"{m}_ci_high"]
        assert np.isfinite(low) and low <= report[m] <= high, m
    assert any(report[f"{m}_ci_high"] > report[f"{m}_ci_low"] for m in METRICS)
    assert diversity_report(tokens, midis, prompts, n_boot=200, seed=0) == report  # deterministic for a seed
    other = diversity_report(tokens, midis, prompts, n_boot=200, seed=1)
    assert any(other[f"{m}_ci_low"] != report[f"{m}_ci_low"] for m in METRICS)
    no_prompts = diversity_report(tokens, midis, n_boot=50)
    assert "prompt_dependence_ci_low" not in no_prompts and "vendi_ci_low" in no_prompts


def test_bootstrap_resamples_within_prompt():
    prompts = ["a"] * 3 + ["b"] * 5 + ["c"] * 2
    idx = bootstrap_indices(len(prompts), 100, prompts, seed=0)
    keys = np.asarray(prompts)
    assert idx.shape == (100, 10) and (keys[idx] == keys[None, :]).all()  # every position keeps its prompt
    assert len(np.unique(idx[:, 0])) == 3  # and draws from all of its prompt's samples


def test_the_resampled_metrics_are_the_metrics_on_the_set_itself_and_copies_are_not_repeats(sampled):
    from smart_core.diversity import _distinct_n_resampled, _pair_mean, _vendi_resampled

    tokens, midis, _ = sampled
    ones = np.ones((1, len(tokens)))
    for n in (1, 2, 3, 4):
        assert _distinct_n_resampled(tokens, n, ones)[0] == pytest.approx(distinct_n(tokens, n))
    profiles = np.stack([profile(m) for m in midis])
    dist = np.linalg.norm(profiles[:, None] - profiles[None], axis=-1)
    assert _pair_mean(dist, ones)[0] == pytest.approx(mean_pairwise_distance(profiles))
    assert _vendi_resampled(profiles, ones)[0] == pytest.approx(vendi_score(profiles))
    # a sequence drawn twice does not make its own n-grams repeats; a pair of copies is no pair
    assert _distinct_n_resampled([[1, 2, 3], [1, 2, 3]], 1, np.array([[2, 0]]))[0] == pytest.approx(1.0)
    assert _distinct_n_resampled([[1, 2, 3], [1, 2, 3]], 1, np.array([[1, 1]]))[0] == pytest.approx(0.5)
    three = np.array([[0.0, 1.0, 5.0], [1.0, 0.0, 2.0], [5.0, 2.0, 0.0]])
    assert _pair_mean(three, np.array([[2, 1, 0]]))[0] == pytest.approx(1.0)
    # Vendi of a resample = Vendi of the explicit multiset (copies similar 1), an empty piece included
    feats = np.vstack([profiles[:5], np.zeros(24)])
    draw = np.array([0, 0, 1, 2, 5, 5, 3])
    weights = np.bincount(draw, minlength=6)[None]
    from smart_core.diversity import _cosine_kernel, _vendi_of_kernels

    for feats in (feats, np.vstack([np.random.default_rng(0).random((5, 3)), np.zeros(3)])):  # n x n, d x d
        k = _cosine_kernel(feats)[np.ix_(draw, draw)]
        k[draw[:, None] == draw[None, :]] = 1.0
        assert _vendi_resampled(feats, weights)[0] == pytest.approx(_vendi_of_kernels(k))
