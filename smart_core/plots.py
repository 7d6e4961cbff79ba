"""The paper's figures (and ours) from run artifacts. Every figure is stamped with the profile,
the reward backend and the git commit, and saved as PDF and PNG; tables as CSV and LaTeX."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .midi import as_score  # noqa: E402
from .runs import git_commit  # noqa: E402

BASE_COLOR, TUNED_COLOR = "#4C72B0", "#DD8452"
sns.set_theme(style="whitegrid", context="paper")


def stamp_text(profile: str, backend: str, seeds: str = "") -> str:
    """profile | reward backend | seed(s) | commit (with "-dirty" when the tree had uncommitted changes)."""
    label = "OFFLINE STAND-IN reward (not Audiobox)" if backend == "standin" else f"reward: {backend}"
    commit = git_commit()  # "-dirty" is kept, never cut
    short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    seeds = f" | seed{'s' if ',' in seeds else ''} {seeds}" if seeds else ""
    return f"profile: {profile} | {label}{seeds} | commit {short}"


def save_figure(fig, name: str, out_dir: str | Path, profile: str, backend: str, seeds: str = "") -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = stamp_text(profile, backend, seeds)
    # below everything; bbox_inches="tight" grows the canvas to keep it
    fig.text(0.99, -0.02, stamp, ha="right", va="top", fontsize=6, color="0.4")
    meta = {"Title": name, "Subject": stamp}
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Description": meta["Subject"]})
    fig.savefig(paths[1], bbox_inches="tight", metadata=meta)
    plt.close(fig)
    return paths


def latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                          ("|", r"\textbar{}"), ("$", r"\$")):
        text = text.replace(char, escaped)
    return text


def save_table(df: pd.DataFrame, name: str, out_dir: str | Path, profile: str, backend: str, float_format="%.3g",
               seeds: str = "", latex_columns: list[str] | dict[str, str] | None = None,
               latex_rows=None, caption: str = "") -> list[Path]:
    """CSV + LaTeX. The CSV keeps every column and row; the LaTeX shows only `latex_columns` when given
    (a list of columns, or a {column: header} dict that also renames them) and only `latex_rows` (a
    boolean mask over the rows) when given; `caption` (what the table's test and correction are,
    written from the data) goes under it, above the stamp. Empty cells stay empty (no "NaN"). The tabular is drawn at its natural
    size, or scaled down to the line width when it is wider than the line (graphicx's \\resizebox), so
    a table never runs off the page. The LaTeX ends with the stamp as a visible caption line, so a table
    in the PDF says which profile, backend, seeds and commit made it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{name}.csv"
    tex = out / f"{name}.tex"
    df.to_csv(csv, index=False)
    stamp = stamp_text(profile, backend, seeds)
    shown = df if latex_rows is None else df[np.asarray(latex_rows, dtype=bool)]
    if latex_columns is not None:
        missing = [c for c in latex_columns if c not in df.columns]
        if missing:
            raise KeyError(f"save_table({name!r}): latex_columns {missing} are not among {list(df.columns)}")
        shown = shown[list(latex_columns)]
        if isinstance(latex_columns, dict):
            shown = shown.rename(columns=latex_columns)
    body = shown.to_latex(index=False, float_format=float_format, escape=True, na_rep="").strip()
    box = r"\smarttablebox"
    tex.write_text(f"% {stamp}\n"
                   f"% the tabular, scaled down to the line width when wider (needs graphicx)\n"
                   rf"\ifdefined{box}\else\newsavebox{{{box}}}\fi" "\n"
                   rf"\par\noindent\begingroup\sbox{{{box}}}{{%" "\n"
                   f"{body}%\n"
                   rf"}}\ifdim\wd{box}>\linewidth\resizebox{{\linewidth}}{{!}}{{\usebox{{{box}}}}}"
                   rf"\else\usebox{{{box}}}\fi\endgroup" "\n"
                   + (f"\\par{{\\footnotesize {latex_escape(caption)}}}\n" if caption else "")
                   + f"\\par{{\\footnotesize\\textit{{{latex_escape(stamp)}}}}}\n")
    return [csv, tex]


def axis_label(axis: str, axis_info: dict | None = None) -> str:
    """The scorer's own label for an axis (axis_info as recorded by reward.describe_scorer)."""
    return (axis_info or {}).get(axis, {}).get("label", axis)


def axis_bins(axis: str, axis_info: dict | None, n: int = 32) -> np.ndarray:
    """n bins over the axis's recorded range (the paper's figure 3: 32 bins over 1-10)."""
    low, high = (axis_info or {}).get(axis, {}).get("range", (1.0, 10.0))
    return np.linspace(low, high, n + 1)


def in_range(values, bins: np.ndarray) -> np.ndarray:
    """Values outside the bins' range go into the edge bins: counted (as in the legend's mean), not
    silently left out of the histogram."""
    return np.clip(np.asarray(values, dtype=float), bins[0], bins[-1])


# ------------------------------------------------------------------------------------------------


def loss_curve(history: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(history["step"], history["train_loss"], lw=0.8, alpha=0.6, label="train")
    val = history.dropna(subset=["val_loss"])
    ax.plot(val["step"], val["val_loss"], "o-", label="validation")
    ax.axhline(history["unigram_val_loss"].iloc[0], color="k", ls="--", lw=1, label="unigram baseline (val)")
    ax.set(xlabel="step", ylabel="cross-entropy (nats/token)", title="Base model pre-training")
    ax.legend()
    return fig


def pianorolls(midis: list, titles: list[str], beats: int = 16):
    fig, axes = plt.subplots(1, len(midis), figsize=(3 * len(midis), 2.6), squeeze=False)
    for ax, midi, title in zip(axes[0], midis, titles):
        score = as_score(midi)
        tpq = score.ticks_per_quarter
        for n in (n for t in score.tracks for n in t.notes):
            if n.time < beats * tpq:
                ax.add_patch(plt.Rectangle((n.time / tpq, n.pitch - 0.4), n.duration / tpq, 0.8, color=TUNED_COLOR))
        ax.set(xlim=(0, beats), ylim=(20, 109), xlabel="beat", title=title)
    axes[0][0].set_ylabel("pitch")
    fig.tight_layout()
    return fig


def reward_scatter(samples: pd.DataFrame, steps: pd.DataFrame, reward_axis: str, run_name: str,
                   axis_info: dict | None = None):
    """Paper figure 2: the reward axis of every training sample vs iteration, with the mean."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.scatter(samples["step"], samples[reward_axis], s=4, alpha=0.35, color=BASE_COLOR, label="training samples")
    ax.plot(steps["step"], steps[f"{reward_axis}_mean"], color=TUNED_COLOR, lw=2, label="mean per step")
    ax.set(xlabel="iteration", ylabel=axis_label(reward_axis, axis_info), title=f"Reward of every training sample: {run_name}")
    ax.legend(loc="lower right")
    return fig


def seed_summary(steps: pd.DataFrame, column: str, level: float = 0.95) -> pd.DataFrame:
    """Per step, over seeds: mean, n (seeds with a value: NaN rows are left out) and the t-interval
    (low, high; NaN where fewer than 2 seeds have a value)."""
    from scipy import stats

    per_step = steps[["step", column]].dropna().groupby("step")[column].agg(["mean", "std", "count"]).reset_index()
    with np.errstate(invalid="ignore"):
        half = stats.t.ppf(0.5 + level / 2, per_step["count"] - 1) * per_step["std"] / np.sqrt(per_step["count"])
    return per_step.assign(low=per_step["mean"] - half, high=per_step["mean"] + half)


def _mean_and_band(ax, summary: pd.DataFrame, label: str, n_seeds: int, color=None, marker: str = ""):
    (line,) = ax.plot(summary["step"], summary["mean"], marker or "-", ms=3, color=color, label=f"{label} (mean)")
    band = ax.fill_between(summary["step"], summary["low"], summary["high"], color=line.get_color(), alpha=0.2, lw=0,
                           label=f"{label}: 95% interval over {n_seeds} seeds")
    band.set_gid("seed_interval")
    return line


def training_curves(steps: pd.DataFrame, run_name: str):
    """Reward, KL and entropy, and seconds per stage along training. With a `seed` column holding 2
    or more seeds: each curve is the mean over seeds per step with its 95% t-interval across seeds
    (a band); else one run's curves (reward: mean +- sd over the step's samples). The KL is drawn at
    the steps that measured it (beta = 0 runs log it every kl_log_every steps, NaN between)."""
    seeds = sorted(steps["seed"].dropna().unique()) if "seed" in steps.columns else []
    n_seeds = len(seeds)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    kl = steps.dropna(subset=["kl"]) if "kl" in steps.columns else steps.iloc[:0]
    kl_marker = "o-" if len(kl) and kl["step"].nunique() < steps["step"].nunique() else ""  # sparse: points visible
    stages = [s for s in ("seconds_generate", "seconds_render", "seconds_score", "seconds_update") if s in steps.columns]
    if n_seeds >= 2:
        over = f"mean and 95% interval over {n_seeds} seeds"
        _mean_and_band(axes[0], seed_summary(steps, "reward_mean"), "reward", n_seeds)
        axes[0].set(xlabel="step", ylabel="scalar reward", title=f"reward: {over}")
        if len(kl):
            _mean_and_band(axes[1], seed_summary(kl, "kl"), "KL to reference", n_seeds, marker=kl_marker)
        entropy = seed_summary(steps, "entropy")
        scale = entropy["mean"].abs().max() or 1.0
        _mean_and_band(axes[1], entropy.assign(**{c: entropy[c] / scale for c in ("mean", "low", "high")}),
                       "entropy (scaled)", n_seeds)
        axes[1].set(xlabel="step", title=f"KL and entropy: {over}")
        per_step = steps.groupby("step")[stages].mean().reset_index()
        time_title = f"time per step by stage (mean over {n_seeds} seeds)"
        fig.suptitle(f"{run_name}: {over}")
    else:
        axes[0].plot(steps["step"], steps["reward_mean"], label="reward (mean)")
        axes[0].fill_between(steps["step"], steps["reward_mean"] - steps["reward_std"],
                             steps["reward_mean"] + steps["reward_std"], alpha=0.2, label="± sd over the step's samples")
        axes[0].set(xlabel="step", ylabel="scalar reward", title="reward (mean ± sd)")
        if len(kl):
            axes[1].plot(kl["step"], kl["kl"], kl_marker or "-", ms=3, label="KL to reference")
        axes[1].plot(steps["step"], steps["entropy"] / steps["entropy"].max(), label="entropy (scaled)")
        axes[1].set(xlabel="step", title="KL and entropy")
        per_step, time_title = steps, "time per step by stage"
        fig.suptitle(run_name)
    if not len(kl):
        axes[1].text(0.5, 0.5, "no KL measured", transform=axes[1].transAxes, ha="center", color="0.4")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    axes[2].stackplot(per_step["step"], *[per_step[s] for s in stages], labels=[s.split("_")[1] for s in stages], alpha=0.8)
    axes[2].set(xlabel="step", ylabel="seconds", title=time_title)
    axes[2].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def axes_histograms(base: pd.DataFrame, tuned: pd.DataFrame, axes_names: list[str], axis_info: dict | None = None,
                    labels=("base", "tuned")):
    """Paper figure 3: every scorer axis, base vs tuned (32 bins over the axis's range: 1-10 for
    Audiobox's CE, CU, PC, PQ and the stand-in's total, 0-1 for the stand-in's parts; a value outside
    it is counted in the edge bin)."""
    fig, axs = plt.subplots(1, len(axes_names), figsize=(3.2 * len(axes_names), 2.8), squeeze=False)
    for ax, axis in zip(axs[0], axes_names):
        bins = axis_bins(axis, axis_info)
        for df, label, color in ((base, labels[0], BASE_COLOR), (tuned, labels[1], TUNED_COLOR)):
            ax.hist(in_range(df[axis], bins), bins=bins, alpha=0.55, color=color,
                    label=f"{label} (mean {df[axis].mean():.2f})")
        ax.set(xlabel=axis_label(axis, axis_info), ylabel="count", xlim=(bins[0], bins[-1]))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


FEATURE_PANELS = [("n_notes", "number of notes"), ("polyphony_rate", "polyphony rate"),
                  ("empty_beat_rate", "empty-beat rate"), ("scale_consistency", "scale consistency"),
                  ("__pitch__", "pitch distribution"), ("pitch_range", "pitch range"),
                  ("__velocity__", "velocity distribution"), ("velocity_range", "velocity range")]
# whole-number quantities: their bins hold whole numbers only (edges at k - 0.5)
INTEGER_VALUED = {"n_notes", "pitch", "pitch_range", "velocity", "velocity_range", "melodic_interval"}
# the full scale of a pooled quantity, so base and tuned (and profiles) share the same bins
VALUE_RANGE = {"pitch": (21, 108), "velocity": (1, 127)}


def integer_bins(values, low: float | None = None, high: float | None = None, max_bins: int = 40) -> np.ndarray:
    """Bin edges at k - 0.5 over [low, high] widened to the values' range, each bin the same whole
    number of integers wide (1, or more to keep at most max_bins bins): no bin is emptier or
    fuller just for covering fewer or more whole numbers."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v):
        low = np.floor(v.min()) if low is None else min(low, np.floor(v.min()))
        high = np.ceil(v.max()) if high is None else max(high, np.ceil(v.max()))
    low = 0.0 if low is None else low
    high = low + 1 if high is None else high
    width = max(1, int(np.ceil((high - low + 1) / max_bins)))
    count = int(np.ceil((high - low + 1) / width))
    return low - 0.5 + width * np.arange(count + 1)


def feature_histograms(base: pd.DataFrame, tuned: pd.DataFrame, base_pooled: dict, tuned_pooled: dict):
    """Paper figure 4: 2 x 4 feature histograms, base vs tuned. Per-piece features are counts of
    pieces; pooled note values (pitch, velocity) are shares of each set's notes (the sets have
    different numbers of notes). Whole-number quantities get integer-aligned bins."""
    fig, axs = plt.subplots(2, 4, figsize=(13, 5.5))
    for ax, (key, title) in zip(axs.ravel(), FEATURE_PANELS):
        pooled = key.startswith("__")
        name = key.strip("_")
        if pooled:
            a, b = np.asarray(base_pooled[name], float), np.asarray(tuned_pooled[name], float)
        else:
            a, b = base[key].dropna().to_numpy(float), tuned[key].dropna().to_numpy(float)
        both = np.r_[a, b]
        if name in INTEGER_VALUED:
            low, high = VALUE_RANGE.get(name, (None, None))
            bins = integer_bins(both, low, high, max_bins=88 if name == "pitch" else 32)
        else:  # rates in [0, 1]
            bins = np.linspace(min(np.nanmin(np.r_[both, 0]), 0), max(np.nanmax(np.r_[both, 1]), 1), 25)
        for values, label, color in ((a, "base", BASE_COLOR), (b, "tuned", TUNED_COLOR)):
            weights = np.full(len(values), 1 / len(values)) if pooled and len(values) else None
            ax.hist(values, bins=bins, weights=weights, alpha=0.55, color=color, label=label)
        ax.set(title=title, ylabel="share of notes" if pooled else "pieces (count)")
        if name in INTEGER_VALUED:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axs[0, 0].legend(title=f"pieces: base {len(base)}, tuned {len(tuned)}", fontsize=7, title_fontsize=7)
    fig.tight_layout()
    return fig


def diversity_panels(systems: dict[str, tuple[pd.DataFrame, np.ndarray, int]], reward_axis: str,
                     axis_info: dict | None = None, note: str = ""):
    """Paper figure 5: per system (a column), the reward histogram above the average piano roll of
    its n outputs (n printed over each column; every column averages the same n, short pieces as
    silence over their missing beats). One colour scale, from 0 to the largest value of any panel,
    with one colour bar; reward histograms share their y axis. `note` goes under the title (say,
    that the columns use the first n outputs of systems with more)."""
    from .diversity import FRAMES_PER_BEAT, LOW_PITCH

    fig, axs = plt.subplots(2, len(systems), figsize=(3.4 * len(systems) + 1.0, 5.6), squeeze=False,
                            gridspec_kw={"height_ratios": [1, 2]}, layout="constrained", sharey="row")
    bins = axis_bins(reward_axis, axis_info)
    vmax = max([float(roll.max()) for _, roll, _ in systems.values()] + [1e-6])
    image = None
    for col, (name, (table, roll, n)) in enumerate(systems.items()):
        axs[0, col].hist(in_range(table[reward_axis], bins), bins=bins, color=TUNED_COLOR if col else BASE_COLOR)
        axs[0, col].set(title=f"{name}\nn = {n}", xlabel=axis_label(reward_axis, axis_info), xlim=(bins[0], bins[-1]),
                        ylabel="count" if col == 0 else "")
        image = axs[1, col].imshow(roll, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=vmax,
                                   extent=(0, roll.shape[1] / FRAMES_PER_BEAT, LOW_PITCH - 0.5,
                                           LOW_PITCH + roll.shape[0] - 0.5))
        axs[1, col].grid(False)  # the theme's white grid would draw over the heatmap
        axs[1, col].set(xlabel="beat", ylabel="pitch" if col == 0 else "")
    fig.colorbar(image, ax=axs[1, :].tolist(), label="share of pieces sounding", shrink=0.9)
    fig.suptitle("Reward and average piano roll (first 16 beats)" + (f"\n{note}" if note else ""), fontsize=9)
    return fig


def _has_interval(df: pd.DataFrame, metric: str) -> bool:
    return f"{metric}_ci_low" in df.columns and f"{metric}_ci_high" in df.columns and df[f"{metric}_ci_low"].notna().any()


def diversity_curves(sweeps: pd.DataFrame, metrics=("vendi", "pairwise_distance", "distinct_4", "prompt_dependence")):
    """Mean reward and diversity metrics at every checkpoint, one line per run; a shaded band is the
    metric's 95% bootstrap interval (resampled samples) where the sweep has one."""
    fig, axs = plt.subplots(1, len(metrics) + 1, figsize=(3.3 * (len(metrics) + 1), 3))
    banded = False
    for run, df in sweeps.groupby("run"):
        df = df.sort_values("step")
        axs[0].plot(df["step"], df["reward_mean"], "o-", ms=3, label=run)
        for ax, m in zip(axs[1:], metrics):
            (line,) = ax.plot(df["step"], df[m], "o-", ms=3, label=run)
            if _has_interval(df, m):
                ax.fill_between(df["step"], df[f"{m}_ci_low"], df[f"{m}_ci_high"], color=line.get_color(), alpha=0.2,
                                lw=0).set_gid("bootstrap_interval")
                banded = True
    axs[0].set(xlabel="step", title="mean reward")
    for ax, m in zip(axs[1:], metrics):
        ax.set(xlabel="step", title=m.replace("_", " "))
    axs[0].legend(fontsize=7)
    if banded:
        fig.suptitle("bands: 95% bootstrap interval over the checkpoint's samples (resampled within prompt)", fontsize=8)
    fig.tight_layout()
    return fig


def quality_diversity_frontier(sweeps: pd.DataFrame, metric: str = "vendi"):
    """Mean reward vs diversity at every checkpoint: one line per run, points coloured by step on
    one shared scale, the base model (step 0) marked once; horizontal error bars are the metric's
    95% bootstrap interval where the sweep has one."""
    from matplotlib.colors import Normalize

    fig, ax = plt.subplots(figsize=(5.5, 4))
    norm = Normalize(0, sweeps["step"].max())
    markers = dict(zip(sorted(sweeps["run"].unique()), itertools.cycle("osD^v")))  # any number of runs
    with_interval = _has_interval(sweeps, metric)
    handles = []
    for run, df in sweeps.groupby("run"):
        df = df.sort_values("step")
        (line,) = ax.plot(df[metric], df["reward_mean"], "-", lw=1, alpha=0.6)
        # the legend shows each run as it is drawn: its line's colour and its points' marker
        handles.append(Line2D([], [], color=line.get_color(), lw=1, marker=markers[run], mfc="white", mec="k",
                              mew=0.5, label=run))
        if with_interval:
            xerr = _error_bars(df[metric], df[f"{metric}_ci_low"], df[f"{metric}_ci_high"])
            bars = ax.errorbar(df[metric], df["reward_mean"], xerr=xerr, fmt="none", ecolor=line.get_color(),
                               elinewidth=0.8, alpha=0.6, capsize=0, zorder=2)
            bars.lines[2][0].set_gid("bootstrap_interval")
        sc = ax.scatter(df[metric], df["reward_mean"], c=df["step"], cmap="viridis", norm=norm, s=28,
                        marker=markers[run], edgecolor="k", linewidth=0.3, zorder=3)
    base = sweeps[sweeps["step"] == 0].iloc[0]
    ax.annotate("base (step 0)", (base[metric], base["reward_mean"]), xytext=(6, -10), textcoords="offset points", fontsize=7)
    fig.colorbar(sc, ax=ax, label="step")
    xlabel = f"diversity ({metric})" + (" ± 95% bootstrap interval" if with_interval else "")
    ax.set(xlabel=xlabel, ylabel="mean reward", title="Quality-diversity along training")
    ax.legend(handles=handles, fontsize=7, title="run")
    return fig


# Where a point's label may go, in offset points from the point (tried in this order): beside it
# first, then above and below, then further out with a leader line.
_LABEL_OFFSETS = [(6, -3), (-6, -3), (4, 5), (4, -11), (-4, 5), (-4, -11), (0, 9), (0, -15),
                  (14, 9), (14, -15), (-14, 9), (-14, -15), (0, 18), (0, -24), (22, 0), (-22, 0),
                  (-20, 16), (20, 16), (-20, -22), (20, -22), (0, 28), (-30, 26), (30, 26), (-30, -32), (30, -32)]


def _text_box(annotation, renderer):
    """An annotation's text alone, without its leader line (which may cross its own point)."""
    annotation.get_window_extent(renderer)  # places the text (Annotation.update_positions)
    return Text.get_window_extent(annotation, renderer)


def place_labels(ax, xs, ys, labels, fontsize: float = 7, obstacles=(), avoid=None) -> list:
    """Annotate each point with its label where it overlaps no label placed before it and no point
    (greedy over _LABEL_OFFSETS; where every offset collides, the one with the least overlap).
    obstacles: further texts (e.g. the N= labels) to keep clear of; avoid: further points (data
    coordinates, n x 2) that carry no label. Returns the annotations."""
    fig = ax.figure
    fig.canvas.draw()  # the legend's "best" place and the axes' limits are settled only by a draw
    renderer = fig.canvas.get_renderer()
    points = ax.transData.transform(np.column_stack([xs, ys]))
    if avoid is not None and len(avoid):
        points = np.vstack([points, ax.transData.transform(np.asarray(avoid, dtype=float))])
    dots = [Bbox.from_extents(x - 4, y - 4, x + 4, y + 4) for x, y in points]
    taken = [t.get_window_extent(renderer) for t in obstacles]
    inside = ax.get_window_extent(renderer)

    def overlap(a, b, pad=1.5):  # padded: two labels that merely touch read as one
        w = min(a.x1, b.x1) - max(a.x0, b.x0) + 2 * pad
        h = min(a.y1, b.y1) - max(a.y0, b.y0) + 2 * pad
        return max(w, 0) * max(h, 0)

    placed = []
    for i, (x, y, label) in enumerate(zip(xs, ys, labels)):
        best = None
        for dx, dy in _LABEL_OFFSETS:
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            far = abs(dx) > 10 or abs(dy) > 16
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha=ha, va="bottom" if dy > 0 else "top" if dy < -4 else "center",
                               arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if far else None)
            box = _text_box(text, renderer)
            cost = sum(overlap(box, b) for b in taken) + sum(overlap(box, d) for j, d in enumerate(dots) if j != i)
            cost += 0 if (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0
                          and box.y1 <= inside.y1) else 1e6  # a label outside the axes is a last resort
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, text, box)
            else:
                text.remove()
            if cost == 0:
                break
        taken.append(best[2])
        placed.append(best[1])
    return placed


