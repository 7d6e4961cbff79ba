"""What GRPO's design choices do to the diversity collapse (notebook 05, `make beyond`).

Each variant is the `long` run (beta 0.04) with one change (config.ABLATIONS): advantages scaled by
the step's std or not at all, one importance ratio per sequence (GSPO), no loss on truncated
completions, Dr. GRPO's constant normaliser, an entropy bonus, a group diversity bonus. Same seed,
so the same prompts and sampling streams; every evaluation answers the same evaluation prompts as
the base model and the baseline, so each comparison is paired by prompt:

    reward    the paired mean difference to the baseline (the unchanged GRPO at the variants' steps:
              `long` itself by default), with a 95% bootstrap CI over prompts; when the variants run
              fewer steps than `long`, also the paired difference to `long` itself;
    diversity the paired differences to the base model in pairwise profile distance and Vendi score,
              with 95% bootstrap CIs (the same resampled prompts for both sets).

The question, answered from these numbers: does any setting reach the baseline's reward (its
paired difference not significantly below 0) while keeping the base model's diversity (neither
diversity difference significantly below 0)?
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .config import ABLATION_PREFIX, Config
from .diversity import output_set_summary, paired_difference
from .runs import RunDir
from .stats import mean_with_interval

PAPER_RUNS = ("smart", "long", "long_beta0")
LONG_RUN = "long"  # the run the variants change; with fewer ablation_steps, also compared with it


def changes_text(cfg: Config, run_name: str) -> str:
    """What a row is: an ablation's changes (key=value), or the paper's run's steps and beta."""
    if run_name.startswith(ABLATION_PREFIX):
        variant = cfg.ablations[run_name[len(ABLATION_PREFIX):]]
        return ", ".join(f"{k}={v}" for k, v in variant.items()) or "none (the paper's GRPO)"
    run = cfg.for_run(run_name)
    return f"the paper's {run_name} run (beta {run.beta})"


def _paired_reward_difference(base: pd.DataFrame, other: pd.DataFrame, n_boot: int, seed: int) -> tuple:
    if len(base) != len(other) or not (base["prompt"].to_numpy() == other["prompt"].to_numpy()).all():
        raise ValueError("the evaluations to compare do not answer the same prompts in the same order")
    return mean_with_interval(other["reward"].to_numpy() - base["reward"].to_numpy(), n_boot, seed)


def ablation_table(cfg: Config, base: pd.DataFrame, evaluations: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row for the base model and one per run (the paper's runs, then the variants) with its
    evaluation: reward and diversity with 95% intervals, the paired differences (reward against the
    baseline, diversity against the base model) and the two yes/no answers for the variants.
    evaluations: run name -> its final evaluation table (same prompts as `base`, in order)."""
    baseline = cfg.ablation_baseline()
    if baseline not in evaluations:
        raise ValueError(f"the baseline run {baseline!r} has no evaluation: train it first (make beyond)")
    n_boot, seed = cfg.diversity_bootstrap, cfg.seed
    base_midis = [Path(p).read_bytes() for p in base["midi_path"]]
    rows = [{"system": "base", "run": "", "changes": "the base model", "steps": 0, "reward_evaluations": 0,
             **output_set_summary(base, n_boot, seed)}]
    for name, table in evaluations.items():
        run_cfg = cfg.for_run(name)
        steps = RunDir.for_run(cfg, name).steps()
        row = {"system": name[len(ABLATION_PREFIX):] if name.startswith(ABLATION_PREFIX) else name, "run": name,
               "changes": changes_text(cfg, name), "steps": run_cfg.steps,
               "reward_evaluations": run_cfg.steps * run_cfg.completions_per_step,
               "kl_last5": float(steps["kl"].dropna().tail(5).mean()) if "kl" in steps and len(steps) else np.nan,
               # completions that reached the token budget (no EOS), over the run's training steps
               "truncated_share": float(steps["n_truncated"].sum() / (len(steps) * run_cfg.completions_per_step))
               if len(steps) else np.nan,
               **output_set_summary(table, n_boot, seed)}
        diff, low, high = _paired_reward_difference(evaluations[baseline], table, n_boot, seed)
        row.update(reward_vs_baseline=diff, reward_vs_baseline_ci_low=low, reward_vs_baseline_ci_high=high)
        if baseline != LONG_RUN and LONG_RUN in evaluations:  # shorter variants: the question is long's reward
            diff, low, high = _paired_reward_difference(evaluations[LONG_RUN], table, n_boot, seed)
            row.update(reward_vs_long=diff, reward_vs_long_ci_low=low, reward_vs_long_ci_high=high)
        midis = [Path(p).read_bytes() for p in table["midi_path"]]
        for key, value in paired_difference(base_midis, midis, n_boot, seed).items():
            row[key.replace("_difference", "_vs_base")] = value
        rows.append(row)
    out = pd.DataFrame(rows)
    is_run = out["run"] != ""
    # "reaches": not significantly below the baseline's reward; "keeps": neither diversity measure
    # significantly below the base model's (the upper 95% bound at or above 0); the base row: ""
    def yes_no(*bounds):  # "n/a" without an interval (diversity_bootstrap = 0): nothing to decide on
        known = np.logical_and.reduce([np.isfinite(b.astype(float)) for b in bounds])
        holds = np.logical_and.reduce([b.astype(float) >= 0 for b in bounds])
        return np.where(~is_run, "", np.where(~known, "n/a", np.where(holds, "yes", "no")))

    out["reaches_baseline_reward"] = yes_no(out["reward_vs_baseline_ci_high"])
    if "reward_vs_long_ci_high" in out:
        out["reaches_long_reward"] = yes_no(out["reward_vs_long_ci_high"])
    out["keeps_base_diversity"] = yes_no(out["pairwise_distance_vs_base_ci_high"], out["vendi_vs_base_ci_high"])
    out["is_ablation"] = out["run"].str.startswith(ABLATION_PREFIX)
    out["baseline"] = baseline
    return out


def answer(table: pd.DataFrame, configured: list[str] | None = None) -> dict:
    """The question's answer from the table: the variants that do both, the closest ones, those
    without intervals to decide on ("n/a"), and the `configured` variant runs with no evaluation yet."""
    variants = table[table["is_ablation"] & (table["run"] != table["baseline"])]
    undecided = variants[(variants["reaches_baseline_reward"] == "n/a") | (variants["keeps_base_diversity"] == "n/a")]
    missing = [r.removeprefix(ABLATION_PREFIX) for r in configured or [] if r not in set(table["run"])
               and r != table["baseline"].iloc[0]]
    both = variants[(variants["reaches_baseline_reward"] == "yes") & (variants["keeps_base_diversity"] == "yes")]
    keeping = variants[variants["keeps_base_diversity"] == "yes"]
    reaching = variants[variants["reaches_baseline_reward"] == "yes"]
    return {"baseline": str(table["baseline"].iloc[0]), "n_variants": len(variants), "both": list(both["system"]),
            "undecided": list(undecided["system"]), "missing": missing,
            "keeping": list(keeping["system"]), "reaching": list(reaching["system"]),
            "best_keeping": None if keeping.empty else keeping.sort_values("mean_reward").iloc[-1]["system"],
            "most_diverse_reaching": None if reaching.empty else
            reaching.sort_values("pairwise_distance").iloc[-1]["system"]}
