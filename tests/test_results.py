"""The results text (README section, paper paragraph) is generated from the tables, never typed."""

from pathlib import Path

import pandas as pd

from smart_core import results
from smart_core.stats import PAIRED_TEST

ROOT = Path(__file__).resolve().parent.parent


def _claims():
    rows = [("the reward rises", "agrees", "", "Holm-adjusted p = 1e-05, 3/3 seeds"),
            ("more notes", "opposite", "agrees", "Holm-adjusted p = 0.001, 3/3 seeds; per second of audio: agrees (...)"),
            ("wider pitch range", "inconclusive", "", "Holm-adjusted p = 0.4 (not below 0.05)"),
            ("velocities lower", "not testable here", "",
             "the base model's outputs hold one value (90) in 100% of 288: there is (almost) nothing for tuning to move")]
    return pd.DataFrame([{"claim": c, "verdict": v, "per_second_verdict": ps, "reason": r, "test": PAIRED_TEST,
                          "n_pairs": 288} for c, v, ps, r in rows])


def test_the_discussion_says_what_the_claims_table_says():
    text = " ".join(results.discussion_sentences(_claims()))
    assert text.startswith("Of the paper's 4 claims checked (" + PAIRED_TEST + "; 288 pairs)")
    assert "1 agrees with the paper (the reward rises)" in text and "1 goes the opposite way (more notes)" in text
    assert "1 is inconclusive (wider pitch range)" in text
    assert "1 cannot be tested here" in text
    assert 'Not testable here: "velocities lower", because the base model\'s outputs hold one value (90)' in text
    assert '"more notes" is opposite as a count but agrees per second of the piece' in text


def test_the_discussion_is_written_for_the_readme_and_the_paper(tmp_path):
    md, tex = results.write_discussion(_claims(), tmp_path, "profile: small | stamp")
    assert "<sub>profile: small | stamp</sub>" in md.read_text()
    body = tex.read_text()
    assert "``velocities lower''" in body and "100\\%" in body and body.startswith("% profile: small | stamp")


def test_update_readme_replaces_only_its_profile_section(tmp_path):
    figures = tmp_path / "figures" / "small"
    figures.mkdir(parents=True)
    claims = _claims().assign(median_base=1.0, median_tuned=2.0, effect=0.5, effect_ci="[0.40, 0.60]",
                              seeds_in_direction="3/3")
    claims.to_csv(figures / "claims.csv", index=False)
    readme = tmp_path / "README.md"
    start, end = (m.format(profile="small") for m in results.MARKERS)
    readme.write_text(f"intro\n{start}\nold words\n{end}\noutro\n")
    assert results.update_readme(readme, "small", figures)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old words" not in text
    assert "| more notes | 1 | 2 | 0.5 | [0.40, 0.60] | 3/3 | opposite | agrees |" in text
    assert results.readme_section(readme, "small") == results.readme_block(figures)
    assert not results.update_readme(readme, "paper", figures)  # no markers: nothing touched
    # a figures folder without tables (another working directory, a clean clone) never blanks the section
    before = readme.read_text()
    assert not results.update_readme(readme, "small", tmp_path / "nowhere") and readme.read_text() == before


def test_tables_from_older_code_are_marked_stale(tmp_path):
    pd.DataFrame({"claim": ["more notes"], "verdict": ["agrees"]}).to_csv(tmp_path / "claims.csv", index=False)
    assert results.readme_block(tmp_path).startswith("> **STALE:**")


def test_the_committed_readme_says_what_the_committed_tables_say():
    """The README's results section of the small profile is generated: it must equal what the
    committed figures/small CSVs render to (regenerate with `make figures` after a run)."""
    section = results.readme_section(ROOT / "README.md", "small")
    assert section is not None, "README.md lost its generated results markers for the small profile"
    assert section == results.readme_block(ROOT / "figures" / "small"), \
        "README.md's results section differs from figures/small: run `make figures` (it regenerates the section)"
