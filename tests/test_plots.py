"""Figures take their scales from the scorer's record and are stamped with profile, reward and commit."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
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
    stamp = "profile: tiny | OFFLINE STAND-IN reward (not Audiobox) | commit 0123456789ab-dirty"
    assert lines[0] == f"% {stamp}"
    # typeset (not only a comment): the stamp is visible under the table in the PDF
    assert any(plots.latex_escape(stamp) in line and not line.startswith("%") for line in lines)
    assert r"standin\_sustain" in tex.read_text()


def test_a_table_prints_empty_cells_empty_and_its_caption_above_the_stamp(tmp_path):
    table = pd.DataFrame({"quantity": ["mean rating", "variance"], "value": [5.4, 0.8], "p": [0.01, np.nan]})
    csv, tex = plots.save_table(table, "t", tmp_path, "tiny", "standin", caption="Wilcoxon signed-rank; Holm over 2")
    text = tex.read_text()
    assert "NaN" not in text and "nan" not in text and "variance & 0.8 &  \\\\" in text
    lines = text.splitlines()
    caption = next(i for i, line in enumerate(lines) if "Wilcoxon signed-rank; Holm over 2" in line)
    assert "profile: tiny" in lines[caption + 1] and not lines[caption].startswith("%")
    assert pd.read_csv(csv)["p"].isna().iloc[1]  # the CSV keeps the missing value as missing


def test_the_frontier_draws_any_number_of_runs():
    """One line per run, however many runs a profile's sweeps hold (ad-hoc --run names included)."""
    sweeps = pd.DataFrame([{"run": f"run{i}", "step": step, "vendi": 1.0 + i + step, "reward_mean": 0.4 + 0.01 * step}
                           for i in range(7) for step in (0, 2, 4)])
    fig = plots.quality_diversity_frontier(sweeps)
    try:
        ax = fig.axes[0]
        assert len(ax.get_lines()) == 7 and len(ax.collections) == 7
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == [f"run{i}" for i in range(7)]
        # each run's legend entry carries its line's colour and its points' marker
        for handle, line in zip(legend.legend_handles, ax.get_lines()):
            assert handle.get_color() == line.get_color()
        assert len({h.get_marker() for h in legend.legend_handles}) == 5  # the markers cycle over 5 shapes
    finally:
        plt.close(fig)


def test_the_frontier_draws_interval_error_bars_when_the_sweep_has_them():
    sweeps = pd.DataFrame([{"run": f"run{i}", "step": step, "vendi": 2.0 + step, "vendi_ci_low": 1.5 + step,
                            "vendi_ci_high": 2.8 + step, "reward_mean": 0.4 + 0.01 * step}
                           for i in range(2) for step in (0, 2, 4)])
    fig = plots.quality_diversity_frontier(sweeps)
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run0", "run1"]
        bars = [c for c in ax.collections if c.get_gid() == "bootstrap_interval"]
        assert len(bars) == 2
        segments = bars[0].get_segments()
        assert [tuple(seg[:, 0]) for seg in segments] == [(1.5, 2.8), (3.5, 4.8), (5.5, 6.8)]
    finally:
        plt.close(fig)
    fig = plots.quality_diversity_frontier(sweeps.drop(columns=["vendi_ci_low", "vendi_ci_high"]))
    try:
        assert not [c for c in fig.axes[0].collections if c.get_gid() == "bootstrap_interval"]
    finally:
        plt.close(fig)


def test_diversity_curves_shade_the_intervals_when_the_sweep_has_them():
    rows = [{"run": "smart", "step": step, "reward_mean": 0.5, **{m: 1.0 + step for m in METRICS},
             **{f"{m}_ci_low": 0.5 + step for m in METRICS}, **{f"{m}_ci_high": 1.5 + step for m in METRICS}}
            for step in (0, 2, 4)]
    fig = plots.diversity_curves(pd.DataFrame(rows))
    try:
        for ax in fig.axes[1:]:
            (band,) = [c for c in ax.collections if c.get_gid() == "bootstrap_interval"]
            assert isinstance(band, PolyCollection)
            ys = band.get_paths()[0].vertices[:, 1]
            assert ys.min() == pytest.approx(0.5) and ys.max() == pytest.approx(5.5)
    finally:
        plt.close(fig)
    fig = plots.diversity_curves(pd.DataFrame(rows).drop(columns=[c for c in rows[0] if "_ci_" in c]))
    try:
        assert not [c for ax in fig.axes for c in ax.collections]
    finally:
        plt.close(fig)


METRICS = ("vendi", "pairwise_distance", "distinct_4", "prompt_dependence")


