"""The whole pipeline on the tiny profile through papermill: every notebook, in order."""

import json
import re
import shutil
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from smart_core.pipeline import artifact_digest, artifact_paths, reproduce, steps
from smart_core.report import make_all

EXPECTED_FIGURES = [
    "base_model_loss", "base_model_samples", "soundfont_table", "fig2_reward_scatter_smart", "training_curves_smart",
    "fig2_reward_scatter_long_beta0", "fig3_reward_axes", "fig4_features", "fig5_diversity_collapse",
    "diversity_along_training", "quality_diversity_frontier", "listening_means_SIMULATED", "listening_power_SIMULATED",
    "best_of_n", "reward_transfer", "ablations_frontier", "ablations_training",
]
EXPECTED_TABLES = ["corpus_summary", "soundfont_table", "feature_statistics", "claims", "diversity_metrics",
                   "diversity_sweep", "listening_statistics_SIMULATED", "training_summary", "listening_filters",
                   "listening_power_SIMULATED", "best_of_n", "reward_transfer", "ablations"]


@pytest.mark.slow
def test_tiny_pipeline_runs_every_notebook_and_writes_every_figure(tiny_cfg, tiny_base_model, session_tmp):
    """The whole pipeline as `make beyond` runs it: the paper's notebooks, the ablation runs, notebook 05."""
    figures = session_tmp / "figures"
    report = reproduce(tiny_cfg, figures_dir=str(figures), log_output=False, beyond=True)
    assert [r["step"] for r in report] == [label for label, _, _ in steps(tiny_cfg, beyond=True)]
    assert [label for label, _, _ in steps(tiny_cfg)] == [label for label, _, _ in steps(tiny_cfg, beyond=True)][:8]
    for name in EXPECTED_FIGURES:
        assert (figures / f"{name}.png").stat().st_size > 1000, name
        assert (figures / f"{name}.pdf").exists(), name
    for name in EXPECTED_TABLES:
        assert (figures / f"{name}.csv").exists() and (figures / f"{name}.tex").exists(), name
    # every executed notebook finished without an error output
    executed = sorted((tiny_cfg.profile_dir / "notebooks").glob("*.ipynb"))
    assert len(executed) == len(steps(tiny_cfg, beyond=True))
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            assert not any(o.get("output_type") == "error" for o in cell.get("outputs", [])), f"{path.name}: error output"
    # the simulated listening study says so
    stats = (figures / "listening_statistics_SIMULATED.csv").read_text()
    assert "SIMULATED" in stats
    # figures are stamped with profile and reward backend
    tex = (figures / "claims.tex").read_text()
    assert "profile: tiny" in tex and "STAND-IN" in tex
    # notebook 05: the three answers, each from its table
    beyond = (figures / "beyond_discussion.md").read_text()
    assert [line.split(".**")[0] for line in beyond.split("\n\n")[:3]] == [
        "**Best-of-N", "**Reward transfer", "**Design choices against the collapse"]
    assert "not made yet" not in beyond
    bon = pd.read_csv(figures / "best_of_n.csv")
    assert bon["system"].tolist()[:3] == ["best-of-1", "best-of-2", "best-of-4"] and len(bon) == 6
    ablation_rows = pd.read_csv(figures / "ablations.csv", keep_default_na=False)
    assert ablation_rows["run"].tolist() == ["", "smart", "long", "long_beta0", "ablation_paper", "ablation_gspo",
                                             "ablation_diversity_bonus"]
    assert set(ablation_rows["reaches_baseline_reward"][1:]) <= {"yes", "no"}
    transfer = pd.read_csv(figures / "reward_transfer.csv")
    assert set(transfer["run"]) == {"smart", "long", "long_beta0"}
    assert set(transfer["soundfont"]) == {"timgm6mb", "fluidr3_gm"}  # the training font, and tiny's unheard one
    # a second run redoes nothing
    start = time.time()
    again = reproduce(tiny_cfg, figures_dir=str(figures), log_output=False, beyond=True)
    assert all(r["status"] == "skipped" for r in again) and time.time() - start < 10
    # a deleted evaluation is never presented: the steps reading it are due again, and make figures
    # drops the tables it can no longer make instead of leaving the old ones behind
    manifest = json.loads((tiny_cfg.profile_dir / "pipeline.json").read_text())
    shutil.rmtree(tiny_cfg.profile_dir / "smart" / "eval")
    for label in ("01_grpo_training-smart", "02_feature_analysis", "03_diversity_collapse"):
        assert artifact_digest(artifact_paths(tiny_cfg, label)) != manifest[label]["artifacts"], label
    made = make_all(tiny_cfg, figures)
    assert "features" not in made and "training:smart" in made
    assert not (figures / "claims.csv").exists() and (figures / "fig2_reward_scatter_smart.png").exists()


def test_paper_sources_only_include_what_make_figures_produces():
    """paper/smart_repro.tex may only include (\\figtable, \\fig, \\input from \\figdir) files that
    the pipeline writes; a real-ratings name counts when its SIMULATED twin is made (no ratings here)."""
    tex = (Path(__file__).parent.parent / "paper" / "smart_repro.tex").read_text()
    body = "\n".join(line.split("%", 1)[0] for line in tex.splitlines())  # comments name no files
    tables = re.findall(r"\\figtable\{([^}#]+)\}", body)
    figures = re.findall(r"\\fig\{[^}]*\}\{([^}#]+)\}", body)
    inputs = [Path(t).stem for t in re.findall(r"\\input\{\\figdir/([^}#]+)\}", body)]
    assert tables and figures and "claims_discussion" in inputs
    made_tables = set(EXPECTED_TABLES) | {"claims_discussion", "beyond_discussion"}
    for name, made in [(t, made_tables) for t in tables + inputs] + [(f, set(EXPECTED_FIGURES)) for f in figures]:
        assert name in made or f"{name}_SIMULATED" in made, f"paper includes {name}, which make figures does not produce"