def bar_table(df: pd.DataFrame, x: str, ys: list[str], title: str):
    fig, ax = plt.subplots(figsize=(1.2 * len(df) + 3, 3))
    df.set_index(x)[ys].plot.bar(ax=ax)
    ax.set(title=title, xlabel="")
    ax.tick_params(axis="x", rotation=0)
    fig.tight_layout()
    return fig


def listening_means(result: dict, title: str):
    fig, ax = plt.subplots(figsize=(4, 3))
    names = list(result["systems"])
    means = [result["systems"][s]["mean"] for s in names]
    err = [[m - result["systems"][s]["ci_low"] for s, m in zip(names, means)],
           [result["systems"][s]["ci_high"] - m for s, m in zip(names, means)]]
    ax.bar(names, means, yerr=err, capsize=6, color=[BASE_COLOR, TUNED_COLOR])
    ax.set(ylabel="mean rating (95% CI over participants)", title=title)
    return fig


def power_plot(curve: pd.DataFrame, title: str, participants_now: int | None = 14):
    """One curve per stated effect (listening.power_at_effects), with the 95% Monte Carlo interval
    of each simulated power as error bars; effect 0 (if run) is the false-positive rate, drawn against
    a grey line at alpha; a dotted line at the study's number of participants."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for effect, part in curve.groupby("effect", sort=True):
        part = part.sort_values("participants")
        yerr = np.vstack([part["power"] - part["ci_low"], part["ci_high"] - part["power"]]).clip(min=0)
        ax.errorbar(part["participants"], part["power"], yerr=yerr, fmt="o", capsize=3, ms=4, ls=":" if effect == 0 else "-",
                    label=f"effect {effect:g} points" if effect else "effect 0 (false-positive rate)",
                    **({"color": "0.5"} if effect == 0 else {}))
    ax.axhline(0.8, ls="--", color="k", lw=1)
    if (curve["effect"] == 0).any():
        ax.axhline(curve["alpha"].iloc[0], ls="--", color="0.6", lw=0.8)
    if participants_now:
        ax.axvline(participants_now, ls=":", color="0.4", lw=1)
    first = curve.iloc[0] if len(curve) else {}
    note = f"{first.get('test', '')}\n{first.get('n_sim', '')} simulated studies per point, alpha {first.get('alpha', '')}"
    ax.set(xlabel="participants", ylabel="power (95% Monte Carlo interval)", ylim=(0, 1.02))
    ax.set_title(f"{title}\n{note}", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


# ------------------------------------------------------------------------------------------------ beyond


def _error_bars(values, low, high) -> np.ndarray:
    """Asymmetric error bars [2, n] (below, above) from an interval's bounds; a missing bound draws none."""
    return np.nan_to_num(np.clip([values - low, high - values], 0, None))


