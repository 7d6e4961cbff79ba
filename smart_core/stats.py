"""Base vs tuned comparisons: paired tests, effect sizes with bootstrap CIs, Holm, and the claims table.

The design is paired: under one seed, the base and the tuned model complete the same evaluation
prompts with the same sampling streams (smart_core.evaluate), so row i of both evaluation sets is
one pair. Replicates (seeds) train separate models and draw separate prompts, so pairs from
different seeds are independent given the trained models; they are pooled for the test, and the
bootstrap resamples pairs within each seed. The p-value and the CIs are therefore about these
trained models, not about GRPO training in general: the spread between training seeds is shown by
each seed's own direction and p (`seeds_in_direction`, `p_per_seed`), and a direction that does not
hold in every seed is not called a result (a weak guard with 3 seeds: by chance 1 time in 4).
Ties (pairs with no difference) keep their ranks (Pratt), so a measure on which most pairs tie
cannot reach a large effect from the few that differ; their share is reported (`tied_share`).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, rankdata, wilcoxon


PAIRED_TEST = "Wilcoxon signed-rank on per-prompt differences, pairs pooled over seeds; Holm"
UNPAIRED_TEST = "Mann-Whitney U; Holm"
VERDICTS = ("agrees", "opposite", "inconclusive", "not testable here")
# A measure is testable only if the base model's outputs vary in it: at least this share of them
# must differ from the base's most common value (else there is nothing for tuning to move; see judge).
MIN_VARYING_SHARE = 0.10
# Claims about counts are also judged per second of audio: a longer piece has more notes.
PER_SECOND = {"n_notes": "notes_per_second"}


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input's order: the k-th smallest p times (m - k + 1),
    made non-decreasing, capped at 1. The arithmetic of statsmodels' multipletests(method="holm")
    (tests/test_stats.py checks them equal), without the gc.collect() it runs on every call, which
    costs a third of a second in a notebook holding many objects."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adjusted = np.minimum(np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1)), 1.0)
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def adjust(p, correction: str = "holm") -> np.ndarray:
    """p adjusted for multiple testing: Holm here; another statsmodels method by name."""
    if correction == "holm":
        return holm(p)
    from statsmodels.stats.multitest import multipletests

    return multipletests(p, method=correction)[1]


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
    """Unpaired (independent samples): medians, two-sided Mann-Whitney U, Cliff's delta (tuned vs
    base) with a bootstrap 95% CI, p corrected over the columns. Use `compare_paired` when base and
    tuned share prompts and sampling seeds."""
    rows = []
    for col in columns:
        a, b = tuned[col].dropna().to_numpy(float), base[col].dropna().to_numpy(float)
        if len(a) and len(b) and not (np.all(a == a[0]) and np.all(b == a[0])):
            u, p = mannwhitneyu(a, b, alternative="two-sided")
        else:
            u, p = float("nan"), 1.0
        lo, hi = bootstrap_ci(a, b, n_boot=n_boot)
        rows.append({"measure": col, "test": UNPAIRED_TEST, "n_base": len(b), "n_tuned": len(a),
                     "median_base": np.median(b) if len(b) else np.nan, "median_tuned": np.median(a) if len(a) else np.nan,
                     "U": u, "p": p, "cliffs_delta": cliffs_delta(a, b), "delta_ci_low": lo, "delta_ci_high": hi})
    table = pd.DataFrame(rows)
    table["p_adjusted"] = adjust(table["p"].fillna(1.0), correction)
    table["correction"] = correction
    return table


def mean_with_interval(values, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a percentile bootstrap interval of the mean (nan bounds without resamples)."""
    values = np.asarray(values, float)
    if n_boot <= 0 or len(values) < 2:
        return float(values.mean()), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(values.mean()), float(low), float(high)


# ------------------------------------------------------------------------------------------------ paired