def _steps(seeds, n_steps=6, kl_every=1):
    """A steps log (one row per step and seed) as the trainer writes it; KL measured every kl_every steps."""
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for step in range(1, n_steps + 1):
            rows.append({"step": step, "seed": seed, "reward_mean": 0.4 + 0.02 * step + 0.01 * rng.normal(),
                         "reward_std": 0.05, "kl": 0.01 * step if step % kl_every == 0 else np.nan,
                         "entropy": 3.0 - 0.1 * step + 0.05 * rng.normal(),
                         **{f"seconds_{s}": 1.0 for s in ("generate", "render", "score", "update")}})
    return pd.DataFrame(rows)


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_gid() == "seed_interval"]


def test_training_curves_over_seeds_show_the_mean_and_a_95_percent_band():
    from scipy import stats

    steps = _steps([0, 1])
    fig = plots.training_curves(steps, "smart")
    try:
        reward, kl, _ = fig.axes[:3]
        assert len(_bands(reward)) == 1 and len(_bands(kl)) == 2  # KL and entropy
        assert "95% interval over 2 seeds" in reward.get_title() and "2 seeds" in fig._suptitle.get_text()
        (mean_line,) = [line for line in reward.get_lines() if "mean" in line.get_label()]
        first = steps[steps["step"] == 1]["reward_mean"]
        assert mean_line.get_ydata()[0] == pytest.approx(first.mean())
        half = stats.t.ppf(0.975, 1) * first.std() / np.sqrt(2)
        ys = _bands(reward)[0].get_paths()[0].vertices[:, 1]
        assert ys.min() <= first.mean() - half + 1e-9 and ys.max() >= first.mean() + half - 1e-9
    finally:
        plt.close(fig)


@pytest.mark.parametrize("seeds", [[0], None])
def test_training_curves_of_one_seed_have_no_seed_band(seeds):
    steps = _steps([0])
    fig = plots.training_curves(steps if seeds else steps.drop(columns=["seed"]), "smart")
    try:
        assert not any(_bands(ax) for ax in fig.axes)
        assert fig.axes[0].get_title() == "reward (mean ± sd)"
    finally:
        plt.close(fig)


def test_the_kl_panel_shows_the_kl_of_a_beta0_run_at_its_measured_steps():
    steps = _steps([0], n_steps=8, kl_every=4)  # NaN between measurements
    fig = plots.training_curves(steps, "long_beta0")
    try:
        (kl,) = [line for line in fig.axes[1].get_lines() if line.get_label() == "KL to reference"]
        assert list(kl.get_xdata()) == [4, 8] and list(kl.get_ydata()) == pytest.approx([0.04, 0.08])
    finally:
        plt.close(fig)
    fig = plots.training_curves(_steps([0, 1], n_steps=8, kl_every=4), "long_beta0")
    try:
        (kl,) = [line for line in fig.axes[1].get_lines() if line.get_label() == "KL to reference (mean)"]
        assert list(kl.get_xdata()) == [4, 8]
    finally:
        plt.close(fig)


@pytest.fixture(scope="module")
def fig5_systems(fixtures):
    """Three systems of real MIDI files, one with a short piece and one with an empty one."""
    from smart_core.diversity import average_pianoroll

    files = {"base": ["dense_long.mid", "c_major_scale.mid", "a4_one_second.mid"],
             "tuned": ["dense_long.mid", "dense_long.mid", "c_major_scale.mid"],
             "other": ["c_major_scale.mid", "no_notes.mid", "a4_one_second.mid"]}
    systems = {}
    for i, (name, names) in enumerate(files.items()):
        roll, n = average_pianoroll([fixtures / f for f in names])
        systems[name] = (_scores(n, i), roll, n)
    return systems


