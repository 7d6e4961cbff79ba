"""Listening-study statistics: a generative model of ratings (the SIMULATED study), means with CIs,
Wilcoxon, a mixed model with crossed random intercepts and system slopes (with a stated fallback
when the fit is singular), power by simulation at stated effect sizes with its Monte Carlo error,
per-system filter pass counts of the stimuli, agreement with the reward model. Stimuli are made by
stimuli.py; the ratings database and its export live in ratings.py.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd


# ------------------------------------------------------------------------------------------------
# Statistics


@dataclass
class SimulatedStudy:
    """Generative model of a rating: grand mean + system effect + participant offset + prompt
    offset + (participant slope + prompt slope) x system + noise, rounded to the scale and clipped.
    The system is coded -1/2 (base), +1/2 (tuned), as in the analysis model, so a slope is a
    participant's (or prompt's) deviation from the mean tuned - base difference. Every participant
    rates every prompt under both systems. Defaults are illustrative, not estimates; the slopes are
    off by default (and drawn from their own stream, so the other draws do not depend on them)."""
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
    sd_participant_slope: float = 0.0
    sd_prompt_slope: float = 0.0

    @classmethod
    def from_mixed_model(cls, mixed_model: dict, **fields) -> "SimulatedStudy":
        """The generative model with a fitted mixed model's variance components (analyze_ratings's
        result["mixed_model"]; components the fitted structure left out are zero)."""
        sd = {name: float(np.sqrt(max(mixed_model.get(f"var_{name}", 0.0) or 0.0, 0.0)))
              for name in ("participant", "prompt", "participant_slope", "prompt_slope", "residual")}
        return cls(**{f"sd_{k}": v for k, v in sd.items()}, **fields)

    def arrays(self, n_studies: int, rng: np.random.Generator) -> np.ndarray:
        """n_studies independent studies as one integer array (study, participant, prompt, system:
        0 base, 1 tuned), drawn from rng."""
        shape = (n_studies, self.n_participants, self.n_prompts)
        u_part = rng.normal(0, self.sd_participant, shape[:2])[:, :, None, None]
        u_prompt = rng.normal(0, self.sd_prompt, (n_studies, self.n_prompts))[:, None, :, None]
        b_part = rng.normal(0, self.sd_participant_slope, shape[:2])[:, :, None, None]
        b_prompt = rng.normal(0, self.sd_prompt_slope, (n_studies, self.n_prompts))[:, None, :, None]
        noise = rng.normal(0, self.sd_residual, shape + (2,))
        x = np.array([-0.5, 0.5])
        value = self.grand_mean + (x + 0.5) * self.effect + u_part + u_prompt + (b_part + b_prompt) * x + noise
        return np.clip(np.round(value), self.scale_min, self.scale_max).astype(int)

    def draw(self) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        u_part = rng.normal(0, self.sd_participant, self.n_participants)
        u_prompt = rng.normal(0, self.sd_prompt, self.n_prompts)
        noise = rng.normal(0, self.sd_residual, (self.n_participants, self.n_prompts, 2))
        slopes = np.random.default_rng([self.seed, 1])  # its own stream: the draws above stay as they were
        b_part = slopes.normal(0, self.sd_participant_slope, self.n_participants)
        b_prompt = slopes.normal(0, self.sd_prompt_slope, self.n_prompts)
        x = np.array([-0.5, 0.5])
        value = (self.grand_mean + np.array([0.0, self.effect]) + u_part[:, None, None] + u_prompt[None, :, None]
                 + (b_part[:, None, None] + b_prompt[None, :, None]) * x + noise)
        rating = np.clip(np.round(value), self.scale_min, self.scale_max).astype(int)
        p, k, s = np.meshgrid(np.arange(self.n_participants), np.arange(self.n_prompts), np.arange(2), indexing="ij")
        systems = np.array(["base", "tuned"])[s.ravel()]
        prompts = np.char.mod("%02d", k.ravel())
        return pd.DataFrame({"participant": np.char.add("P", np.char.mod("%02d", p.ravel())),
                             "prompt": np.char.add("prompt", prompts), "system": systems,
                             "stimulus": np.char.add(np.char.add(systems, "-"), prompts),
                             "rating": rating.ravel()})


def _participant_means(df: pd.DataFrame) -> pd.DataFrame:
    return df.pivot_table(index="participant", columns="system", values="rating", aggfunc="mean")


# The random-effects structures tried, richest first: each system slope is a variance component of
# its own (uncorrelated with the intercepts, lme4's `||`), the participant and prompt effects crossed.
MIXED_STRUCTURES = (
    ("intercepts + system slopes for participant and prompt", ("participant", "participant_slope", "prompt", "prompt_slope")),
    ("intercepts + system slope for participant (prompt slope dropped)", ("participant", "participant_slope", "prompt")),
    ("intercepts + system slope for prompt (participant slope dropped)", ("participant", "prompt", "prompt_slope")),
    ("intercepts only", ("participant", "prompt")),
)
_VC_FORMULA = {"participant": "0 + C(participant)", "participant_slope": "0 + C(participant):x",
               "prompt": "0 + C(prompt)", "prompt_slope": "0 + C(prompt):x"}
_VC_LABEL = {"participant": "participant intercept", "participant_slope": "participant slope",
             "prompt": "prompt intercept", "prompt_slope": "prompt slope"}
# a variance component whose SD is below this fraction of the residual SD is taken as zero: the fit
# sits on the boundary of the parameter space (singular), as lme4's isSingular (looser: statsmodels'
# optimiser stops near, not at, zero)
BOUNDARY_SD_RATIO = 1e-3


def _fit_structure(df: pd.DataFrame, components: tuple[str, ...]) -> tuple[object, list[str], list[str]]:
    """Fit one structure by REML. Returns (fit or None, problems, names of the components) where
    problems lists why the fit is not usable: an error, no convergence, a Hessian that is not
    positive definite, a variance component at the boundary, a NaN standard error."""
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = smf.mixedlm("rating ~ x", df, groups="all", vc_formula={c: _VC_FORMULA[c] for c in components})
            # Nelder-Mead: L-BFGS (statsmodels' default) often stops short of the REML optimum when a
            # component nears zero (checked against balanced_mixed_model, the exact optimum)
            fit = model.fit(reml=True, method=["nm", "powell"], maxiter=5000)
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as err:
            return None, [f"fit failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"], []
    for w in caught:
        text = str(w.message)
        if "not positive definite" in text:
            problems.append("Hessian not positive definite")
        elif "Gradient optimization failed" in text:
            problems.append("optimisation failed")
        elif w.category.__name__ == "SingularMatrixWarning":
            problems.append("singular covariance of the estimates")
        elif issubclass(w.category, ConvergenceWarning) or "boundary" in text or "Retrying" in text:
            continue  # the boundary is checked below with a scale-free rule; a retry that converged is fine
    if not fit.converged and "optimisation failed" not in problems:
        problems.append("did not converge")
    names = list(model.exog_vc.names)
    vc = dict(zip(names, np.atleast_1d(fit.vcomp)))
    resid_sd = np.sqrt(max(float(fit.scale), 1e-300))
    for name in components:
        if not np.isfinite(vc[name]) or np.sqrt(max(vc[name], 0.0)) < BOUNDARY_SD_RATIO * resid_sd:
            problems.append(f"{_VC_LABEL[name]} variance at the boundary ({vc[name]:.1e})")
    if not (np.isfinite(fit.bse["x"]) and np.isfinite(fit.pvalues["x"])):
        problems.append("NaN standard error of the system effect")
    return fit, list(dict.fromkeys(problems)), names


def fit_mixed_model(df: pd.DataFrame, systems: tuple[str, str] = ("base", "tuned"), verbose: bool = True) -> dict:
    """rating ~ system with crossed random intercepts and random system slopes for participant and
    for prompt (REML; statsmodels MixedLM, one group, the crossed effects as variance components;
    system coded -1/2 base, +1/2 tuned, so the coefficient is tuned - base). When a fit is singular
    (a variance component at the boundary), does not converge, has a Hessian that is not positive
    definite or a NaN standard error, the next simpler structure of MIXED_STRUCTURES is fitted:
    prompt slope dropped, then participant slope dropped, then intercepts only (kept even if it too
    is singular, saying so). The structure used and the reasons are in "structure" and
    "fallback_reason" ("" when the full model was used); with verbose the reason is printed once."""
    base, tuned = systems
    df = df[df["system"].isin(systems)].copy()
    df["x"] = np.where(df["system"] == tuned, 0.5, -0.5)
    df["all"] = 1
    rejected = []
    for i, (structure, components) in enumerate(MIXED_STRUCTURES):
        fit, problems, names = _fit_structure(df, components)
        last = i == len(MIXED_STRUCTURES) - 1
        if fit is None and last:
            raise RuntimeError(f"mixed model: no structure could be fitted ({'; '.join(rejected + problems)})")
        if not problems or last:
            break
        rejected.append(f"{structure}: {', '.join(problems)}")
    if problems:
        rejected.append(f"{structure}: {', '.join(problems)} (kept: the simplest structure)")
    reason = "; ".join(rejected)
    if reason and verbose:
        print(f"mixed model fell back to '{structure}': {reason}")
    vc = dict(zip(names, np.atleast_1d(fit.vcomp)))
    ci = fit.conf_int().loc["x"].astype(float).tolist()
    return {"effect": float(fit.params["x"]), "se": float(fit.bse["x"]), "ci_low": ci[0], "ci_high": ci[1],
            "p": float(fit.pvalues["x"]), "intercept": float(fit.params["Intercept"]),
            **{f"var_{c}": float(vc.get(c, 0.0)) for c in _VC_FORMULA}, "var_residual": float(fit.scale),
            "structure": structure, "fallback_reason": reason, "singular": bool(problems),
            "components": list(components)}


def analyze_ratings(df: pd.DataFrame, systems: tuple[str, str] = ("base", "tuned"), verbose: bool = True) -> dict:
    """Means with 95% CIs, Wilcoxon signed-rank on per-participant mean differences, the linear
    mixed model of fit_mixed_model (crossed random intercepts and system slopes for participant and
    prompt, with its fallback), and a standardised effect size (system effect / SD of one rating
    implied by the model: the slopes count with the system coded +-1/2)."""
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
    mm = fit_mixed_model(df, systems, verbose=verbose)
    total_var = (mm["var_participant"] + mm["var_prompt"] + 0.25 * (mm["var_participant_slope"] + mm["var_prompt_slope"])
                 + mm["var_residual"])
    total_sd = float(np.sqrt(total_var))
    return {
        "systems": summary,
        "mean_difference": float(diff.mean()),
        "wilcoxon": {"statistic": float(w.statistic) if w else np.nan, "p": float(w.pvalue) if w else 1.0,
                     "n_participants": int(len(diff))},
        "mixed_model": mm,
        "standardised_effect": mm["effect"] / total_sd if total_sd > 0 else np.nan,
    }


def balanced_mixed_model(ratings: np.ndarray) -> dict:
    """fit_mixed_model in closed form for complete balanced studies, vectorised over studies.

    ratings: (studies, participants, prompts, 2) as SimulatedStudy.arrays (every participant rates
    every prompt once under each system). In such a design the REML likelihood of the model factors
    over six orthogonal strata: participants, prompts and their interaction, once in the cell sums
    (tuned + base: the intercepts) and once in the cell differences (tuned - base: the slopes). Each
    variance component is either interior, its stratum's expected mean square then equal to the
    observed one, or at zero, its stratum then pooled with the residual; the REML optimum is the best
    of these 16 candidate solutions that is feasible. As fit_mixed_model, a zero intercept variance
    leaves the intercepts-only structure. The effect is the mean cell difference, its variance
    (MS_participant_slope + MS_prompt_slope - MS_residual) / (participants x prompts) with the
    dropped strata at the residual's level, and p the Wald z test, as statsmodels reports it.
    Returns arrays effect, se, p and keep (studies x 4: participant, prompt intercepts, participant,
    prompt slopes)."""
    from scipy import stats

    r = np.asarray(ratings, dtype=float)
    n, P, K, _ = r.shape
    if P < 2 or K < 2:
        raise ValueError("balanced_mixed_model needs at least 2 participants and 2 prompts")

    def strata(a):  # two-way ANOVA sums of squares of (studies, P, K)
        g = a.mean(axis=(1, 2), keepdims=True)
        rows, cols = a.mean(axis=2, keepdims=True), a.mean(axis=1, keepdims=True)
        return (K * ((rows - g) ** 2).sum(axis=(1, 2)), P * ((cols - g) ** 2).sum(axis=(1, 2)),
                ((a - rows - cols + g) ** 2).sum(axis=(1, 2)))

    d = r[..., 1] - r[..., 0]
    ss_pm, ss_km, ss_em = strata(r[..., 1] + r[..., 0])
    ss_pd, ss_kd, ss_ed = strata(d)
    ss = np.stack([ss_pm, ss_km, ss_pd, ss_kd], axis=1)
    df = np.array([P - 1, K - 1, P - 1, K - 1], dtype=float)
    subsets = ((np.arange(16)[:, None] >> np.arange(4)) & 1).astype(bool)  # which components are kept
    subsets = subsets[~(~subsets[:, :2].all(axis=1) & subsets[:, 2:].any(axis=1))]  # an intercept dropped: no slopes
    best = np.full(n, -np.inf)
    keep = np.zeros((n, 4), dtype=bool)
    lam_e = np.zeros(n)
    for subset in subsets:
        df_e = 2 * (P - 1) * (K - 1) + df[~subset].sum()
        resid = np.maximum((ss_em + ss_ed + ss[:, ~subset].sum(axis=1)) / df_e, 1e-12)
        lam = np.maximum(ss[:, subset] / df[subset], 1e-12)
        feasible = (lam >= resid[:, None]).all(axis=1)
        loglik = -(df[subset] * np.log(lam)).sum(axis=1) - df_e * np.log(resid)
        better = feasible & (loglik > best)
        best[better], lam_e[better] = loglik[better], resid[better]
        keep[better] = subset
    ms_pd = np.where(keep[:, 2], ss_pd / (P - 1), lam_e)
    ms_kd = np.where(keep[:, 3], ss_kd / (K - 1), lam_e)
    effect = d.mean(axis=(1, 2))
    se = np.sqrt((ms_pd + ms_kd - lam_e) / (P * K))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * stats.norm.sf(np.abs(effect) / se), np.where(effect == 0, 1.0, 0.0))
    return {"effect": effect, "se": se, "p": p, "keep": keep}


POWER_TESTS = {
    "mixed": "mixed model (REML, Wald z; exact closed form for the balanced simulated design)",
    "mixed_statsmodels": "mixed model (fit_mixed_model per study, with its fallback)",
    "wilcoxon": "Wilcoxon signed-rank on participant mean differences",
}


def wilson_interval(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (stays inside [0, 1] and is not empty at 0 or n)."""
    if n == 0:
        return np.nan, np.nan
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def power_at_effects(effects, participants, model: SimulatedStudy, n_sim: int = 100, alpha: float = 0.05,
                     test: str = "mixed", seed: int = 0) -> pd.DataFrame:
    """Power by simulation at STATED effect sizes (tuned - base, in rating points), never at the
    observed one: for each effect and number of participants, n_sim studies are drawn from the
    generative model `model` (a SimulatedStudy: its variance components, prompts, grand mean and
    scale; its effect and participants are replaced) and tested at level alpha. Power is the share of
    studies with p < alpha; its Monte Carlo standard error is sqrt(power (1 - power) / n_sim) and
    ci_low / ci_high the 95% Wilson interval of that share.

    test="mixed" (the default) is the analysis that is run, the mixed model, in its exact closed
    form for the balanced design (balanced_mixed_model, vectorised): fitting statsmodels per study
    (test="mixed_statsmodels") gives the same estimates (to 1e-4) but, measured on a shared 2-core
    CPU, took 0.3 s a study at 14 participants x 15 prompts and 2.3 s at 40 (up to 28 s under load),
    so the small profile's 3 effects x 6 sizes x 100 studies would take about half an hour; the
    closed form does that grid in 0.1 s. test="wilcoxon" is the Wilcoxon signed-rank test on
    participant mean differences; it treats prompts as fixed, so with prompt slope variance its
    false-positive rate exceeds alpha (0.12 at 40 participants, prompt slope SD 0.3, alpha 0.05).
    The same random draws are used for every effect at a given size (common random numbers), so the
    curves differ by the effect alone."""
    if test not in POWER_TESTS:
        raise ValueError(f"test={test!r}: one of {sorted(POWER_TESTS)}")
    rows = []
    for n in participants:
        rng_seed = [int(seed), int(n)]
        for effect in effects:
            study = replace(model, effect=float(effect), n_participants=int(n))
            ratings = study.arrays(n_sim, np.random.default_rng(rng_seed))
            if test == "mixed":
                p = balanced_mixed_model(ratings)["p"]
            elif test == "wilcoxon":
                p = wilcoxon_p(ratings[..., 1].mean(axis=2) - ratings[..., 0].mean(axis=2))
            else:
                p = np.array([fit_mixed_model(_ratings_frame(r), verbose=False)["p"] for r in ratings])
            hits = int(np.sum(p < alpha))
            power = hits / n_sim
            low, high = wilson_interval(hits, n_sim)
            rows.append({"effect": float(effect), "participants": int(n), "n_prompts": model.n_prompts,
                         "n_sim": int(n_sim), "hits": hits, "power": power,
                         "mc_se": float(np.sqrt(power * (1 - power) / n_sim)), "ci_low": low, "ci_high": high,
                         "alpha": alpha, "test": POWER_TESTS[test]})
    return pd.DataFrame(rows)


