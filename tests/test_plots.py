"""Figures take their scales from the scorer's record and are stamped with profile, reward and commit."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from smart_core import plots
from smart_core.reward import StandInScorer

RECORD = StandInScorer().describe()
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _scores(n, seed, spill=0.0):
    """n rows per stand-in axis, uniform over the axis's range widened by `spill` on each side."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({a: rng.uniform(lo - spill, hi + spill, n)
                         for a, (lo, hi) in ((a, RECORD["axis_info"][a]["range"]) for a in RECORD["axes"])})


def test_axes_histograms_use_each_axis_recorded_range_and_label():
    base, tuned = _scores(40, 0), _scores(30, 1)
    fig = plots.axes_histograms(base, tuned, RECORD["axes"], RECORD["axis_info"])
    try:
        assert len(fig.axes) == 4
        for ax, axis in zip(fig.axes, RECORD["axes"]):
            low, high = RECORD["axis_info"][axis]["range"]
            assert (low, high) == ((1.0, 10.0) if axis == "standin" else (0.0, 1.0))
            assert low <= ax.get_xlim()[0] < ax.get_xlim()[1] <= high, axis
            assert ax.get_xlabel() == RECORD["axis_info"][axis]["label"]
            bars = ax.patches
            assert len(bars) == 2 * 32  # 32 bins, base and tuned
            assert min(b.get_x() for b in bars) == pytest.approx(low)
            assert max(b.get_x() + b.get_width() for b in bars) == pytest.approx(high)
    finally:
        plt.close(fig)


def test_axes_histograms_count_values_outside_the_range_in_the_edge_bins():
    base, tuned = _scores(50, 2, spill=0.2), _scores(20, 3, spill=0.2)
    fig = plots.axes_histograms(base, tuned, RECORD["axes"], RECORD["axis_info"])
    try:
        for ax in fig.axes:
            heights = [b.get_height() for b in ax.patches]
            assert sum(heights[:32]) == 50 and sum(heights[32:]) == 20  # every sample, none dropped
    finally:
        plt.close(fig)


def _stamped_figure(tmp_path, monkeypatch, commit, backend="standin"):
    monkeypatch.setattr(plots, "git_commit", lambda: commit)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    png, pdf = plots.save_figure(fig, "stamped", tmp_path, "tiny", backend)
    drawn = [t.get_text() for t in fig.texts]
    return drawn, Image.open(png).text["Description"], pdf.read_bytes()


def test_a_figure_is_stamped_with_profile_stand_in_and_the_dirty_commit(tmp_path, monkeypatch):
    drawn, described, pdf = _stamped_figure(tmp_path, monkeypatch, COMMIT + "-dirty")
    expected = "profile: tiny | OFFLINE STAND-IN reward (not Audiobox) | commit 0123456789ab-dirty"
    assert drawn == [expected] and described == expected
    assert b"0123456789ab-dirty" in pdf and b"STAND-IN" in pdf


def test_a_clean_commit_and_another_backend_are_stamped_as_they_are(tmp_path, monkeypatch):
    drawn, described, _ = _stamped_figure(tmp_path, monkeypatch, COMMIT, backend="audiobox")
    assert drawn == [described] == ["profile: tiny | reward: audiobox | commit 0123456789ab"]


def test_a_table_carries_the_stamp_in_its_tex(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "git_commit", lambda: COMMIT + "-dirty")
    table = pd.DataFrame({"measure": ["standin_sustain"], "value": [0.5]})
    csv, tex = plots.save_table(table, "t", tmp_path, "tiny", "standin")
    pd.testing.assert_frame_equal(pd.read_csv(csv), table)
    lines = tex.read_text().splitlines()
    assert lines[0] == "% profile: tiny | OFFLINE STAND-IN reward (not Audiobox) | commit 0123456789ab-dirty"
    assert lines[-1] == (r"% profile: tiny \textbar{} OFFLINE STAND-IN reward (not Audiobox) \textbar{} "
                         r"commit 0123456789ab-dirty")
    assert r"standin\_sustain" in tex.read_text()


def test_the_frontier_draws_any_number_of_runs():
    """One line per run, however many runs a profile's sweeps hold (ad-hoc --run names included)."""
    sweeps = pd.DataFrame([{"run": f"run{i}", "step": step, "vendi": 1.0 + i + step, "reward_mean": 0.4 + 0.01 * step}
                           for i in range(7) for step in (0, 2, 4)])
    fig = plots.quality_diversity_frontier(sweeps)
    try:
        ax = fig.axes[0]
        assert [line.get_label() for line in ax.get_lines()] == [f"run{i}" for i in range(7)]
        assert len(ax.collections) == 7
    finally:
        plt.close(fig)
