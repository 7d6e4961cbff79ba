"""The results text of the README and of paper/, generated from the tables (never typed by hand).

`write_discussion` turns the claims table into a paragraph (Markdown and LaTeX, one set of
sentences); `readme_block` renders a profile's results section from its CSVs; `update_readme`
puts that section between the README's markers, and the test suite checks that the committed
README says what the committed CSVs say, row by row.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .stats import VERDICTS

MARKERS = ("<!-- generated:results:{profile} -->", "<!-- /generated:results:{profile} -->")


def _join(items: list[str]) -> str:
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
            parts.append(f"{len(rows)} {text} ({_join(list(rows['claim']))})")
    pairs = sorted(set(claims["n_pairs"].astype(int)))
    pairs = f"{pairs[0]} pairs" if len(pairs) == 1 else f"{pairs[0]}-{pairs[-1]} pairs"
    out = [f"Of the paper's {n} claims checked ({test}; {pairs}), {_join(parts)}."]
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
            df[metric] = [f"{v:.3g} [{lo:.3g}, {hi:.3g}]" for v, lo, hi in zip(df[metric], df[low], df[high])]
            df = df.drop(columns=[low, high])
    return df


DIVERSITY_COLUMNS = ["system", "n", "mean_reward", "distinct_4", "pairwise_distance", "vendi", "vendi_profile"]
CLAIM_COLUMNS = ["claim", "median_base", "median_tuned", "effect", "effect_ci", "seeds_in_direction", "verdict",
                 "per_second_verdict"]
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