def wilcoxon_p(differences: np.ndarray) -> np.ndarray:
    """Two-sided p of the Wilcoxon signed-rank test of each row of `differences` (studies x
    participants), equal to scipy.stats.wilcoxon's default (zeros dropped, mid-ranks; 1.0 when every
    difference is zero, as analyze_ratings). Up to 13 participants scipy runs a permutation test
    that takes up to seconds a call when there are ties; here the same 2^n sign flips are enumerated
    for all rows at once."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    n_rows, n = d.shape
    nonzero = d != 0
    if n > 13:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.array([stats.wilcoxon(row).pvalue if row.any() else 1.0 for row in d], dtype=float)
    ranks = np.where(nonzero, stats.rankdata(np.where(nonzero, np.abs(d), np.nan), axis=1, nan_policy="omit"), 0.0)
    observed = (ranks * (d > 0)).sum(axis=1)
    signs = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(float)
    null = signs @ ranks.T  # every sign pattern's positive-rank sum: the exact conditional null
    p = np.minimum(1.0, 2 * np.minimum((null <= observed).mean(axis=0), (null >= observed).mean(axis=0)))
    return np.where(nonzero.any(axis=1), p, 1.0)


def _ratings_frame(r: np.ndarray) -> pd.DataFrame:
    """One study of SimulatedStudy.arrays as the long table analyze_ratings reads."""
    p, k, s = np.meshgrid(*(np.arange(n) for n in r.shape), indexing="ij")
    return pd.DataFrame({"participant": p.ravel(), "prompt": k.ravel(),
                         "system": np.array(["base", "tuned"])[s.ravel()], "rating": r.ravel()})


def filter_pass_table(key: pd.DataFrame, max_attempts: int | None = None) -> pd.DataFrame:
    """Per system (and all together): how many stimuli, how many passed the paper's filters (at
    least one note, no empty beat, at least 8 s) and their share, the mean and largest number of
    generation attempts, and how many used all max_attempts without passing (kept after the last
    regeneration). From the study's private/key.csv; columns it lacks give NaN."""
    from .stimuli import filter_failures

    key = key.copy()
    has_flag, has_attempt = "passed_filters" in key.columns, "attempt" in key.columns
    key["_passed"] = (~filter_failures(key)).astype(float) if has_flag else np.nan
    key["_attempt"] = pd.to_numeric(key["attempt"], errors="coerce") if has_attempt else np.nan
    limit = max_attempts if max_attempts is not None else (key["_attempt"].max() if has_attempt else np.nan)
    key["_exhausted"] = ((key["_passed"] == 0) & (key["_attempt"] >= limit)).astype(float) \
        if has_flag and has_attempt else np.nan
    rows = []
    for system, part in [*key.groupby("system", sort=True), ("all", key)]:
        n = len(part)
        rows.append({"system": system, "stimuli": n,
                     "passed_filters": int(part["_passed"].sum()) if has_flag else np.nan,
                     "share_passed": float(part["_passed"].mean()) if has_flag and n else np.nan,
                     "mean_attempts": float(part["_attempt"].mean()) if has_attempt and n else np.nan,
                     "max_attempts": int(part["_attempt"].max()) if has_attempt and n else np.nan,
                     "failed_after_max_attempts": int(part["_exhausted"].sum()) if has_flag and has_attempt else np.nan,
                     "attempt_limit": limit})
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