def rank_biserial(d) -> float:
    """Matched-pairs rank-biserial correlation of differences d (tuned - base), ties kept (Pratt):
    the ranks of |d| over every pair, zeros included; (sum of the ranks where d > 0 minus where d < 0)
    / sum of all ranks. -1..1; pairs without a difference pull it towards 0."""
    d = np.asarray(d, float)
    if not len(d) or not np.any(d != 0):
        return 0.0
    ranks = rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def paired_values(pairs: list[tuple[int, pd.DataFrame, pd.DataFrame]], column: str) -> pd.DataFrame:
    """(seed, base, tuned) per pair for one column; pairs where either value is missing (an empty
    output has no rates) are dropped. Row i of base and tuned must be the same prompt."""
    frames = []
    for seed, base, tuned in pairs:
        if len(base) != len(tuned) or ("prompt" in base and not (base["prompt"].to_numpy() == tuned["prompt"].to_numpy()).all()):
            raise ValueError(f"seed {seed}: base and tuned evaluations are not paired (other prompts or lengths)")
        frames.append(pd.DataFrame({"seed": seed, "base": base[column].to_numpy(float),
                                    "tuned": tuned[column].to_numpy(float)}))
    values = pd.concat(frames, ignore_index=True)
    return values[np.isfinite(values["base"]) & np.isfinite(values["tuned"])].reset_index(drop=True)