def test_figure5_columns_share_one_colour_scale_and_bar_print_n_and_have_no_grid(fig5_systems):
    fig = plots.diversity_panels(fig5_systems, "standin", RECORD["axis_info"], note="every column: the first 3")
    try:
        fig.canvas.draw()
        heatmaps = [ax for ax in fig.axes if ax.images]
        assert len(heatmaps) == 3
        vmax = max(roll.max() for _, roll, _ in fig5_systems.values())
        assert {ax.images[0].get_clim() for ax in heatmaps} == {(0, vmax)}
        colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert len(colorbars) == 1
        for ax in heatmaps:
            assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert titles == [f"{name}\nn = 3" for name in fig5_systems]
        assert "the first 3" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_figure4_labels_every_panel_and_bins_whole_numbers_on_whole_numbers(fixtures):
    from smart_core.features import features_table, pooled_note_values

    paths = [str(fixtures / f) for f in ("c_major_scale.mid", "dense_long.mid", "a4_one_second.mid", "no_notes.mid")]
    base = features_table(pd.DataFrame({"midi_path": paths[:3]}))
    tuned = features_table(pd.DataFrame({"midi_path": paths[1:]}))
    fig = plots.feature_histograms(base, tuned, pooled_note_values(base["midi_path"]),
                                   pooled_note_values(tuned["midi_path"]))
    try:
        for ax, (key, _) in zip(fig.axes, plots.FEATURE_PANELS):
            pooled = key.startswith("__")
            assert ax.get_ylabel() == ("share of notes" if pooled else "pieces (count)"), key
            name = key.strip("_")
            bars = ax.patches
            if name in plots.INTEGER_VALUED:
                edges = np.array([b.get_x() for b in bars] + [b.get_x() + b.get_width() for b in bars])
                assert np.allclose(edges - np.floor(edges), 0.5), key  # edges at k - 0.5
                widths = {round(b.get_width(), 9) for b in bars}
                assert len(widths) == 1 and float(widths.pop()).is_integer(), key
            heights = np.array([b.get_height() for b in bars])
            half = len(bars) // 2
            if pooled:  # shares of each set's notes
                assert heights[:half].sum() == pytest.approx(1) and heights[half:].sum() == pytest.approx(1)
            elif name == "n_notes":  # counts of pieces
                assert heights[:half].sum() == 3 and heights[half:].sum() == 3
        pitch = fig.axes[4]
        assert min(b.get_x() for b in pitch.patches) == 20.5 and max(b.get_x() + b.get_width() for b in pitch.patches) == 108.5
    finally:
        plt.close(fig)


def test_integer_bins_hold_whole_numbers_evenly():
    assert list(plots.integer_bins([3, 7])) == [2.5, 3.5, 4.5, 5.5, 6.5, 7.5]
    wide = plots.integer_bins([0, 1000], max_bins=32)
    assert len(wide) - 1 <= 32 and np.allclose(np.diff(wide), np.diff(wide)[0]) and wide[0] == -0.5
    assert float(np.diff(wide)[0]).is_integer() and wide[-1] >= 1000.5
    assert list(plots.integer_bins([], 21, 23)) == [20.5, 21.5, 22.5, 23.5]


def test_point_labels_are_placed_clear_of_each_other_and_of_the_points():
    # the ablations' frontier: a cluster of near-identical points (the small run's two_updates, entropy, paper)
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    xs = np.array([0.431, 0.437, 0.441, 0.497, 0.504, 0.533, 0.541, 0.30])
    ys = np.array([0.681, 0.683, 0.684, 0.685, 0.683, 0.635, 0.633, 0.733])
    ax.scatter(xs, ys)
    labels = plots.place_labels(ax, xs, ys, ["paper", "two_updates", "entropy", "smart", "diversity_bonus", "base",
                                             "mask_truncated", "long_beta0"])
    renderer = fig.canvas.get_renderer()
    boxes = [plots._text_box(t, renderer) for t in labels]  # the texts, without leader lines
    assert [t.get_text() for t in labels][:3] == ["paper", "two_updates", "entropy"]
    for i, a in enumerate(boxes):
        assert all(not a.overlaps(b) for b in boxes[i + 1:]), labels[i].get_text()
        x, y = ax.transData.transform((xs[i], ys[i]))
        assert not a.contains(x, y)  # no label over its own point
    plt.close(fig)


def test_best_of_n_draws_each_tuned_run_alike_in_every_panel_and_apart_from_the_curve():
    rows = [{"system": f"best-of-{n}", "N": float(n), "reward_evaluations": 8 * n} for n in (1, 2, 4)]
    rows += [{"system": name, "N": np.nan, "reward_evaluations": e} for name, e in (("smart", 40), ("long", 100))]
    table = pd.DataFrame(rows)
    rng = np.random.default_rng(0)
    for metric in ("mean_reward", "pairwise_distance", "vendi"):
        table[metric] = rng.uniform(0.4, 0.6, len(table))
        table[f"{metric}_ci_low"], table[f"{metric}_ci_high"] = table[metric] - 0.02, table[metric] + 0.02
    fig = plots.best_of_n_plot(table, "standin")
    looks = {}
    for ax in fig.axes:
        for line in ax.lines:  # the data lines (an error bar's caps are lines with marker "_")
            if line.get_marker() in tuple("osD^vP*X"):
                looks.setdefault(ax, []).append((line.get_marker(), line.get_color()))
    panels = list(looks.values())
    assert len(panels) == 3 and all(p == panels[0] for p in panels)  # the same markers and colours in each panel
    curve_color = plots.BASE_COLOR.lower()
    tuned = [look for look in panels[0] if look[0] != "o"]
    assert len({m for m, _ in tuned}) == 2 and all(str(c).lower() != curve_color for _, c in tuned)
    assert sum(t.get_text().startswith("N=") for t in fig.axes[0].texts) == 3
    plt.close(fig)
