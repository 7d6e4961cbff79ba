"""Base vs tuned comparisons: tests, effect sizes with bootstrap CIs, corrections, the claims table."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu
from statsmodels.stats.multitest import multipletests


def cliffs_delta(a, b) -> float:
    """P(a > b) - P(a < b) over all pairs: -1..1, 0 = no difference (tuned a vs base b)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not len(a) or not len(b):
        return float("nan")
    diff = a[:, None] - b[None, :]
    return float((np.sign(diff)).mean())


def bootstrap_ci(a, b, stat=cliffs_delta, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    values = [stat(rng.choice(a, len(a)), rng.choice(b, len(b))) for _ in range(n_boot)]
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def compare(base: pd.DataFrame, tuned: pd.DataFrame, columns: list[str], correction: str = "holm",
            n_boot: int = 1000) -> pd.DataFrame:
    """One row per column: medians, two-sided Mann-Whitney U, Cliff's delta (tuned vs base) with a
    bootstrap 95% CI, and p corrected for the number of columns (Holm by default)."""
    rows = []
    for col in columns:
        a, b = tuned[col].dropna().to_numpy(float), base[col].dropna().to_numpy(float)
        if len(a) and len(b) and not (np.all(a == a[0]) and np.all(b == a[0])):
            u, p = mannwhitneyu(a, b, alternative="two-sided")
        else:
            u, p = float("nan"), 1.0
        lo, hi = bootstrap_ci(a, b, n_boot=n_boot)
        rows.append({"measure": col, "n_base": len(b), "n_tuned": len(a), "median_base": np.median(b) if len(b) else np.nan,
                     "median_tuned": np.median(a) if len(a) else np.nan, "U": u, "p": p,
                     "cliffs_delta": cliffs_delta(a, b), "delta_ci_low": lo, "delta_ci_high": hi})
    table = pd.DataFrame(rows)
    table["p_adjusted"] = multipletests(table["p"].fillna(1.0), method=correction)[1]
    table["correction"] = correction
    return table


# The directions the paper states (its results section and figure 4): measure -> +1 (rises) / -1 (falls).
PAPER_CLAIMS = [
    ("reward axis (CE, or the stand-in)", "__reward__", +1, "CE rises over training"),
    ("number of notes", "n_notes", +1, "more notes"),
    ("polyphony rate", "polyphony_rate", +1, "higher polyphony rate"),
    ("empty-beat rate", "empty_beat_rate", -1, "empty-beat rate goes to 0"),
    ("pitch range", "pitch_range", +1, "wider pitch range"),
    ("mean velocity", "velocity_mean", -1, "velocities lower"),
    ("velocity range", "velocity_range", +1, "velocity range wider"),
]


def claims_table(stats: pd.DataFrame, reward_axis: str, other_axes: list[str] | tuple[str, ...] = (),
                 alpha: float = 0.05) -> pd.DataFrame:
    """Each direction the paper states, the direction measured here, its effect size, and whether
    it agrees (same sign and significant after correction), disagrees, or is inconclusive.

    other_axes: the scorer's axes the paper also reports but did not optimise (Audiobox: CU, PC,
    PQ; the paper: they rise too). A stand-in has none: its parts are not the paper's quantities."""
    by_measure = stats.set_index("measure")
    rows = []
    claims = PAPER_CLAIMS[:1] + [(axis, axis, +1, f"{axis} rises too (not optimised)") for axis in other_axes] \
        + PAPER_CLAIMS[1:]
    for label, measure, sign, text in claims:
        if measure == "__reward__":  # the paper's CE; here whatever the run optimised
            measure = reward_axis
            text = text if reward_axis == "CE" else f"the reward ({reward_axis}; the paper's: CE) rises over training"
        if measure not in by_measure.index:
            continue
        r = by_measure.loc[measure]
        measured = np.sign(r["cliffs_delta"]) if np.isfinite(r["cliffs_delta"]) else 0
        significant = r["p_adjusted"] < alpha
        verdict = ("agrees" if measured == sign else "opposite") if significant else "inconclusive"
        rows.append({"claim": text, "measure": measure if label != "reward axis (CE, or the stand-in)" else reward_axis,
                     "paper_direction": "up" if sign > 0 else "down",
                     "measured_direction": {1: "up", -1: "down", 0: "none"}[int(measured)],
                     "cliffs_delta": r["cliffs_delta"], "ci": f"[{r['delta_ci_low']:.2f}, {r['delta_ci_high']:.2f}]",
                     "p_adjusted": r["p_adjusted"], "verdict": verdict})
    return pd.DataFrame(rows)
