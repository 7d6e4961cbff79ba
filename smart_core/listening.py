"""Listening-study statistics: a generative model of ratings (the SIMULATED study), means with CIs,
Wilcoxon, a mixed model, power by simulation, agreement with the reward model. Stimuli are made by
stimuli.py; the ratings database and its export live in ratings.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


# ------------------------------------------------------------------------------------------------
# Statistics


@dataclass
class SimulatedStudy:
    """Generative model of a rating: grand mean + system effect + participant offset + prompt
    offset + noise, rounded to the scale and clipped. Defaults are illustrative, not estimates."""
    n_participants: int = 14
    n_prompts: int = 15
    grand_mean: float = 5.5
    effect: float = 0.8           # tuned - base, in scale points
    sd_participant: float = 1.0
    sd_prompt: float = 0.6
    sd_residual: float = 1.5
    scale_min: int = 1
    scale_max: int = 10
    seed: int = 0

    def draw(self) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        u_part = rng.normal(0, self.sd_participant, self.n_participants)
        u_prompt = rng.normal(0, self.sd_prompt, self.n_prompts)
        rows = []
        for p in range(self.n_participants):
            for k in range(self.n_prompts):
                for system, shift in (("base", 0.0), ("tuned", self.effect)):
                    value = self.grand_mean + shift + u_part[p] + u_prompt[k] + rng.normal(0, self.sd_residual)
                    rows.append({"participant": f"P{p:02d}", "prompt": f"prompt{k:02d}", "system": system,
                                 "stimulus": f"{system}-{k:02d}",
                                 "rating": int(np.clip(np.round(value), self.scale_min, self.scale_max))})
        return pd.DataFrame(rows)


def _participant_means(df: pd.DataFrame) -> pd.DataFrame:
    return df.pivot_table(index="participant", columns="system", values="rating", aggfunc="mean")


def analyze_ratings(df: pd.DataFrame, systems: tuple[str, str] = ("base", "tuned")) -> dict:
    """Means with 95% CIs, Wilcoxon signed-rank on per-participant mean differences, a linear
    mixed model rating ~ system with crossed random intercepts for participant and prompt, and a
    standardised effect size (system effect / total SD implied by the model)."""
    import statsmodels.formula.api as smf
    from scipy import stats

    base, tuned = systems
    df = df[df["system"].isin(systems)].copy()
    pm = _participant_means(df)
    summary = {}
    for s in systems:
        values = pm[s].dropna()
        half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.nan
        summary[s] = {"mean": float(values.mean()), "ci_low": float(values.mean() - half), "ci_high": float(values.mean() + half),
                      "n_participants": int(len(values))}
    diff = (pm[tuned] - pm[base]).dropna()
    w = stats.wilcoxon(diff) if len(diff) > 0 and np.any(diff != 0) else None
    df["is_tuned"] = (df["system"] == tuned).astype(float)
    df["all"] = 1
    model = smf.mixedlm("rating ~ is_tuned", df, groups="all",
                        vc_formula={"participant": "0 + C(participant)", "prompt": "0 + C(prompt)"})
    fit = model.fit(reml=True, method=["lbfgs", "powell"])
    coef = float(fit.params["is_tuned"])
    ci = fit.conf_int().loc["is_tuned"].astype(float).tolist()
    vc = dict(zip(model.exog_vc.names, np.atleast_1d(fit.vcomp)))
    total_sd = float(np.sqrt(sum(vc.values()) + fit.scale))
    return {
        "systems": summary,
        "mean_difference": float(diff.mean()),
        "wilcoxon": {"statistic": float(w.statistic) if w else np.nan, "p": float(w.pvalue) if w else 1.0,
                     "n_participants": int(len(diff))},
        "mixed_model": {"effect": coef, "ci_low": ci[0], "ci_high": ci[1], "p": float(fit.pvalues["is_tuned"]),
                        "var_participant": float(vc.get("participant", np.nan)), "var_prompt": float(vc.get("prompt", np.nan)),
                        "var_residual": float(fit.scale)},
        "standardised_effect": coef / total_sd if total_sd > 0 else np.nan,
    }


def power_curve(effect: float, var_participant: float, var_prompt: float, var_residual: float,
                participants=(6, 10, 14, 20, 30, 40), n_prompts: int = 15, n_sim: int = 200, alpha: float = 0.05,
                seed: int = 0) -> pd.DataFrame:
    """P(detect) by simulation under the given variance components. Each simulated study is tested
    with the Wilcoxon signed-rank test on per-participant mean differences (a mixed model per
    simulation would be far slower and answers nearly the same)."""
    from scipy import stats

    rows = []
    for n in participants:
        hits = 0
        for i in range(n_sim):
            sim = SimulatedStudy(n_participants=n, n_prompts=n_prompts, effect=effect,
                                 sd_participant=np.sqrt(max(var_participant, 0)), sd_prompt=np.sqrt(max(var_prompt, 0)),
                                 sd_residual=np.sqrt(max(var_residual, 1e-9)), seed=seed * 100_003 + n * 1000 + i).draw()
            pm = _participant_means(sim)
            d = pm["tuned"] - pm["base"]
            if np.any(d != 0) and stats.wilcoxon(d).pvalue < alpha:
                hits += 1
        rows.append({"participants": n, "power": hits / n_sim, "effect": effect, "n_prompts": n_prompts})
    return pd.DataFrame(rows)


def rating_reward_agreement(ratings: pd.DataFrame, key: pd.DataFrame, axis: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Spearman correlation (bootstrap 95% CI over stimuli) between each stimulus's mean human
    rating and its reward-model score on `axis`."""
    from scipy.stats import spearmanr

    per = ratings.groupby("stimulus")["rating"].mean().rename("mean_rating").reset_index().merge(
        key[["stimulus", axis]], on="stimulus")
    rho = float(spearmanr(per["mean_rating"], per[axis]).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(per), len(per))
        r = spearmanr(per["mean_rating"].iloc[idx], per[axis].iloc[idx]).statistic
        if np.isfinite(r):
            boots.append(r)
    lo, hi = np.quantile(boots, [0.025, 0.975]) if boots else (np.nan, np.nan)
    return {"spearman": rho, "ci_low": float(lo), "ci_high": float(hi), "n_stimuli": int(len(per)), "axis": axis,
            "table": per}