def _yerr(df: pd.DataFrame, metric: str) -> np.ndarray | None:
    """Asymmetric error bars from `<metric>_ci_low/high` (None without an interval)."""
    if not _has_interval(df, metric):
        return None
    return _error_bars(df[metric], df[f"{metric}_ci_low"], df[f"{metric}_ci_high"])


def best_of_n_plot(table: pd.DataFrame, reward_label: str, metrics=("mean_reward", "pairwise_distance", "vendi")):
    """Each metric against the reward evaluations spent (log scale): the best-of-N curve (N labelled)
    and every tuned run as one point (its training rollouts), each with its 95% bootstrap interval."""
    fig, axs = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4))
    bon = table[table["N"].notna()].sort_values("N")
    tuned = table[table["N"].isna()]
    # one marker and colour per tuned run, the same in every panel (the legend is drawn from the last),
    # none of them the best-of-N curve's colour
    others = sns.color_palette("deep").as_hex()[1:]  # the first is BASE_COLOR
    looks = dict(zip(tuned["system"], zip(itertools.cycle("sD^vP*X"), itertools.cycle(others))))
    for ax, metric in zip(axs, metrics):
        ax.errorbar(bon["reward_evaluations"], bon[metric], yerr=_yerr(bon, metric), fmt="o-", color=BASE_COLOR,
                    capsize=3, ms=4, label="best-of-N from the base model")
        for _, r in tuned.iterrows():
            marker, color = looks[r["system"]]
            ax.errorbar([r["reward_evaluations"]], [r[metric]], yerr=_yerr(tuned.loc[[_]], metric), fmt=marker,
                        capsize=3, ms=6, color=color, label=f"{r['system']} (training rollouts)")
        ax.set_xscale("log", base=2)
        place_labels(ax, bon["reward_evaluations"].to_numpy(), bon[metric].to_numpy(),
                     [f"N={int(n)}" for n in bon["N"]], fontsize=6,
                     avoid=np.column_stack([tuned["reward_evaluations"], tuned[metric]]))
        ax.set(xlabel="reward evaluations spent", title=reward_label if metric == "mean_reward" else metric.replace("_", " "))
    axs[0].set_ylabel("mean reward (95% CI)")
    axs[-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Best-of-N from the base model vs the tuned runs, on the same evaluation prompts", fontsize=9)
    fig.tight_layout()
    return fig


def transfer_plot(table: pd.DataFrame, run_scorer: str, primary_axis: str):
    """Per run: the tuned-minus-base median difference of the training reward's axis on every
    SoundFont (the training one filled, the unheard ones open) with its 95% bootstrap CI; a last
    panel with the cross-scored axes on the training font when there are any."""
    def difference_err(part):  # compare_paired names the median difference's CI difference_ci_low / _high
        return _error_bars(part["median_difference"], part["difference_ci_low"], part["difference_ci_high"])

    main = table[(table["scorer"] == run_scorer) & (table["axis"] == primary_axis)]
    cross = table[table["scorer"] != run_scorer]
    runs = list(dict.fromkeys(main["run"]))
    panels = len(runs) + (1 if len(cross) else 0)
    fig, axs = plt.subplots(1, panels, figsize=(3.4 * panels, 3.4), squeeze=False)
    axs = axs[0]
    for ax, run in zip(axs, runs):
        part = main[main["run"] == run].reset_index(drop=True)
        err = difference_err(part)
        for i, r in part.iterrows():
            ax.errorbar([i], [r["median_difference"]], yerr=err[:, [i]], fmt="o", capsize=3,
                        ms=6, color=TUNED_COLOR, mfc=TUNED_COLOR if r["heard_in_training"] else "white")
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xticks(range(len(part)), [f"{f}\n(training)" if h else f for f, h in zip(part["soundfont"],
                                                                                        part["heard_in_training"])],
                      fontsize=6, rotation=30)
        ax.set(title=f"{run}: {primary_axis}, tuned - base", ylabel="median paired difference (95% CI)")
    if len(cross):
        ax = axs[-1]
        part = cross.reset_index(drop=True)
        labels = [f"{r['run']}\n{r['axis']}" for _, r in part.iterrows()]
        ax.errorbar(range(len(part)), part["median_difference"], yerr=difference_err(part), fmt="s", capsize=3,
                    color="0.3")
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xticks(range(len(part)), labels, fontsize=6, rotation=30)
        ax.set(title=f"cross-scored by {part['scorer'].iloc[0]} (training font)")
    fig.suptitle("Reward transfer: the base-to-tuned gain on SoundFonts the policy never heard (open points)", fontsize=9)
    fig.tight_layout()
    return fig


def ablation_frontier(table: pd.DataFrame, best_of_n: pd.DataFrame | None = None, metric: str = "pairwise_distance"):
    """Mean reward against diversity for the base model, the paper's runs and every ablation
    variant (95% bootstrap intervals on both axes), with the best-of-N curve when given."""
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    n_labels = []
    if best_of_n is not None and len(best_of_n):
        bon = best_of_n[best_of_n["N"].notna()].sort_values("N")
        ax.plot(bon[metric], bon["mean_reward"], "--", color="0.6", lw=1, label="best-of-N (base model)")
        for _, r in bon.iterrows():
            n_labels.append(ax.annotate(f"N={int(r['N'])}", (r[metric], r["mean_reward"]), xytext=(3, 3),
                                        textcoords="offset points", fontsize=6, color="0.5"))
    styles = {"base": ("o", "k"), "paper": ("s", None), "ablation": ("D", None)}
    for _, r in table.iterrows():
        kind = "base" if r["system"] == "base" else "ablation" if r["is_ablation"] else "paper"
        marker, color = styles[kind]
        one = table.loc[[_]]
        bars = ax.errorbar([r[metric]], [r["mean_reward"]], xerr=_yerr(one, metric), yerr=_yerr(one, "mean_reward"),
                           fmt=marker, ms=6, capsize=2, color=color, elinewidth=0.7, zorder=3,
                           mfc="white" if kind == "ablation" else None, label=r["system"] if kind != "ablation" else None)
        for line in bars.lines[2]:
            line.set_alpha(0.45)  # the intervals stay readable where many overlap
    ax.set(xlabel=f"diversity: {metric.replace('_', ' ')} (95% CI)", ylabel="mean reward (95% CI)",
           title="Quality-diversity frontier: the paper's runs (squares) and the ablations (open diamonds)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=6, loc="best")
    # labels last, once the limits are final: placed clear of each other, the points and the N= labels
    place_labels(ax, table[metric].to_numpy(), table["mean_reward"].to_numpy(), list(table["system"]),
                 obstacles=n_labels + [ax.get_legend()])
    return fig


def ablation_curves(logs: dict[str, pd.DataFrame], baseline: str):
    """Reward (5-step rolling mean) and KL to the reference along training, one line per run; the
    baseline drawn black."""
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, steps in logs.items():
        style = {"color": "k", "lw": 1.6} if name == baseline else {"lw": 1}
        label = name.removeprefix("ablation_") + (" (baseline)" if name == baseline else "")
        axs[0].plot(steps["step"], steps["reward_mean"].rolling(5, min_periods=1).mean(), label=label, **style)
        kl = steps.dropna(subset=["kl"]) if "kl" in steps else steps.iloc[:0]
        axs[1].plot(kl["step"], kl["kl"], label=label, **style)
    axs[0].set(xlabel="step", ylabel="scalar reward", title="reward (rolling mean over 5 steps)")
    axs[1].set(xlabel="step", ylabel="KL to the reference", title="KL (k3, mean over tokens)")
    axs[1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig
