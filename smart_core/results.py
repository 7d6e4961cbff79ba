"""The results text of the README and of paper/, generated from the tables (never typed by hand).

`write_discussion` turns the claims table into a paragraph (Markdown and LaTeX, one set of
sentences); `readme_block` renders a profile's results section from its CSVs; `update_readme`
puts that section between the README's markers, and the test suite checks that the committed
README says what the committed CSVs say, row by row.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .stats import VERDICTS

MARKERS = ("<!-- generated:results:{profile} -->", "<!-- /generated:results:{profile} -->")


def join_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def discussion_sentences(claims: pd.DataFrame) -> list[str]:
    """What the claims table says, in sentences: how many claims fall under each verdict, which,
    and why those that cannot be tested here cannot; where per-second and raw verdicts differ."""
    if claims.empty:
        return ["No claim could be checked: the evaluation sets are missing."]
    test, n = claims["test"].iloc[0], len(claims)
    counts = {v: claims[claims["verdict"] == v] for v in VERDICTS}
    wording = {"agrees": "agree{s} with the paper", "opposite": "go{es} the opposite way",
               "inconclusive": "{are} inconclusive", "not testable here": "cannot be tested here"}
    parts = []
    for verdict, rows in counts.items():
        if len(rows):
            one = len(rows) == 1
            text = wording[verdict].format(s="s" if one else "", es="es" if one else "", are="is" if one else "are")
            parts.append(f"{len(rows)} {text} ({join_words(list(rows['claim']))})")
    pairs = sorted(set(claims["n_pairs"].astype(int)))
    pairs = f"{pairs[0]} pairs" if len(pairs) == 1 else f"{pairs[0]}-{pairs[-1]} pairs"
    out = [f"Of the paper's {n} claims checked ({test}; {pairs}), {join_words(parts)}."]
    for _, row in counts["not testable here"].iterrows():
        out.append(f"Not testable here: \"{row['claim']}\", because {row['reason']}.")
    for _, row in claims[(claims["per_second_verdict"].fillna("") != "") &
                         (claims["per_second_verdict"] != claims["verdict"])].iterrows():
        out.append(f"\"{row['claim']}\" is {row['verdict']} as a count but {row['per_second_verdict']} per second "
                   f"of the piece: the two measure different things when the pieces' lengths change.")
    return out


def _latex(text: str) -> str:
    from .plots import latex_escape

    return re.sub(r'"([^"]*)"', r"``\1''", latex_escape(text))


def write_discussion(claims: pd.DataFrame, out_dir: Path, stamp: str, notes: list[str] = ()) -> list[Path]:
    """claims_discussion.md and claims_discussion.tex in out_dir, from the claims table (and `notes`,
    sentences about the data behind it, e.g. how many replicates were evaluated)."""
    sentences = discussion_sentences(claims) + list(notes)
    md, tex = Path(out_dir) / "claims_discussion.md", Path(out_dir) / "claims_discussion.tex"
    md.write_text(" ".join(sentences) + f"\n\n<sub>{stamp}</sub>\n")
    tex.write_text(f"% {stamp}\n" + " ".join(_latex(s) for s in sentences) + "\n")
    return [md, tex]


# ------------------------------------------------------------------------------------------------ beyond


def bracket(low, high) -> str:
    """An interval as "[low, high]" (3 significant digits), or "" when a bound is missing: the one way
    the tables and the sentences print a confidence interval."""
    known = low is not None and high is not None and np.isfinite(float(low)) and np.isfinite(float(high))
    return f"[{low:.3g}, {high:.3g}]" if known else ""


def _ci(row, metric: str) -> str:
    text = bracket(row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high"))
    return f" {text}" if text else ""


def best_of_n_sentences(table: pd.DataFrame) -> list[str]:
    """Best-of-N against the tuned runs, from the best_of_n table."""
    from .best_of_n import smallest_n_reaching

    bon, tuned = table[table["N"].notna()].sort_values("N"), table[table["N"].isna()]
    first, top = bon.iloc[0], bon.iloc[-1]
    n_prompts = int(first["reward_evaluations"] / first["N"])
    out = [f"Best-of-N from the base model (the same {n_prompts} evaluation prompts as the tuned runs): the mean reward "
           f"goes from {first['mean_reward']:.3g}{_ci(first, 'mean_reward')} at N = 1 to {top['mean_reward']:.3g}"
           f"{_ci(top, 'mean_reward')} at N = {int(top['N'])}, which spends {int(top['reward_evaluations'])} reward "
           f"evaluations."]
    for _, row in tuned.iterrows():
        reached = smallest_n_reaching(table, row["mean_reward"])
        how = (f"best-of-{reached} reaches it with {reached * n_prompts} evaluations at inference" if reached else
               f"no N up to {int(top['N'])} reaches it")
        out.append(f"{row['system']} has {row['mean_reward']:.3g}{_ci(row, 'mean_reward')} after "
                   f"{int(row['reward_evaluations'])} training rollouts (none at inference): {how}.")
    tuned_text = "; ".join(f"{r['system'].split(':')[0]} {r['pairwise_distance']:.3g}" for _, r in tuned.iterrows())
    out.append(f"Diversity (pairwise profile distance): best-of-{int(top['N'])} {top['pairwise_distance']:.3g}"
               f"{_ci(top, 'pairwise_distance')}, N = 1 {first['pairwise_distance']:.3g}"
               f"{_ci(first, 'pairwise_distance')}" + (f"; the tuned runs: {tuned_text}." if tuned_text else "."))
    return out


def transfer_sentences(table: pd.DataFrame, run_scorer: str, primary_axis: str, cross_note: str = "") -> list[str]:
    """Whether each run family's change on the training font survives the unheard SoundFonts, from the
    reward_transfer table; cross_note: why nothing was cross-scored, when nothing was."""
    out = []
    main = table[(table["scorer"] == run_scorer) & (table["axis"] == primary_axis)]
    for run, part in main.groupby("run", sort=False):
        heard = part[part["heard_in_training"]].iloc[0]
        unheard = part[~part["heard_in_training"]]
        on_training = (f"on the training SoundFont ({heard['soundfont']}) the median tuned-minus-base {primary_axis} "
                       f"difference is {heard['median_difference']:.3g}{_ci(heard, 'difference')}")
        moved = heard["change"] in ("up", "down")
        fonts = ", ".join(f"{r['soundfont']} {r['median_difference']:.3g}{_ci(r, 'difference')}"
                          + (f" ({r['gain_retained']:.0%} of it)" if moved and pd.notna(r["gain_retained"]) else "")
                          for _, r in unheard.iterrows())
        if unheard.empty:
            out.append(f"{run}: {on_training}; no other SoundFont is installed.")
        elif not moved:
            why = ("not significant" if heard["change"] == "not significant" else
                   "significant pooled over seeds but not in every seed's direction")
            out.append(f"{run}: {on_training}, {why}: no consistent change to transfer; on the {len(unheard)} unheard "
                       f"fonts: {fonts}.")
        else:
            counts = unheard["verdict"].value_counts()
            verdicts = "; ".join(f"{TRANSFER_WORDS[v]} on {n} of {len(unheard)}" for v, n in counts.items())
            direction = "rise" if heard["change"] == "up" else "fall"
            out.append(f"{run}: {on_training} (a significant {direction} in every seed); it {verdicts} unheard fonts "
                       f"({fonts}).")
    cross = table[table["scorer"] != run_scorer]
    if cross.empty:
        out.append("No output was scored by a second judge" + (f" ({cross_note})." if cross_note else "."))
    for (run, scorer), part in cross.groupby(["run", "scorer"], sort=False):
        out.append(f"{run}, scored by {scorer} on the training font ({int(part['n_pairs'].iloc[0])} pairs): "
                   + ", ".join(f"{r['axis']} {r['median_difference']:.3g}{_ci(r, 'difference')} "
                               f"({CHANGE_WORDS[r['change']]})" for _, r in part.iterrows()) + ".")
    return out


TRANSFER_WORDS = {"survives": "survives", "not significant": "is not significant",
                  "seeds disagree": "is significant pooled but not in every seed",
                  "reversed": "is reversed", "no gain to transfer": "has none to transfer"}
CHANGE_WORDS = {"up": "rises", "down": "falls", "not significant": "no significant change",
                "seeds disagree": "seeds disagree"}


def ablation_sentences(table: pd.DataFrame, answer: dict, seed_spread: dict | None = None) -> list[str]:
    """The question of the ablations, answered from the ablations table (ablations.answer).
    seed_spread: {"run", "n", "low", "high"}, the mean evaluation reward of a replicated run's
    training seeds: how far apart training seeds alone put one configuration."""
    baseline, n = answer["baseline"], answer["n_variants"]
    rows = table.set_index("system")
    base_row = rows.loc[baseline if baseline in rows.index else baseline.removeprefix("ablation_")]
    described = (f"{baseline} (the unchanged GRPO at {int(base_row['steps'])} steps)"
                 if baseline.startswith("ablation_") else f"the {baseline} run")
    criteria = (f"Reaching the reward means a paired difference to {baseline} not significantly below 0; keeping the "
                "diversity, pairwise profile distance and Vendi both not significantly below the base model's (95% "
                "bootstrap intervals over prompts).")
    if answer["both"]:
        out = [f"Yes: {join_words(answer['both'])} reach{'es' if len(answer['both']) == 1 else ''} the reward of "
               f"{described} while keeping the base model's diversity.", criteria]
    else:
        out = [f"No: {'the one variant does not reach' if n == 1 else f'none of the {n} variants reaches'} the reward "
               f"of {described} while keeping the base model's diversity.", criteria]
    out.append(f"{len(answer['reaching'])} of {n} reach the reward" + (f" ({join_words(answer['reaching'])})" if answer["reaching"]
                                                                          else "")
               + f"; {len(answer['keeping'])} of {n} keep the diversity"
               + (f" ({join_words(answer['keeping'])})" if answer["keeping"] else "") + ".")
    keeping = [k for k in answer["keeping"] if pd.notna(rows.loc[k].get("kl_last5", np.nan))]
    if keeping and pd.notna(base_row.get("kl_last5", np.nan)):
        out.append("KL to the reference over the last 5 training steps: " + ", ".join(
            f"{k} {rows.loc[k, 'kl_last5']:.3g}" for k in keeping) + f" (keeping the diversity) vs {base_row['kl_last5']:.3g} "
                   f"for {baseline}.")
    if seed_spread and seed_spread["n"] > 1:
        out.append(f"Each variant is one training seed, so these intervals are over prompts for the models trained here: "
                   f"the {seed_spread['n']} training seeds of {seed_spread['run']} alone put its mean evaluation reward "
                   f"between {seed_spread['low']:.3g} and {seed_spread['high']:.3g}, a spread of "
                   f"{seed_spread['high'] - seed_spread['low']:.3g}.")
    if answer["undecided"]:
        out.append(f"Not decided (no bootstrap intervals: diversity_bootstrap = 0): {join_words(answer['undecided'])}.")
    if answer["missing"]:
        out.append(f"Not evaluated yet (make beyond): {join_words(answer['missing'])}.")
    share = base_row.get("truncated_share", np.nan)
    length_variants = table["changes"].str.contains("mask_truncated_completions|loss_type=dr_grpo", regex=True).any()
    if pd.notna(share) and length_variants:
        out.append(f"{share:.1%} of {baseline}'s training completions reached the token budget without an EOS: such a "
                   "completion carries no loss under mask_truncated_completions, "
                   "and dr_grpo's constant normaliser equals grpo's per-completion mean when every completion has the "
                   "full length.")
    variants = table[table["is_ablation"] & (table["run"] != table["baseline"])]
    if "reaches_long_reward" in table and "long" in rows.index and len(variants):
        long_row = rows.loc["long"]
        reach = list(variants.loc[variants["reaches_long_reward"] == "yes", "system"])
        both = [v for v in reach if rows.loc[v, "keeps_base_diversity"] == "yes"]
        out.append(f"Against long itself ({int(long_row['steps'])} steps, reward {long_row['mean_reward']:.3g}"
                   f"{_ci(long_row, 'mean_reward')}), the {int(base_row['steps'])}-step variants: "
                   + (f"{join_words(reach)} not significantly below it" if reach else "every one significantly below it")
                   + (f", and {join_words(both)} also keep{'s' if len(both) == 1 else ''} the diversity." if both
                      else "; none reaches it while keeping the diversity."))
    if "dr_grpo" in rows.index and pd.notna(rows.loc["dr_grpo"].get("truncated_share", np.nan)) \
            and rows.loc["dr_grpo", "truncated_share"] >= 0.99:
        r = rows.loc["dr_grpo"]
        out.append(f"dr_grpo's loss equals grpo's on every completion that reached the budget ({r['truncated_share']:.1%} "
                   f"of its training completions), so its reward difference to {baseline}, {r['reward_vs_baseline']:.3g}"
                   f"{_ci(r, 'reward_vs_baseline')}, is about how far the training path alone moves a run: "
                   "differences of that size between variants are not effects of their settings.")
    said = set()
    for name, why in ((answer["best_keeping"], "the best-rewarded variant that keeps the diversity"),
                      (answer["most_diverse_reaching"], "the most diverse variant that reaches the reward")):
        if name and name not in said:
            said.add(name)
            r = rows.loc[name]
            out.append(f"{name} ({why}): reward {r['mean_reward']:.3g} vs {base_row['mean_reward']:.3g} for {baseline} "
                       f"(difference {r['reward_vs_baseline']:.3g}{_ci(r, 'reward_vs_baseline')}), pairwise distance "
                       f"{r['pairwise_distance']:.3g} vs the base model's {rows.loc['base', 'pairwise_distance']:.3g} "
                       f"(difference {r['pairwise_distance_vs_base']:.3g}{_ci(r, 'pairwise_distance_vs_base')}).")
    return out


def write_beyond_discussion(result: dict, cfg, out_dir: Path, stamp: str) -> list[Path]:
    """beyond_discussion.md and .tex in out_dir: the three answers of notebook 05, one paragraph
    each, from the tables in `result` (report.beyond); a part without its table is said to be missing."""
    import json

    record = json.loads((cfg.profile_dir / "reward.json").read_text())
    parts = [("Best-of-N", best_of_n_sentences(result["best_of_n"]) if "best_of_n" in result else None),
             ("Reward transfer", transfer_sentences(result["reward_transfer"], record["backend"], record["primary_axis"],
                                                    result.get("cross_note", "")) if "reward_transfer" in result else None),
             ("Design choices against the collapse", ablation_sentences(result["ablations"], result["answer"],
                                                                        result.get("seed_spread"))
              if "ablations" in result else None)]
    missing = "not made yet (run `make beyond`)."
    md = "\n\n".join(f"**{title}.** " + (" ".join(s) if s else missing) for title, s in parts)
    tex = "\n\n".join(f"\\paragraph*{{{title}.}} " + (" ".join(_latex(x) for x in s) if s else _latex(missing))
                       for title, s in parts)
    paths = [Path(out_dir) / "beyond_discussion.md", Path(out_dir) / "beyond_discussion.tex"]
    paths[0].write_text(md + f"\n\n<sub>{stamp}</sub>\n")
    paths[1].write_text(f"% {stamp}\n{tex}\n")
    return paths


def _markdown(table: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.3g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _with_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """A metric with `<metric>_ci_low` / `_ci_high` columns becomes one text column "value [low, high]"."""
    df = df.copy()
    for low in [c for c in df.columns if c.endswith("_ci_low")]:
        metric, high = low[: -len("_ci_low")], low.replace("_ci_low", "_ci_high")
        if metric in df.columns and high in df.columns:
            df[metric] = ["" if pd.isna(v) else f"{v:.3g}" if pd.isna(lo) or pd.isna(hi) else f"{v:.3g} [{lo:.3g}, {hi:.3g}]"
                          for v, lo, hi in zip(df[metric], df[low], df[high])]
            df = df.drop(columns=[low, high])
    return df


DIVERSITY_COLUMNS = ["system", "n", "mean_reward", "distinct_4", "pairwise_distance", "vendi", "vendi_profile"]
CLAIM_COLUMNS = ["claim", "median_base", "median_tuned", "effect", "effect_ci", "seeds_in_direction", "verdict",
                 "per_second_verdict"]
BEST_OF_N_COLUMNS = ["system", "reward_evaluations", "evaluations_at_inference", "mean_reward", "pairwise_distance",
                     "vendi"]
TRANSFER_COLUMNS = ["run", "soundfont", "scorer", "axis", "n_pairs", "median_difference", "gain_retained",
                    "p_adjusted", "seeds_in_direction", "verdict"]
ABLATION_COLUMNS = ["system", "changes", "mean_reward", "reward_vs_baseline", "pairwise_distance_vs_base",
                    "vendi_vs_base", "reaches_baseline_reward", "keeps_base_diversity", "reward_vs_long",
                    "reaches_long_reward"]
SUMMARY_COLUMNS = ["run", "seed", "steps", "beta", "reward_first5", "reward_last5", "kl_last5", "eval_reward_base",
                   "eval_reward_tuned"]


def readme_block(figures_dir: Path) -> str:
    """The README's results section of one profile, from its CSVs (training summary, claims and
    their discussion, diversity metrics); a table that does not exist is left out, not invented."""
    figures_dir = Path(figures_dir)
    parts = []
    claims = figures_dir / "claims.csv"
    if claims.exists() and not {"test", "reason"} <= set(pd.read_csv(claims, nrows=0).columns):
        parts.append("> **STALE:** `claims.csv` was written by older code (no `test` / `reason` columns): "
                     "remake the figures (`make reproduce`) before reading these tables.")

    def table(name: str, columns: list[str] | None, intro: str):
        path = figures_dir / f"{name}.csv"
        if path.exists():
            df = pd.read_csv(path, keep_default_na=False, na_values=[""])
            intro = intro.format(test=df["test"].iloc[0] if "test" in df and len(df) else "test not recorded")
            df = _with_intervals(df)
            df = df[[c for c in columns if c in df.columns]] if columns else df
            shown = f"{figures_dir.parent.name}/{figures_dir.name}/{name}.csv"  # as the repository shows it
            parts.append(f"{intro} (`{shown}`):\n\n{_markdown(df)}")

    table("corpus_summary", None, "**Corpus** (`pieces_with_dynamics`: pieces with more than one velocity level; "
                                  "music21 realises a score's dynamics markings as velocities)")
    table("training_summary", SUMMARY_COLUMNS, "**Training runs**, one row per run and seed")
    table("claims", CLAIM_COLUMNS, "**The paper's claims**, base vs tuned ({test}; effect: matched-pairs rank-biserial "
                                   "correlation with a 95% bootstrap CI; verdicts computed, their reasons in the CSV)")
    discussion = figures_dir / "claims_discussion.md"
    if discussion.exists():
        parts.append(discussion.read_text().strip())
    table("diversity_metrics", DIVERSITY_COLUMNS, "**Diversity** of each system's evaluation outputs (95% bootstrap "
                                                  "intervals over outputs)")
    table("soundfont_table", None, "**The SoundFont table** (corpus pieces, 100 beats, 10 s, scored by the run's scorer)")
    table("best_of_n", BEST_OF_N_COLUMNS, "**Beyond the paper: best-of-N** from the base model vs the tuned runs "
                                          "(95% bootstrap intervals over prompts)")
    transfer = figures_dir / "reward_transfer.csv"
    if transfer.exists():
        df = pd.read_csv(transfer, keep_default_na=False, na_values=[""])
        df = df[df["training_reward_axis"].astype(str).eq("True") | df["scorer_role"].eq("cross-scored")].rename(
            columns={"difference_ci_low": "median_difference_ci_low", "difference_ci_high": "median_difference_ci_high"})
        parts.append(f"**Reward transfer** to SoundFonts the policy never heard (tuned minus base, the training reward's "
                     f"axis and any cross-scored axes; every axis in the CSV) "
                     f"(`{figures_dir.parent.name}/{figures_dir.name}/reward_transfer.csv`):\n\n"
                     f"{_markdown(_with_intervals(df)[[c for c in TRANSFER_COLUMNS if c in df.columns]])}")
    table("ablations", ABLATION_COLUMNS, "**Design choices against the collapse** (each the long run with one change; "
                                         "paired differences with 95% bootstrap intervals over prompts)")
    discussion = figures_dir / "beyond_discussion.md"
    if discussion.exists():
        parts.append(discussion.read_text().strip())
    return "\n\n".join(parts)


def update_readme(readme: Path, profile: str, figures_dir: Path) -> bool:
    """Replace the profile's generated section of the README (between its markers); False when the
    README has no markers for that profile, or when figures_dir has no tables (nothing is blanked)."""
    start, end = (m.format(profile=profile) for m in MARKERS)
    text = Path(readme).read_text()
    block = readme_block(figures_dir)
    if start not in text or end not in text or not block:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    Path(readme).write_text(f"{head}{start}\n{block}\n{end}{tail}")
    return True


def readme_section(readme: Path, profile: str) -> str | None:
    """The README's generated section of a profile as committed (None without markers)."""
    start, end = (m.format(profile=profile) for m in MARKERS)
    text = Path(readme).read_text()
    if start not in text or end not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip()