def _signed_rank(d: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank (Pratt: tied pairs keep their ranks); (nan, 1) without any difference."""
    if not np.any(d != 0):
        return float("nan"), 1.0
    result = wilcoxon(d, zero_method="pratt", alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def _stratified_bootstrap(d: np.ndarray, seeds: np.ndarray, n_boot: int, rng: np.random.Generator):
    """Rank-biserial and median difference of n_boot resamples, pairs resampled within each seed.
    The resamples are drawn one by one (the stream every table so far used), then measured together."""
    groups = [np.flatnonzero(seeds == s) for s in np.unique(seeds)]
    idx = np.stack([np.concatenate([rng.choice(g, len(g)) for g in groups]) for _ in range(n_boot)])
    return rank_biserial_rows(d[idx]), np.median(d[idx], axis=1)


def rank_biserial_rows(d: np.ndarray) -> np.ndarray:
    """rank_biserial of every row of d [k, n] at once (the same numbers as row by row: rank sums of
    integers and halves are exact)."""
    ranks = rankdata(np.abs(d), axis=1)
    total = ranks.sum(axis=1)
    signed = (ranks * (d > 0)).sum(axis=1) - (ranks * (d < 0)).sum(axis=1)
    any_difference = np.any(d != 0, axis=1)
    return np.where(any_difference, signed / np.where(any_difference, total, 1.0), 0.0)


def compare_paired(pairs: list[tuple[int, pd.DataFrame, pd.DataFrame]], columns: list[str], n_boot: int = 1000,
                   seed: int = 0, correction: str = "holm", level: float = 0.95) -> pd.DataFrame:
    """One row per column: medians, the median paired difference (tuned - base) and the matched-pairs
    rank-biserial effect, each with a 95% bootstrap CI (pairs resampled within seeds), the Wilcoxon
    signed-rank test on the pooled differences, p corrected over the columns, each seed's direction,
    and how much the base outputs vary in the column (testability)."""
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    rows = []
    for col in columns:
        rng = np.random.default_rng([seed, zlib.crc32(col.encode())])  # a column's CI: whatever else is compared
        v = paired_values(pairs, col)
        d = (v["tuned"] - v["base"]).to_numpy()
        row = {"measure": col, "test": PAIRED_TEST, "n_pairs": len(v), "n_seeds": int(v["seed"].nunique())}
        if len(v):
            base_values, tuned_values = v["base"].round(9), v["tuned"].round(9)
            mode = base_values.mode().iloc[0]
            row.update(median_base=float(v["base"].median()), median_tuned=float(v["tuned"].median()),
                       median_difference=float(np.median(d)), rank_biserial=rank_biserial(d),
                       tied_share=float(np.mean(d == 0)), base_mode=float(mode),
                       base_modal_share=float((base_values == mode).mean()),
                       tuned_modal_share=float((tuned_values == mode).mean()))
            stat, p = _signed_rank(d)
            seeds_of = v["seed"].to_numpy()
            row["p_per_seed"] = " ".join(f"{_signed_rank(d[seeds_of == s])[1]:.2g}" for s in sorted(set(seeds_of)))
            row.update(W=float(stat), p=float(p))
            rb, med = _stratified_bootstrap(d, v["seed"].to_numpy(), n_boot, rng)
            row.update(effect_ci_low=float(np.quantile(rb, q[0])), effect_ci_high=float(np.quantile(rb, q[1])),
                       difference_ci_low=float(np.quantile(med, q[0])), difference_ci_high=float(np.quantile(med, q[1])))
            overall = np.sign(row["rank_biserial"])
            per_seed = [np.sign(rank_biserial(d[v["seed"].to_numpy() == s])) for s in sorted(v["seed"].unique())]
            row["seeds_in_direction"] = f"{sum(1 for s in per_seed if s == overall and s != 0)}/{len(per_seed)}"
        else:
            row.update(p=1.0, base_modal_share=1.0, seeds_in_direction="0/0")
        rows.append(row)
    table = pd.DataFrame(rows)
    table["p_adjusted"] = adjust(table["p"].fillna(1.0), correction)
    table["correction"] = correction
    return table


# ------------------------------------------------------------------------------------------------ claims

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


# what one paired-statistics row measured by itself: a significant move up or down in every seed, or neither
MOVEMENTS = ("up", "down", "not significant", "seeds disagree")


def movement(row, alpha: float = 0.05) -> str:
    """What one row measured (MOVEMENTS): up / down when significant after Holm and in every seed's
    direction. The one rule behind the claims' verdicts (judge) and the reward-transfer table."""
    effect = row.get("rank_biserial", np.nan)
    if row["p_adjusted"] >= alpha or not np.isfinite(effect) or effect == 0:
        return "not significant"
    agreeing, seeds = (int(x) for x in str(row["seeds_in_direction"]).split("/"))
    if agreeing < seeds:
        return "seeds disagree"
    return "up" if effect > 0 else "down"


def judge(row, sign: int, alpha: float = 0.05) -> tuple[str, str]:
    """(verdict, reason) for one paired-statistics row against the paper's direction `sign`.

    Not testable here: the measure takes (almost) one value in the base model's outputs (more than
    1 - MIN_VARYING_SHARE of them), unless tuning demonstrably moved it (significant after Holm, in
    every seed): a base model that does not vary a quantity cannot show the paper's shift in it, and a
    null result from it says nothing about the claim. A constant base that tuning does move is tested
    (agrees or opposite; the reason says the base was constant)."""
    n = row["n_pairs"]
    if not n:
        return "not testable here", "no pairs with a value in both base and tuned outputs"
    constant = 1 - MIN_VARYING_SHARE
    note = ""
    if row["base_modal_share"] > constant:
        if row.get("tuned_modal_share", 0.0) > constant:
            return "not testable here", (f"base and tuned outputs hold one value ({row['base_mode']:g}) in "
                                         f"{row['base_modal_share']:.0%} and {row['tuned_modal_share']:.0%} of {n} pairs: "
                                         "the quantity does not vary in either model")
        note = f"; the base outputs hold one value ({row['base_mode']:g}) in {row['base_modal_share']:.0%}"
    ties = f", {row['tied_share']:.0%} of pairs tied" if row.get("tied_share", 0) > 0.25 else ""
    moved = movement(row, alpha)
    agreeing, seeds = (int(x) for x in str(row["seeds_in_direction"]).split("/"))
    if moved not in ("up", "down"):
        if moved == "not significant":
            short = f"Holm-adjusted p = {row['p_adjusted']:.2g}"
            why = f"{short} (not below {alpha})"
        else:
            why = short = f"significant pooled, but only {agreeing} of {seeds} seeds move in that direction"
        if note:  # a constant base, and tuning did not move it: nothing here bears on the claim
            return "not testable here", (f"the base outputs hold one value ({row['base_mode']:g}) in "
                                         f"{row['base_modal_share']:.0%} of {n} pairs, the tuned outputs in "
                                         f"{row.get('tuned_modal_share', float('nan')):.0%}, and tuning did not "
                                         f"move it ({short}{ties}): a base model that does not vary the quantity "
                                         "cannot show the paper's shift")
        return "inconclusive", f"{why}{ties}"
    return ("agrees" if (moved == "up") == (sign > 0) else "opposite"), \
        f"Holm-adjusted p = {row['p_adjusted']:.2g}, {agreeing}/{seeds} seeds{ties}{note}"


def budget_note(truncated_base: float, truncated_tuned: float, max_tokens: int, paper_tokens: int) -> str:
    """What a count claim compares when most completions hit the token budget (from the shares of
    base and tuned completions that reached it without EOS); "" when fewer than half of either did."""
    if min(truncated_base, truncated_tuned) < 0.5:
        return ""
    return (f"{truncated_base:.0%} of base and {truncated_tuned:.0%} of tuned completions reached the "
            f"{max_tokens}-token budget: the count says how many notes the model packs into a fixed budget of "
            f"tokens (the paper's completions had a {paper_tokens}-token cap too), not how long it plays")


def claims_table(stats: pd.DataFrame, reward_axis: str, other_axes: list[str] | tuple[str, ...] = (),
                 alpha: float = 0.05, budget: str = "") -> pd.DataFrame:
    """Each direction the paper states, the direction measured here (paired statistics from
    `compare_paired`), its effect size with CI, and a verdict from VERDICTS with its reason, all
    derived from the data. Counts are judged per second of audio too (PER_SECOND); where the two
    verdicts differ, the reason says so.

    other_axes: the scorer's axes the paper also reports but did not optimise (Audiobox: CU, PC,
    PQ; the paper: they rise too). A stand-in has none: its parts are not the paper's quantities.
    budget: `budget_note(...)`, added to the reason of every count claim (those judged per second)."""
    claims = PAPER_CLAIMS[:1] + [(axis, axis, +1, f"{axis} rises too (not optimised)") for axis in other_axes] \
        + PAPER_CLAIMS[1:]
    # Holm over the claims' own tests (each claim's measure and its per-second rate), not over every
    # feature compared: a claim's verdict must not change when an unrelated feature is added
    family = [reward_axis if m == "__reward__" else m for _, m, _, _ in claims]
    family = [m for m in family + [PER_SECOND[m] for m in family if m in PER_SECOND] if m in set(stats["measure"])]
    by_measure = stats.set_index("measure").loc[family].copy()
    by_measure["p_adjusted"] = holm(by_measure["p"].fillna(1.0))
    rows = []
    for label, measure, sign, text in claims:
        if measure == "__reward__":  # the paper's CE; here whatever the run optimised
            measure = reward_axis
            text = text if reward_axis == "CE" else f"the reward ({reward_axis}; the paper's: CE) rises over training"
        if measure not in by_measure.index:
            continue
        r = by_measure.loc[measure]
        verdict, reason = judge(r, sign, alpha)
        per_second, per_second_verdict = PER_SECOND.get(measure, ""), ""
        if per_second in by_measure.index:
            per_second_verdict, ps_reason = judge(by_measure.loc[per_second], sign, alpha)
            if per_second_verdict != verdict:
                reason += f"; per second of audio: {per_second_verdict} ({ps_reason})"
            if budget:
                reason += f"; {budget}"
        measured = np.sign(r.get("rank_biserial", np.nan)) if np.isfinite(r.get("rank_biserial", np.nan)) else 0
        rows.append({"claim": text, "measure": measure, "test": r["test"], "n_pairs": int(r["n_pairs"]),
                     "paper_direction": "up" if sign > 0 else "down",
                     "measured_direction": {1: "up", -1: "down", 0: "none"}[int(measured)],
                     "median_base": r.get("median_base", np.nan), "median_tuned": r.get("median_tuned", np.nan),
                     "effect": r.get("rank_biserial", np.nan),
                     "effect_ci": f"[{r.get('effect_ci_low', np.nan):.2f}, {r.get('effect_ci_high', np.nan):.2f}]",
                     "tied_share": r.get("tied_share", np.nan), "p_adjusted": r["p_adjusted"],
                     "holm_family": len(by_measure), "seeds_in_direction": r["seeds_in_direction"],
                     "p_per_seed": r.get("p_per_seed", ""),
                     "verdict": verdict, "per_second_verdict": per_second_verdict, "reason": reason})
    table = pd.DataFrame(rows)
    assert table.empty or table["verdict"].isin(VERDICTS).all()
    return table
