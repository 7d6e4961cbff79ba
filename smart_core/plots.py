"""The paper's figures (and ours) from run artifacts. Every figure is stamped with the profile,
the reward backend and the git commit, and saved as PDF and PNG; tables as CSV and LaTeX."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .midi import as_score  # noqa: E402
from .runs import git_commit  # noqa: E402

BASE_COLOR, TUNED_COLOR = "#4C72B0", "#DD8452"
sns.set_theme(style="whitegrid", context="paper")


def stamp_text(profile: str, backend: str) -> str:
    label = "OFFLINE STAND-IN reward (not Audiobox)" if backend == "standin" else f"reward: {backend}"
    commit = git_commit()  # "-dirty" when the tree had uncommitted changes: kept, never cut
    short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    return f"profile: {profile} | {label} | commit {short}"


def save_figure(fig, name: str, out_dir: str | Path, profile: str, backend: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # below everything; bbox_inches="tight" grows the canvas to keep it
    fig.text(0.99, -0.02, stamp_text(profile, backend), ha="right", va="top", fontsize=6, color="0.4")
    meta = {"Title": name, "Subject": stamp_text(profile, backend)}
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Description": meta["Subject"]})
    fig.savefig(paths[1], bbox_inches="tight", metadata=meta)
    plt.close(fig)
    return paths


def save_table(df: pd.DataFrame, name: str, out_dir: str | Path, profile: str, backend: str, float_format="%.3g") -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{name}.csv"
    tex = out / f"{name}.tex"
    df.to_csv(csv, index=False)
    caption = stamp_text(profile, backend).replace("_", r"\_").replace("|", r"\textbar{}")
    body = df.to_latex(index=False, float_format=float_format, escape=True)
    tex.write_text(f"% {stamp_text(profile, backend)}\n{body}% {caption}\n")
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


def training_curves(steps: pd.DataFrame, run_name: str):
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    axes[0].plot(steps["step"], steps["reward_mean"])
    axes[0].fill_between(steps["step"], steps["reward_mean"] - steps["reward_std"], steps["reward_mean"] + steps["reward_std"], alpha=0.2)
    axes[0].set(xlabel="step", ylabel="scalar reward", title="reward (mean ± sd)")
    axes[1].plot(steps["step"], steps["kl"], label="KL to reference")
    axes[1].plot(steps["step"], steps["entropy"] / steps["entropy"].max(), label="entropy (scaled)")
    axes[1].set(xlabel="step", title="KL and entropy")
    axes[1].legend()
    stages = ["seconds_generate", "seconds_render", "seconds_score", "seconds_update"]
    axes[2].stackplot(steps["step"], *[steps[s] for s in stages], labels=[s.split("_")[1] for s in stages], alpha=0.8)
    axes[2].set(xlabel="step", ylabel="seconds", title="time per step by stage")
    axes[2].legend(fontsize=7, loc="upper left")
    fig.suptitle(run_name)
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


def feature_histograms(base: pd.DataFrame, tuned: pd.DataFrame, base_pooled: dict, tuned_pooled: dict):
    """Paper figure 4: 2 x 4 feature histograms, base vs tuned."""
    fig, axs = plt.subplots(2, 4, figsize=(13, 5.5))
    for ax, (key, title) in zip(axs.ravel(), FEATURE_PANELS):
        if key.startswith("__"):
            name = key.strip("_")
            a, b = base_pooled[name], tuned_pooled[name]
            bins = np.arange(20.5, 109.5, 1) if name == "pitch" else np.arange(0.5, 128.5, 4)
        else:
            a, b = base[key].dropna(), tuned[key].dropna()
            lo, hi = np.nanmin(np.r_[a, b, 0]), np.nanmax(np.r_[a, b, 1])
            bins = np.linspace(lo, hi, 25)
        ax.hist(a, bins=bins, alpha=0.55, color=BASE_COLOR, label="base", density=True)
        ax.hist(b, bins=bins, alpha=0.55, color=TUNED_COLOR, label="tuned", density=True)
        ax.set(title=title)
    axs[0, 0].legend()
    fig.tight_layout()
    return fig


def diversity_panels(systems: dict[str, tuple[pd.DataFrame, np.ndarray, int, int]], reward_axis: str,
                     axis_info: dict | None = None):
    """Paper figure 5: per system, the reward histogram above the average piano roll."""
    from .diversity import FRAMES_PER_BEAT, LOW_PITCH

    fig, axs = plt.subplots(2, len(systems), figsize=(3.4 * len(systems), 5.2), squeeze=False,
                            gridspec_kw={"height_ratios": [1, 2]})
    bins = axis_bins(reward_axis, axis_info)
    for col, (name, (table, roll, used, dropped)) in enumerate(systems.items()):
        axs[0, col].hist(in_range(table[reward_axis], bins), bins=bins, color=TUNED_COLOR if col else BASE_COLOR)
        axs[0, col].set(title=name, xlabel=axis_label(reward_axis, axis_info), xlim=(bins[0], bins[-1]))
        axs[1, col].imshow(roll, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=max(roll.max(), 1e-6),
                           extent=(0, roll.shape[1] / FRAMES_PER_BEAT, LOW_PITCH - 0.5, LOW_PITCH + roll.shape[0] - 0.5))
        axs[1, col].set(xlabel=f"beat (n={used}, {dropped} shorter than 16 beats dropped)", ylabel="pitch" if col == 0 else "")
    fig.tight_layout()
    return fig


def diversity_curves(sweeps: pd.DataFrame, metrics=("vendi", "pairwise_distance", "distinct_4", "prompt_dependence")):
    fig, axs = plt.subplots(1, len(metrics) + 1, figsize=(3.3 * (len(metrics) + 1), 3))
    for run, df in sweeps.groupby("run"):
        axs[0].plot(df["step"], df["reward_mean"], "o-", ms=3, label=run)
        for ax, m in zip(axs[1:], metrics):
            ax.plot(df["step"], df[m], "o-", ms=3, label=run)
    axs[0].set(xlabel="step", title="mean reward")
    for ax, m in zip(axs[1:], metrics):
        ax.set(xlabel="step", title=m.replace("_", " "))
    axs[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def quality_diversity_frontier(sweeps: pd.DataFrame, metric: str = "vendi"):
    """Mean reward vs diversity at every checkpoint: one line per run, points coloured by step on
    one shared scale, the base model (step 0) marked once."""
    from matplotlib.colors import Normalize

    fig, ax = plt.subplots(figsize=(5.5, 4))
    norm = Normalize(0, sweeps["step"].max())
    markers = dict(zip(sorted(sweeps["run"].unique()), itertools.cycle("osD^v")))  # any number of runs
    for run, df in sweeps.groupby("run"):
        df = df.sort_values("step")
        ax.plot(df[metric], df["reward_mean"], "-", lw=1, alpha=0.6, label=run)
        sc = ax.scatter(df[metric], df["reward_mean"], c=df["step"], cmap="viridis", norm=norm, s=28,
                        marker=markers[run], edgecolor="k", linewidth=0.3, zorder=3)
    base = sweeps[sweeps["step"] == 0].iloc[0]
    ax.annotate("base (step 0)", (base[metric], base["reward_mean"]), xytext=(6, -10), textcoords="offset points", fontsize=7)
    fig.colorbar(sc, ax=ax, label="step")
    ax.set(xlabel=f"diversity ({metric})", ylabel="mean reward", title="Quality-diversity along training")
    ax.legend(fontsize=7, title="run (line)")
    return fig


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


def power_plot(curve: pd.DataFrame, title: str):
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(curve["participants"], curve["power"], "o-")
    ax.axhline(0.8, ls="--", color="k", lw=1)
    ax.axvline(14, ls=":", color="0.4", lw=1)
    ax.set(xlabel="participants", ylabel="power", ylim=(0, 1.02), title=title)
    return fig
